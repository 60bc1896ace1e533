"""Issue 10: paths resolved before a job starts, and jobs that end when a file is loaded."""

from __future__ import annotations

from pathlib import Path

import bpy
import pytest


class _Event:
    def __init__(self, type: str, value: str = "NOTHING") -> None:
        self.type, self.value = type, value


def _harness(addon, operator_class):
    """The operator's job machinery on a plain object (modal operators never run in bpy-as-a-module)."""
    base = addon.operators.job_operator.JobOperator

    class Harness:
        prepare = operator_class.prepare
        _start, _finish, _stop_timer = base._start, base._finish, base._stop_timer
        modal, cancel = base.modal, base.cancel

        def __init__(self) -> None:
            self.reports, self._timer, self._job = [], None, None

        def report(self, level, message) -> None:
            self.reports.append((set(level), message))

    return Harness()


def _start_probe(addon):
    harness = _harness(addon, addon.operators.jobs.CSDF_OT_check_backend)
    assert harness._start(bpy.context)
    job = addon.operators.session.running()
    assert job is not None and bpy.context.window_manager.csdf_job.busy
    return harness, job


def test_relative_path_in_an_unsaved_file_is_refused_before_any_work(addon, h, tmp_path):
    """Item 1: ``//`` without a saved .blend would land in the extension folder; refuse at once."""
    settings = bpy.context.scene.csdf
    settings.library_path = "//shapes.csdf"
    h.select(h.ico_sphere("ball"))
    jobs = addon.preferences.user_path("jobs")
    # earlier tests may leave the folder of the kept (reusable) last result: only a new folder is a leak
    before = set(jobs.iterdir()) if jobs.exists() else set()
    with pytest.raises(RuntimeError, match=r"relative to the \.blend file, which is not saved yet: save"):
        bpy.ops.csdf.encode_selected()
    assert addon.operators.session.running() is None
    assert (set(jobs.iterdir()) if jobs.exists() else set()) == before, "job folder left behind"
    assert not (Path(addon.__file__).parent / "shapes.csdf").exists()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    resolved = addon.operators.scene_library.library_file(bpy.context.scene.csdf, must_exist=False)
    assert resolved == tmp_path / "shapes.csdf"


def test_loading_a_file_mid_job_ends_it_and_the_next_job_runs(addon):
    """Item 2: load_pre abandons the job; the modal operator then ends; nothing is stuck."""
    session = addon.operators.session
    harness, job = _start_probe(addon)
    bpy.ops.wm.read_homefile(use_empty=True)
    assert session.running() is None and not job.folder.exists()
    assert not bpy.context.window_manager.csdf_job.busy
    assert harness.modal(bpy.context, _Event("TIMER")) == {"CANCELLED"}
    assert bpy.ops.csdf.check_backend() == {"FINISHED"}, "a later job is not refused"


def test_operator_cancel_ends_its_job(addon):
    """Item 2: Blender calls ``cancel()`` when it drops a modal operator (file load, window closed)."""
    harness, job = _start_probe(addon)
    harness._job = job
    harness.cancel(bpy.context)
    assert addon.operators.session.running() is None and not job.folder.exists()
    assert not bpy.context.window_manager.csdf_job.busy


def test_release_backend_clears_a_stale_job(addon):
    """Item 2: a job whose UI state was lost (busy false) no longer blocks every later job."""
    session = addon.operators.session
    _start_probe(addon)
    bpy.context.window_manager.csdf_job.busy = False
    with pytest.raises(RuntimeError, match="Another job is running"):
        bpy.ops.csdf.check_backend()
    assert bpy.ops.csdf.release_worker() == {"FINISHED"}
    assert session.running() is None and session._client is None
    assert bpy.ops.csdf.check_backend() == {"FINISHED"}
