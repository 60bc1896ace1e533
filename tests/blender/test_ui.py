"""Every panel's draw, the shape list and the preferences, drawn with a recording layout."""

from __future__ import annotations

import bpy
import pytest


def _panels(addon):
    return [cls for cls in addon._CLASSES if issubclass(cls, bpy.types.Panel)]


@pytest.mark.parametrize("busy", [False, True])
def test_every_panel_draws(addon, h, busy):
    context = bpy.context
    settings = context.scene.csdf
    settings.library_path = "/tmp/some.csdf"
    for name in ("a", "b"):
        item = settings.shapes.add()
        item.name, item.use, item.code_size = name, True, 16
    job = context.window_manager.csdf_job
    job.busy, job.kind, job.message, job.progress = busy, "Encode 2 shapes", "train 40%", 0.4
    h.ico_sphere("ball")
    h.select(bpy.data.objects["ball"])
    calls = {}
    try:
        for panel in _panels(addon):
            calls[panel.__name__] = h.draw(panel.draw, context)
    finally:
        job.busy = False
    assert ("operator", "csdf.encode_selected") in calls["CSDF_PT_encode"]
    assert ("operator", "csdf.reconstruct") in calls["CSDF_PT_reconstruct"]
    assert ("template_list", "CSDF_UL_shapes") in calls["CSDF_PT_library"]
    interpolate = calls["CSDF_PT_interpolate"]
    assert ("prop", "blend") in interpolate and ("operator", "csdf.interpolate") in interpolate
    assert interpolate.count(("prop", "weight")) == 2
    main = calls["CSDF_PT_main"]
    assert (("operator", "csdf.cancel_job") in main) is busy
    assert any(c[0] == "progress" and abs(c[1] - 0.4) < 1e-6 for c in main) is busy


def test_main_panel_says_when_the_backend_is_not_ready(addon, h):
    backend = bpy.context.window_manager.csdf_backend
    backend.state, backend.summary = "MISSING", "The backend Python lacks the module 'torch'."
    try:
        calls = h.draw(addon.panels.main.CSDF_PT_main.draw, bpy.context)
    finally:
        backend.state, backend.summary = "UNKNOWN", ""
    labels = [c[1] for c in calls if c[0] == "label"]
    assert any("lacks the module 'torch'" in text for text in labels)
    assert any("Set up Backend" in text for text in labels)
    assert ("operator", "csdf.setup_backend") in calls and ("operator", "csdf.check_backend") in calls


def test_library_error_is_shown(addon, h):
    settings = bpy.context.scene.csdf
    settings.library_error = "Cannot read library x.csdf: truncated"
    calls = h.draw(addon.panels.main.CSDF_PT_library.draw, bpy.context)
    assert ("label", "Cannot read library x.csdf: truncated") in calls


def test_shape_list_item_draws(addon, h):
    settings = bpy.context.scene.csdf
    item = settings.shapes.add()
    item.name, item.code_size, item.surface_error = "spot", 32, 0.0012
    layout = h.RecordingLayout()
    ui_list = addon.panels.main.CSDF_UL_shapes
    ui_list.draw_item(None, bpy.context, layout, settings, item, 0, settings, "active_shape", 0)
    assert ("prop", "use") in layout.calls and ("label", "spot") in layout.calls
    assert ("label", "32d") in layout.calls and ("label", "±1.2e-03") in layout.calls


def test_preferences_defaults_and_draw(addon, h):
    prefs = addon.preferences.get_prefs()
    assert prefs.python_path == "" and prefs.device == "auto"
    assert {item.identifier for item in prefs.bl_rna.properties["device"].enum_items} >= {"auto", "cuda", "cpu"}
    import sys

    assert addon.preferences.backend_python() == sys.executable
    prefs.python_path = "/opt/env/bin/python"
    try:
        assert addon.preferences.backend_python() == "/opt/env/bin/python"
    finally:
        prefs.python_path = ""
    calls = h.draw(type(prefs).draw, bpy.context, target=prefs)
    assert ("prop", "python_path") in calls and ("prop", "device") in calls
    assert ("operator", "csdf.check_backend") in calls and ("operator", "csdf.setup_backend") in calls


def test_user_directory_is_outside_the_extension(addon):
    from pathlib import Path

    jobs = addon.preferences.user_path("jobs")
    assert jobs.is_dir()
    assert Path(addon.__file__).resolve().parent not in jobs.resolve().parents
