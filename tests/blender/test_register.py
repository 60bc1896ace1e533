"""Registration: enable/disable twice, naming conventions, properties, CLI command, manifest build."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import addon_utils
import bpy

from backend.config import DecodeConfig

REPO = Path(__file__).resolve().parents[2]


def _addon_classes(addon) -> list[type]:
    return list(addon._CLASSES)


def test_disable_enable_twice(addon, h):
    for _ in range(2):
        addon_utils.disable(h.ADDON, default_set=True)
        assert h.ADDON not in bpy.context.preferences.addons
        assert not hasattr(bpy.ops.csdf, "encode_selected") or "csdf.encode_selected" not in _registered_ops()
        assert not hasattr(bpy.types.Scene, "csdf")
        addon_utils.enable(h.ADDON, default_set=True, handle_error=_raise)
        assert h.ADDON in bpy.context.preferences.addons
        assert bpy.context.scene.csdf.resolution == DecodeConfig().interactive_resolution
        assert "csdf.encode_selected" in _registered_ops()


def _raise(exc):
    raise exc


def _registered_ops() -> set[str]:
    return {f"csdf.{name}" for name in dir(bpy.ops.csdf) if hasattr(bpy.types, f"CSDF_OT_{name}")}


def test_names_follow_conventions(addon):
    prefixes = {
        bpy.types.Operator: "CSDF_OT_",
        bpy.types.Panel: "CSDF_PT_",
        bpy.types.UIList: "CSDF_UL_",
        bpy.types.PropertyGroup: "CSDF_PG_",
        bpy.types.AddonPreferences: "CSDF_",
        bpy.types.FileHandler: "CSDF_FH_",
    }
    operators = []
    for cls in _addon_classes(addon):
        base = next(b for b in prefixes if issubclass(cls, b))
        assert cls.__name__.startswith(prefixes[base]), cls.__name__
        if base is bpy.types.Operator:
            operators.append(cls)
            assert cls.bl_idname.startswith("csdf."), cls.bl_idname
            assert cls.bl_idname == "csdf." + cls.__name__.removeprefix("CSDF_OT_")
            assert cls.bl_label and cls.bl_description, f"{cls.__name__} needs a label and a tooltip"
    assert {op.bl_idname for op in operators} >= {
        "csdf.encode_selected", "csdf.reconstruct", "csdf.interpolate", "csdf.cancel_job",
        "csdf.library_new", "csdf.library_open", "csdf.check_backend", "csdf.setup_backend",
    }


def test_data_changing_operators_support_undo():
    for idname in ("reconstruct", "interpolate", "library_open", "library_new", "encode_selected",
                   "shape_replace", "shape_remove", "shape_rename", "library_import"):
        cls = getattr(bpy.types, f"CSDF_OT_{idname}")
        assert "UNDO" in cls.bl_options, idname


def test_training_operators_have_no_redo():
    """Issue 10, item 4: Repeat Last and the Redo panel (REGISTER) must never rerun a training."""
    for idname in ("encode_selected", "shape_replace"):
        assert "REGISTER" not in getattr(bpy.types, f"CSDF_OT_{idname}").bl_options, idname


def test_library_operators_poll(h, tmp_path):
    """Issue 10, item 5: New/Open/Refresh are unavailable while a job runs; Refresh needs a library."""
    job = bpy.context.window_manager.csdf_job
    assert bpy.ops.csdf.library_new.poll() and bpy.ops.csdf.library_open.poll()
    assert not bpy.ops.csdf.library_refresh.poll(), "nothing to refresh without a library"
    bpy.context.scene.csdf.library_path = str(tmp_path / "lib.csdf")
    assert bpy.ops.csdf.library_refresh.poll()
    job.busy = True
    try:
        assert not any(op.poll() for op in (bpy.ops.csdf.library_new, bpy.ops.csdf.library_open,
                                            bpy.ops.csdf.library_refresh, bpy.ops.csdf.library_import))
    finally:
        job.busy = False


def test_library_path_supports_blend_relative_paths():
    """Issue 10, item 1: the path property accepts ``//`` paths (Blender 5.0 accepts the option)."""
    prop = bpy.context.scene.csdf.bl_rna.properties["library_path"]
    assert prop.subtype == "FILE_PATH" and prop.is_path_supports_blend_relative


def test_unregister_ends_a_running_job(addon, h):
    """Issue 10, item 2: disabling the extension cancels and forgets the running job."""
    session = addon.operators.session
    h.select(h.ico_sphere("ball"))
    folder = session.job_folder()
    session.start(bpy.context, session.JobSpec(addon.backend.interfaces.protocol.ProbeArgs(), lambda c, d: "", "probe"), folder)
    addon_utils.disable(h.ADDON, default_set=True)
    try:
        assert session.running() is None and session._client is None and not folder.exists()
    finally:
        addon_utils.enable(h.ADDON, default_set=True, handle_error=_raise)


def test_transient_state_lives_on_the_window_manager(addon):
    assert isinstance(bpy.context.window_manager.csdf_job, bpy.types.PropertyGroup)
    assert isinstance(bpy.context.window_manager.csdf_backend, bpy.types.PropertyGroup)
    assert "progress" not in bpy.context.scene.csdf.bl_rna.properties
    assert not [k for k in dir(bpy.types.Scene) if k.startswith("csdf_")]


def test_sidebar_panels_use_the_compact_sdf_tab(addon):
    panels = [cls for cls in _addon_classes(addon) if issubclass(cls, bpy.types.Panel)]
    assert len(panels) >= 4
    for panel in panels:
        assert (panel.bl_space_type, panel.bl_region_type, panel.bl_category) == ("VIEW_3D", "UI", "Compact SDF")


def test_cli_command_is_registered(addon):
    assert addon._cli_handle is not None
    assert addon.cli_command.run(["--help"]) == 0


def test_manifest_validates_and_builds_without_dev_files(tmp_path):
    manifest = tomllib.loads((REPO / "blender_manifest.toml").read_text())
    assert (manifest["id"], manifest["schema_version"], manifest["blender_version_min"]) == ("compact_sdf", "1.0.0", "4.2.0")
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"] and manifest["permissions"]["files"]
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "build_extension.py"), "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    import zipfile

    (archive,) = tmp_path.glob("compact_sdf-*.zip")
    names = zipfile.ZipFile(archive).namelist()
    assert "blender_manifest.toml" in names and "backend/interfaces/worker.py" in names and "requirements.txt" in names
    assert not [n for n in names if n.startswith(("tests/", ".venv/", "docs/", "tools/", ".ci/")) or "__pycache__" in n]


def test_build_validates_tags_against_blenders_list(tmp_path):
    """Issue 10, item 9: the validator runs with --valid-tags, so a tag Blender does not know fails."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_extension", REPO / "tools" / "build_extension.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    command, tags = build.builder_command(None)
    assert tags and tags[0].startswith("--valid-tags=")
    package = tmp_path / "pkg"
    package.mkdir()
    manifest = (REPO / "blender_manifest.toml").read_text().replace('"Modeling"', '"Modelling"')
    (package / "blender_manifest.toml").write_text(manifest)
    (package / "__init__.py").write_text("")
    result = subprocess.run([*command, "validate", *tags, str(package)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Modelling" in result.stdout + result.stderr
