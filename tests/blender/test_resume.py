"""Issue 22 item 2: an encode started from Blender survives Blender.

Encodes from the panel checkpoint as the CLI does; after a crash, a restart or a file load the
Encode panel offers Resume (with the run's progress and age) or Discard for the scene's library.
"""

from __future__ import annotations

import json
import os
import signal
import time

import bpy
import pytest

from backend.field.checkpoint_meta import FORMAT, LATEST, checkpoint_path


def _harness(addon, operator_class):
    """The operator's job machinery on a plain object (modal operators never run in bpy-as-a-module)."""
    base = addon.operators.job_operator.JobOperator

    class Harness:
        prepare = operator_class.prepare
        _start, _finish = base._start, base._finish

        def __init__(self) -> None:
            self.reports, self._timer, self._job = [], None, None

        def report(self, level, message) -> None:
            self.reports.append((set(level), message))

    return Harness()


def _encode_panel(addon, h) -> tuple[list, list[str]]:
    calls = h.draw(addon.panels.main.CSDF_PT_encode.draw, bpy.context)
    return calls, [c[1] for c in calls if c[0] == "label"]


def test_an_encode_whose_worker_was_killed_resumes_after_a_file_load(addon, h, tmp_path):
    pytest.importorskip("torch")
    library = tmp_path / "lib.csdf"
    ckpt = checkpoint_path(library)
    h.select(h.ico_sphere("ball", radius=0.8, subdivisions=2, location=(-2.0, 0.0, 0.0)),
             h.box("brick", location=(1.0, 0.0, 0.5)))
    settings = bpy.context.scene.csdf
    settings.library_path = str(library)
    settings.preset, settings.steps, settings.checkpoint_minutes = "tiny", 60, 0.001  # a checkpoint every step
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))

    session = addon.operators.session
    harness = _harness(addon, addon.operators.encode.CSDF_OT_encode_selected)
    assert harness._start(bpy.context)
    deadline = time.monotonic() + 300
    while not (ckpt / LATEST).is_file():
        assert session.pump(bpy.context) is None, "the encode ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.02)
    os.kill(session._client._proc.pid, signal.SIGKILL)  # as if Blender (and so its worker) crashed
    event = session.wait(bpy.context)
    assert event.event == "error" and event.get("kind") == "WorkerCrashed"
    assert harness._finish(bpy.context, event) == {"CANCELLED"}
    assert not library.exists() and (ckpt / LATEST).is_file()

    bpy.ops.wm.open_mainfile(filepath=str(blend))  # a restart: the file again, a new worker
    calls, labels = _encode_panel(addon, h)
    assert ("operator", "csdf.encode_resume") in calls and ("operator", "csdf.encode_discard") in calls
    assert "Interrupted encode of 2 shapes" in labels
    assert any(" phase " in text and "%" in text and ("just now" in text or "min ago" in text) for text in labels), labels
    with pytest.raises(RuntimeError, match="press Resume"):
        bpy.ops.csdf.encode_selected()  # a new encode would throw the training away
    assert (ckpt / LATEST).is_file()

    assert bpy.ops.csdf.encode_resume() == {"FINISHED"}
    assert "Resumed and encoded 2 shapes" in bpy.context.window_manager.csdf_job.last_result
    assert library.is_file() and not ckpt.exists(), "a finished run removes its checkpoint"
    settings = bpy.context.scene.csdf
    assert [item.name for item in settings.shapes] == ["ball", "brick"]
    assert all(item.has_matrix and item.surface_error >= 0 for item in settings.shapes)
    assert ("operator", "csdf.encode_resume") not in _encode_panel(addon, h)[0]


def test_discard_deletes_the_checkpoint_after_confirmation(addon, h, tmp_path):
    library = tmp_path / "lib.csdf"
    bpy.context.scene.csdf.library_path = str(library)
    ckpt = checkpoint_path(library)
    ckpt.mkdir()
    latest = ckpt / LATEST
    latest.write_text(json.dumps({"format": FORMAT, "generation": 3, "world_size": 1, "run": "x", "phase": "detail",
                                  "step": 120, "fraction": 0.25}))
    two_hours_ago = time.time() - 2 * 3600 - 60
    os.utime(latest, (two_hours_ago, two_hours_ago))
    (ckpt / "3-rank0.safetensors").write_bytes(b"")
    calls, labels = _encode_panel(addon, h)
    assert "Interrupted encode" in labels and "Detail phase 25% (step 120), saved 2 h ago" in labels
    assert ("operator", "csdf.encode_discard") in calls
    assert not bpy.ops.csdf.encode_resume.poll(), "a run started outside Blender (no request kept) cannot resume here"
    h.select(h.ico_sphere("ball"))
    with pytest.raises(RuntimeError, match="Discard it to start over"):
        bpy.ops.csdf.encode_selected()

    latest.write_text("{not json")
    assert any(text.startswith("Unreadable checkpoint") for text in _encode_panel(addon, h)[1])
    assert bpy.ops.csdf.encode_discard.poll(), "an unreadable checkpoint can still be discarded"

    asked = {}

    class _WindowManager:
        def invoke_confirm(self, operator, event, **options):
            asked.update(options)
            return {"CANCELLED"}  # the user said no

    class _Context:
        window_manager, scene = _WindowManager(), bpy.context.scene

    discard = addon.operators.encode.CSDF_OT_encode_discard
    assert discard.invoke(None, _Context(), None) == {"CANCELLED"}
    assert asked["confirm_text"] == "Discard" and "lib.csdf" in asked["title"] and ckpt.is_dir()

    assert bpy.ops.csdf.encode_discard() == {"FINISHED"}  # confirmed
    assert not ckpt.exists()
    calls, _ = _encode_panel(addon, h)
    assert ("operator", "csdf.encode_discard") not in calls and not bpy.ops.csdf.encode_discard.poll()
