"""Operators in background mode against the real backend (tiny preset): results, placement, fidelity."""

from __future__ import annotations

import hashlib
import os
import signal
import time

import bpy
import numpy as np
import pytest

RESOLUTION = 64


@pytest.fixture
def lib(tiny_library):
    tiny_library.open()
    bpy.context.scene.csdf.resolution = RESOLUTION
    return tiny_library


def _collection_objects() -> list[str]:
    collection = bpy.data.collections.get("Compact SDF")
    return sorted(obj.name for obj in collection.objects) if collection else []


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _chamfer(addon, source, obj) -> float:
    """CD-L1 (DESIGN §3 units) between a source (object space) and an object's mesh."""
    from backend.geometry.metrics import compare_meshes

    arrays = addon.mesh_bridge.mesh_to_arrays(obj.data)
    return compare_meshes(source, (arrays.vertices, arrays.faces), n_samples=5_000).cd_l1


def test_encode_lists_shapes_with_transforms_and_fidelity(lib):
    settings = bpy.context.scene.csdf
    assert [item.name for item in settings.shapes] == ["ball", "brick", "ring"]
    assert "Encoded 3 shapes" in lib.report
    for item in settings.shapes:
        assert item.code_size > 0
        assert 0.0 <= item.surface_error < 0.1, "fidelity measured at encode time is listed"


def test_reconstruct_creates_placed_objects_close_to_their_sources(addon, lib):
    sources = lib.add_sources()
    before = set(bpy.data.objects.keys())
    assert bpy.ops.csdf.reconstruct() == {"FINISHED"}
    created = sorted(set(bpy.data.objects.keys()) - before)
    assert created == ["ball_csdf", "brick_csdf", "ring_csdf"]
    assert _collection_objects() == created
    assert sorted(o.name for o in bpy.context.selected_objects) == created
    for name in ("ball", "brick", "ring"):
        obj = bpy.data.objects[f"{name}_csdf"]
        assert np.allclose(np.array(obj.matrix_world), np.array(sources[name].matrix_world), atol=1e-6)
        assert obj["csdf"]["shape"] == name and obj["csdf"]["resolution"] == RESOLUTION
        cd = {source: _chamfer(addon, lib.sources[source], obj) for source in lib.sources}
        print(f"{name}: CD-L1 to each source {cd}")
        assert cd[name] < 0.1, f"{name} reconstruction too far from its source (CD-L1 {cd[name]:.3g})"
        assert cd[name] == min(cd.values()), f"{name} reconstruction looks more like another shape: {cd}"
    assert "CD-L1" in bpy.context.window_manager.csdf_job.last_result


def test_operator_matches_the_engine_api(addon, lib):
    """The operator's object holds exactly what backend.api.decode returns (MolecularNodes-style)."""
    from backend import api
    from backend.store.library import Library

    settings = bpy.context.scene.csdf
    for item in settings.shapes:
        item.use = item.name == "brick"
    assert bpy.ops.csdf.reconstruct() == {"FINISHED"}
    arrays = addon.mesh_bridge.mesh_to_arrays(bpy.data.objects["brick_csdf"].data)
    direct = api.decode(Library.load(lib.path), "brick", resolution=RESOLUTION, mode="slerp", device="cpu")
    np.testing.assert_allclose(arrays.vertices, direct.vertices, atol=1e-5)
    np.testing.assert_array_equal(arrays.faces, direct.faces)


def test_heatmap_colours_reconstructions_by_distance_to_source(addon, lib):
    lib.add_sources()
    bpy.context.scene.csdf.heatmap = True
    assert bpy.ops.csdf.reconstruct() == {"FINISHED"}
    mesh = bpy.data.objects["ball_csdf"].data
    distance = np.empty(len(mesh.vertices), np.float32)
    mesh.attributes["csdf_distance"].data.foreach_get("value", distance)
    assert distance.min() >= 0 and 0 < np.median(distance) < 0.1
    assert mesh.color_attributes.active_color.name == "csdf_fidelity"


