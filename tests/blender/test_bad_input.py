"""Bad selections and broken files: a clear error report and nothing changed (no backend needed)."""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import bpy
import pytest


def _snapshot():
    return (
        sorted(bpy.data.objects.keys()),
        sorted(bpy.data.meshes.keys()),
        sorted(bpy.data.collections.keys()),
    )


def _jobs_dir(addon) -> Path:
    return addon.preferences.user_path("jobs")


def _fails(operator, match: str, **kwargs) -> None:
    before = _snapshot()
    with pytest.raises(RuntimeError, match=match):
        operator(**kwargs)
    assert _snapshot() == before, "a failed operator changed the file"
    assert not bpy.context.window_manager.csdf_job.busy


@pytest.fixture
def library_path(tmp_path):
    path = tmp_path / "lib.csdf"
    bpy.context.scene.csdf.library_path = str(path)
    return path


def test_encode_without_a_library_file(h):
    h.select(h.ico_sphere("ball"))
    _fails(bpy.ops.csdf.encode_selected, "No library file")


def test_encode_is_unavailable_without_a_selected_mesh(h, library_path):
    """Issue 10, item 5: Encode's poll is false (with the reason) when no mesh object is selected."""
    h.ico_sphere("ball")
    h.select()
    _fails(bpy.ops.csdf.encode_selected, r"poll\(\) Select one or more mesh objects to encode")
    curve = bpy.data.objects.new("Path", bpy.data.curves.new("Path", "CURVE"))
    bpy.context.scene.collection.objects.link(curve)
    h.select(curve)
    assert not bpy.ops.csdf.encode_selected.poll()
    assert not library_path.exists()


def test_encode_an_empty_mesh(h, library_path, addon):
    empty = bpy.data.objects.new("Nothing", bpy.data.meshes.new("Nothing"))
    bpy.context.scene.collection.objects.link(empty)
    h.select(h.ico_sphere("ball"), empty)
    _fails(bpy.ops.csdf.encode_selected, "'Nothing' has no faces")
    assert not library_path.exists()
    assert not list(_jobs_dir(addon).iterdir()), "job folder left behind"


def test_add_mode_needs_an_existing_library(h, library_path):
    bpy.context.scene.csdf.encode_mode = "ADD"
    h.select(h.ico_sphere("ball"))
    _fails(bpy.ops.csdf.encode_selected, "does not exist")


def _meta_only(meta: str) -> bytes:
    """A safetensors file without tensors whose library metadata is ``meta``."""
    header = json.dumps({"__metadata__": {"compact_sdf": meta}}).encode()
    return struct.pack("<Q", len(header)) + header


_LIBRARY_START = '{"format": "compact-sdf-library", "format_version": 1, "model": {}, "shapes": '


@pytest.mark.parametrize(
    "content, match",
    [
        (_meta_only(_LIBRARY_START + "[" * 100_000 + "]" * 100_000 + "}"), "nested too deeply"),
        (_meta_only(_LIBRARY_START + '[{"name": "a", "code_size": [1]}]}'), "malformed"),
        (_meta_only(_LIBRARY_START + '[{"name": "a", "stats": {"near_surface_error": "x"}}]}'), "malformed"),
        (b"", "too short"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all", "not a Compact SDF library"),
        (b"\xff" * 64, "not a Compact SDF library"),
    ],
)
def test_open_a_corrupt_library_changes_nothing(tmp_path, content, match):
    settings = bpy.context.scene.csdf
    settings.library_path = "/previous/lib.csdf"
    item = settings.shapes.add()
    item.name = "kept"
    bad = tmp_path / "bad.csdf"
    bad.write_bytes(content)
    _fails(bpy.ops.csdf.library_open, match, filepath=str(bad))
    assert settings.library_path == "/previous/lib.csdf"
    assert [s.name for s in settings.shapes] == ["kept"]


def test_refresh_a_missing_library_reports_and_records_it(tmp_path):
    settings = bpy.context.scene.csdf
    settings.library_path = str(tmp_path / "gone.csdf")
    with pytest.raises(RuntimeError, match="not found"):
        bpy.ops.csdf.library_refresh()
    assert "not found" in settings.library_error


def test_reconstruct_and_interpolate_without_a_library(tmp_path):
    bpy.context.scene.csdf.library_path = str(tmp_path / "missing.csdf")
    _fails(bpy.ops.csdf.reconstruct, "Library file not found")
    _fails(bpy.ops.csdf.interpolate, "Library file not found")


def test_new_library_sets_the_path_only(tmp_path):
    path = tmp_path / "fresh"
    assert bpy.ops.csdf.library_new(filepath=str(path)) == {"FINISHED"}
    settings = bpy.context.scene.csdf
    assert settings.library_path == str(path) + ".csdf" and len(settings.shapes) == 0
    assert not Path(settings.library_path).exists(), "written by the first encode, not before"


def test_unknown_backend_python_is_reported(addon, h, library_path):
    prefs = addon.preferences.get_prefs()
    prefs.python_path = "/no/such/python"
    try:
        with pytest.raises(RuntimeError, match="Backend Python not found"):
            bpy.ops.csdf.check_backend()
        h.select(h.ico_sphere("ball"))
        _fails(bpy.ops.csdf.encode_selected, "Backend Python not found")
    finally:
        prefs.python_path = ""
    backend = bpy.context.window_manager.csdf_backend
    assert backend.state == "ERROR" and "not found" in backend.summary
    assert not library_path.exists()


@pytest.mark.skipif(os.name != "posix", reason="uses a shell wrapper as interpreter")
def test_backend_without_torch_is_reported_as_missing(addon, tmp_path):
    python = tmp_path / "python-without-packages"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    python.chmod(0o755)
    prefs = addon.preferences.get_prefs()
    prefs.python_path = str(python)
    try:
        with pytest.raises(RuntimeError, match="lacks the module"):
            bpy.ops.csdf.check_backend()
    finally:
        prefs.python_path = ""
        addon.operators.session.stop_worker()
    backend = bpy.context.window_manager.csdf_backend
    assert backend.state == "MISSING" and "Set up backend" in backend.summary
    calls = []

    addon.preferences.draw_backend_status(_Recorder(calls), bpy.context, show_setup=True)
    assert any("Fix: Set up Backend" in str(c) for c in calls)
    backend.state = "UNKNOWN"


class _Recorder:
    def __init__(self, calls):
        self.calls = calls

    def __getattr__(self, name):
        def record(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return self

        return record
