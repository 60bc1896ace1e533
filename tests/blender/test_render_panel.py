"""tools/render_panel.py records every registered panel through its real draw() and paints it."""

from __future__ import annotations

from collections.abc import Iterator

import bpy
import pytest

from tools import render_panel
from tools.render_panel import RecordingLayout, Widget


def widgets(node: RecordingLayout | Widget) -> Iterator[Widget]:
    """Every widget of a recording, list rows included, in drawing order."""
    if isinstance(node, Widget):
        yield node
        for line in node.rows:
            yield from widgets(line)
    else:
        for child in node.children:
            yield from widgets(child)


def _library(h) -> None:
    """Three listed shapes, all ticked, and a selected mesh object."""
    settings = bpy.context.scene.csdf
    settings.library_path = "/tmp/shapes.csdf"
    for name in ("spot", "bob", "fish"):
        item = settings.shapes.add()
        item.name, item.use, item.code_size, item.surface_error = name, True, 64, 2.5e-4
    h.select(h.ico_sphere("ball"))


def _record(addon) -> tuple[list[render_panel.RecordedPanel], dict[str, list[Widget]]]:
    panels = render_panel.record_panels(addon, bpy.context)
    return panels, {panel.label: list(widgets(panel.body)) for panel in [*panels, *panels[0].children]}


def test_recording_layout_draws_every_panel(addon, h):
    _library(h)
    settings, explore = bpy.context.scene.csdf, bpy.context.window_manager.csdf_explore
    settings.detail = 0.25
    explore.library = settings.library_path
    nearest = explore.nearest.add()
    nearest.name, nearest.distance = "bob", 0.125
    bpy.data.objects["ball"]["csdf_recipe"] = "{}"
    try:
        panels, shown = _record(addon)
    finally:
        explore.nearest.clear()
        explore.library = ""
    assert [panel.label for panel in panels] == ["Compact SDF"] and panels[0].category == "Compact SDF"
    assert [p.label for p in panels[0].children] == ["Library", "Encode", "Reconstruct", "Interpolate", "Explore"]
    names = {label: {(w.kind, w.name) for w in found} for label, found in shown.items()}
    assert {("label", "shapes.csdf"), ("label", "spot"), ("label", "64d"), ("label", "±2.5e-04")} <= names["Library"]
    assert ("operator", "Encode 1 Selected") in names["Encode"]  # the text the panel computes
    assert ("operator", "Reconstruct") in names["Reconstruct"]  # the operator's bl_label, from RNA
    assert {("operator", "In-Betweens"), ("number", "bob"), ("bool", "Live Preview")} <= names["Interpolate"]
    assert {("operator", "Reset Variations"), ("number", "Variation 2"), ("label", "Nearest Shapes"),
            ("label", "0.125"), ("label", "Recipe of ball"), ("operator", "Re-decode")} <= names["Explore"]
    detail = next(w for w in shown["Interpolate"] if w.name == "Detail")  # the detail dial: RNA name and value
    assert detail.value == "0.25" and detail.factor == pytest.approx(0.25) and detail.split
    preset = next(w for w in shown["Encode"] if w.name == "Preset")
    assert preset.kind == "enum" and preset.value == "Fast"
    assert not next(w for w in shown["Explore"] if w.name == "Keep").usable  # its poll fails: no preview
    assert next(w for w in shown["Library"] if w.kind == "list").active_row == 0

    image = render_panel.paint(panels)
    assert image.width == render_panel.WIDTH and image.height > 20 * render_panel.UNIT


def test_busy_and_failing_states_are_recorded_and_painted(addon, h):
    _library(h)
    wm = bpy.context.window_manager
    job, backend = wm.csdf_job, wm.csdf_backend
    job.busy, job.kind, job.message, job.progress = True, "Encode 3 shapes", "train 40%", 0.4
    backend.state, backend.summary = "MISSING", "The backend Python lacks the module 'torch'."
    bpy.context.scene.csdf.library_error = "Cannot read library shapes.csdf: truncated"
    try:
        panels, shown = _record(addon)
    finally:
        job.busy, backend.state, backend.summary = False, "UNKNOWN", ""
    main = shown["Compact SDF"]
    assert any(w.kind == "progress" and w.factor == pytest.approx(0.4) for w in main)
    assert {("operator", "Cancel Job"), ("operator", "Set Up Backend"), ("label", "Backend: Missing")} <= {
        (w.kind, w.name) for w in main}
    assert ("label", "Cannot read library shapes.csdf: truncated") in {(w.kind, w.name) for w in shown["Library"]}
    render_panel.paint(panels)  # every icon these states use has a glyph


def test_recording_layout_refuses_what_it_cannot_draw():
    layout = RecordingLayout()
    with pytest.raises(NotImplementedError, match="UILayout.split"):
        layout.split(factor=0.5)
    with pytest.raises(AttributeError):
        layout.scale_y = 2.0
    with pytest.raises(AttributeError, match="no property 'nope'"):
        layout.operator("csdf.interpolate").nope = 1