def test_heatmap_without_source_says_so(lib):
    bpy.context.scene.csdf.heatmap = True
    assert bpy.ops.csdf.reconstruct() == {"FINISHED"}
    assert "No source object for the heatmap" in bpy.context.window_manager.csdf_job.last_result
    assert "csdf_fidelity" not in bpy.data.objects["ball_csdf"].data.color_attributes


def test_interpolate_in_betweens_side_by_side(lib):
    settings = bpy.context.scene.csdf
    for item in settings.shapes:
        item.use = item.name in ("ball", "ring")
    settings.interp_count = 3
    bpy.context.scene.cursor.location = (0.0, 10.0, 0.0)
    assert bpy.ops.csdf.interpolate(mode="PATH") == {"FINISHED"}
    names = ["csdf_interp_00", "csdf_interp_01", "csdf_interp_02"]
    assert _collection_objects() == names
    objects = [bpy.data.objects[n] for n in names]
    spans = []
    for obj in objects:
        xs = np.array([(obj.matrix_world @ v.co).x for v in obj.data.vertices])
        spans.append((xs.min(), xs.max()))
        assert obj.location.y == pytest.approx(10.0)
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:])), f"objects overlap: {spans}"
    assert objects[0]["csdf"]["path"] == ["ball", "ring"]


def test_weighted_blend(lib):
    settings = bpy.context.scene.csdf
    for item in settings.shapes:
        item.use = item.name in ("ball", "brick")
        item.weight = 0.5
    assert bpy.ops.csdf.interpolate(mode="WEIGHTS") == {"FINISHED"}
    obj = bpy.data.objects["csdf_blend"]
    assert len(obj.data.polygons) > 0
    assert dict(obj["csdf"]["weights"]) == pytest.approx({"ball": 0.5, "brick": 0.5})


def test_check_backend_reports_torch(addon):
    import torch

    assert bpy.ops.csdf.check_backend() == {"FINISHED"}
    backend = bpy.context.window_manager.csdf_backend
    assert backend.state == "READY" and f"torch {torch.__version__}" in backend.summary


def test_add_mode_keeps_existing_codes(addon, lib, h, tmp_path):
    from safetensors.numpy import load_file

    path = tmp_path / "grow.csdf"
    path.write_bytes(lib.path.read_bytes())
    settings = bpy.context.scene.csdf
    settings.library_path = str(path)
    settings.encode_mode, settings.preset, settings.steps = "AUTO", "tiny", 30
    h.select(h.ico_sphere("pebble", radius=0.4, subdivisions=2))
    assert bpy.ops.csdf.encode_selected() == {"FINISHED"}
    assert [item.name for item in settings.shapes] == ["ball", "brick", "ring", "pebble"]
    old, new = load_file(str(lib.path))["codes"], load_file(str(path))["codes"]
    np.testing.assert_array_equal(new[: len(old)], old)
    h.select(bpy.data.objects["pebble"])
    with pytest.raises(RuntimeError, match="Already in grow.csdf: pebble. Use Replace in the shape list"):
        bpy.ops.csdf.encode_selected()


class _Event:
    """The fields of ``bpy.types.Event`` that ``modal`` reads."""

    def __init__(self, type: str, value: str = "NOTHING") -> None:
        self.type, self.value = type, value


def _modal_harness(addon, operator_class):
    """The operator's modal machinery on a plain object (invoke/modal never run in bpy-as-a-module)."""
    base = addon.operators.job_operator.JobOperator

    class Harness:
        prepare = operator_class.prepare
        _start = base._start
        _finish = base._finish
        _stop_timer = base._stop_timer
        modal = base.modal
        cancel = base.cancel

        def __init__(self) -> None:
            self.reports = []
            self._timer = None
            self._job = None

        def report(self, level, message) -> None:
            self.reports.append((set(level), message))

    return Harness()


def _start_long_encode(addon, lib, h, tmp_path):
    path = tmp_path / "keep.csdf"
    path.write_bytes(lib.path.read_bytes())
    settings = bpy.context.scene.csdf
    settings.library_path, settings.encode_mode = str(path), "ADD"
    settings.preset, settings.steps = "tiny", 100_000
    h.select(h.ico_sphere("pebble", radius=0.4, subdivisions=2))
    harness = _modal_harness(addon, addon.operators.encode.CSDF_OT_encode_selected)
    assert harness._start(bpy.context)
    return harness, path, _digest(path)


