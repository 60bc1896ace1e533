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
    assert ("prop", "interp_count") in interpolate and ("prop", "interp_pace") in interpolate
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


def test_dropping_a_library_on_the_3d_view_opens_it(addon, tiny_library):
    """Issue 10, item 8: a FileHandler sends dropped .csdf files to an operator that opens them."""
    handler = bpy.types.CSDF_FH_library
    assert handler.bl_import_operator == "csdf.library_import" and handler.bl_file_extensions == ".csdf"

    class _Area:
        def __init__(self, type):
            self.type = type

    class _Context:
        def __init__(self, area):
            self.area = area

    assert handler.poll_drop(_Context(_Area("VIEW_3D")))
    assert not handler.poll_drop(_Context(_Area("IMAGE_EDITOR"))) and not handler.poll_drop(_Context(None))
    assert bpy.ops.csdf.library_import("INVOKE_DEFAULT", filepath=str(tiny_library.path)) == {"FINISHED"}
    settings = bpy.context.scene.csdf
    assert settings.library_path == str(tiny_library.path)
    assert [item.name for item in settings.shapes] == ["ball", "brick", "ring"]


def test_open_log_loads_the_worker_log_into_a_text(addon):
    """Issue 10, item 8: the worker log (tracebacks) is one click away."""
    log = addon.operators.session.log_path()
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("Traceback (most recent call last):\nValueError: boom\n", encoding="utf-8")
    assert bpy.ops.csdf.open_log() == {"FINISHED"}
    text = bpy.data.texts[addon.operators.jobs.LOG_TEXT]
    assert "ValueError: boom" in text.as_string()
    log.unlink()
    with pytest.raises(RuntimeError, match="No backend log yet"):
        bpy.ops.csdf.open_log()


def test_panel_errors_offer_the_fix(addon, h):
    """Issue 10, item 8: a library error comes with Open/New, a failed job with Open Log."""
    settings = bpy.context.scene.csdf
    settings.library_error = "Library file not found: /x.csdf. Encode some shapes first, or open another library."
    calls = h.draw(addon.panels.main.CSDF_PT_library.draw, bpy.context)
    error = calls.index(("label", settings.library_error))
    assert {("operator", "csdf.library_open"), ("operator", "csdf.library_new")} <= set(calls[error:])
    job = bpy.context.window_manager.csdf_job
    bpy.context.window_manager.csdf_backend.state = "READY"  # no backend box (it has its own Open Log)
    try:
        job.last_result, job.last_failed = "Encode 1 shape failed: Internal error", True
        assert ("operator", "csdf.open_log") in h.draw(addon.panels.main.CSDF_PT_main.draw, bpy.context)
        job.last_failed = False
        assert ("operator", "csdf.open_log") not in h.draw(addon.panels.main.CSDF_PT_main.draw, bpy.context)
    finally:
        bpy.context.window_manager.csdf_backend.state = "UNKNOWN"


def test_shape_list_has_replace_rename_remove(addon, h):
    calls = h.draw(addon.panels.main.CSDF_PT_library.draw, bpy.context)
    for idname in ("csdf.shape_replace", "csdf.shape_rename", "csdf.shape_remove"):
        assert ("operator", idname) in calls


def test_labels_are_translation_ready():
    """Issue 10, item 8: no f-string is used as a UI label; text goes through iface_ with placeholders."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offenders = []
    for path in [*root.glob("*.py"), *root.glob("operators/*.py"), *root.glob("panels/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "text" and any(isinstance(n, ast.JoinedStr) for n in ast.walk(keyword.value)):
                        offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, offenders