def _pump_until_progress(addon, timeout=120.0):
    session = addon.operators.session
    state = bpy.context.window_manager.csdf_job
    deadline = time.monotonic() + timeout
    while state.progress <= 0.0 or state.stage in ("", "sampling", "prepare"):
        assert session.pump(bpy.context) is None, "job ended before it could be cancelled"
        assert time.monotonic() < deadline, "no training progress"
        time.sleep(0.05)


def test_escape_cancels_a_modal_job_and_changes_nothing(addon, lib, h, tmp_path):
    harness, path, digest = _start_long_encode(addon, lib, h, tmp_path)
    before = sorted(bpy.data.objects.keys()), [i.name for i in bpy.context.scene.csdf.shapes]
    wm = bpy.context.window_manager
    harness._timer = wm.event_timer_add(0.1, window=bpy.context.window)
    _pump_until_progress(addon)
    assert wm.csdf_job.busy and "%" in wm.csdf_job.message
    assert harness.modal(bpy.context, _Event("ESC", "PRESS")) == {"RUNNING_MODAL"}
    assert wm.csdf_job.cancelling
    assert harness.modal(bpy.context, _Event("MOUSEMOVE")) == {"PASS_THROUGH"}
    deadline = time.monotonic() + 60
    while (result := harness.modal(bpy.context, _Event("TIMER"))) == {"PASS_THROUGH"}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert result == {"CANCELLED"}
    assert harness.reports[-1][0] == {"WARNING"} and "nothing" in harness.reports[-1][1].lower()
    assert _digest(path) == digest, "the library file changed"
    assert (sorted(bpy.data.objects.keys()), [i.name for i in bpy.context.scene.csdf.shapes]) == before
    assert not wm.csdf_job.busy


def test_cancel_button_cancels_a_running_job(addon, lib, h, tmp_path):
    harness, path, digest = _start_long_encode(addon, lib, h, tmp_path)
    _pump_until_progress(addon)
    assert bpy.ops.csdf.cancel_job() == {"FINISHED"}
    event = addon.operators.session.wait(bpy.context)
    assert event.event == "cancelled"
    assert harness._finish(bpy.context, event) == {"CANCELLED"}
    assert _digest(path) == digest


def test_crashed_worker_is_reported_and_changes_nothing(addon, lib, h, tmp_path):
    harness, path, digest = _start_long_encode(addon, lib, h, tmp_path)
    _pump_until_progress(addon)
    os.kill(addon.operators.session._client._proc.pid, signal.SIGKILL)
    event = addon.operators.session.wait(bpy.context)
    assert event.event == "error" and event.get("kind") == "WorkerCrashed"
    assert harness._finish(bpy.context, event) == {"CANCELLED"}
    assert harness.reports[-1][0] == {"ERROR"} and "stopped unexpectedly" in harness.reports[-1][1]
    assert _digest(path) == digest
    assert bpy.ops.csdf.check_backend() == {"FINISHED"}, "the next job starts a fresh worker"


def test_live_preview_is_low_res_while_moving_then_refined(addon, lib):
    preview = addon.operators.preview
    settings = bpy.context.scene.csdf
    for item in settings.shapes:
        item.use = item.name in ("ball", "brick")
    settings.preview_resolution, settings.resolution = 24, 64
    settings.blend = 0.5  # update callback schedules the preview
    assert preview._state.dirty
    triangles = []
    deadline = time.monotonic() + 120
    while (delay := preview.tick()) is not None:
        obj = bpy.data.objects.get(preview.PREVIEW_NAME)
        if obj is not None and (not triangles or triangles[-1] != len(obj.data.polygons)):
            triangles.append(len(obj.data.polygons))
        assert time.monotonic() < deadline
        time.sleep(delay)
    obj = bpy.data.objects[preview.PREVIEW_NAME]
    triangles.append(len(obj.data.polygons))
    assert len(set(triangles)) >= 2 and triangles[0] < triangles[-1], triangles
    assert _collection_objects() == [preview.PREVIEW_NAME]
    preview.cancel()
