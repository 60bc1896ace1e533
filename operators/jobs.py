"""Background jobs: one worker process, one job at a time, progress on ``WindowManager.csdf_job``.

Job operators subclass ``JobOperator`` and implement ``prepare`` (validate the context, write
inputs into the job folder, return a ``JobSpec``) and ``JobSpec.finish`` (import the result).
``execute`` runs the job synchronously (background mode, scripts, the CLI); ``invoke`` runs it
modally with a timer so Blender stays responsive, Esc or the Cancel button stopping it. Nothing
touches the scene or the library before the worker reports success.
"""

from __future__ import annotations

import math
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy

from ..backend import protocol
from ..preferences import backend_python, get_prefs, user_path
from ..worker_client import WorkerClient, WorkerError

#: Seconds a cancelled job may take to stop before the worker is killed.
CANCEL_GRACE_S = 15.0


class UserError(Exception):
    """Input problem reported to the user as is; nothing was changed."""


@dataclass
class JobSpec:
    """What to run and what to do with the result."""

    cmd: str
    args: dict[str, Any]
    finish: Callable[[bpy.types.Context, dict[str, Any]], str]
    label: str


@dataclass
class Job:
    id: str
    spec: JobSpec
    folder: Path
    started: float = field(default_factory=time.monotonic)
    cancel_sent_at: float | None = None


_client: WorkerClient | None = None
_job: Job | None = None


def job_folder() -> Path:
    """A fresh folder for one job's files, in the extension's user directory."""
    folder = user_path("jobs") / uuid.uuid4().hex[:12]
    folder.mkdir(parents=True)
    return folder


def get_client(context: bpy.types.Context) -> WorkerClient:
    """The running worker, (re)started with the interpreter the preferences name."""
    global _client
    python = backend_python(context)
    if _client is not None and (not _client.alive or _client.python != python):
        _client.stop()
        _client = None
    if _client is None:
        client = WorkerClient(python, user_path("logs") / "worker.log")
        client.start()
        _client = client
    return _client


def stop_worker() -> None:
    """Stop the worker (frees its memory); a later job starts a new one."""
    global _client
    if _client is not None:
        _client.stop()
        _client = None


def shutdown() -> None:
    """Stop the worker and forget the running job (unregister): nothing is imported."""
    global _job
    stop_worker()
    if _job is not None:
        shutil.rmtree(_job.folder, ignore_errors=True)
        _job = None


def start(context: bpy.types.Context, spec: JobSpec, folder: Path) -> Job:
    """Submit a job; raise WorkerError when the backend cannot start."""
    global _job
    if _job is not None:
        raise UserError(f"Another job is running ({_job.spec.label}); wait for it or cancel it.")
    args = {"device": get_prefs(context).device, **spec.args}
    client = get_client(context)
    _job = Job(client.submit(spec.cmd, args), spec, folder)
    state = context.window_manager.csdf_job
    state.busy, state.kind, state.cancelling = True, spec.label, False
    state.stage, state.message, state.progress, state.loss, state.eta_s = "", "Starting…", 0.0, -1.0, -1.0
    return _job


def request_cancel(context: bpy.types.Context) -> bool:
    """Ask the running job to stop; False when there is none."""
    if _job is None or _client is None:
        return False
    if _job.cancel_sent_at is None:
        _client.cancel(_job.id)
        _job.cancel_sent_at = time.monotonic()
        state = context.window_manager.csdf_job
        state.cancelling, state.message = True, "Cancelling…"
    return True


def pump(context: bpy.types.Context) -> protocol.Event | None:
    """Apply the job's new events to ``csdf_job``; return its terminal event once it arrives."""
    if _job is None or _client is None:
        return None
    if _job.cancel_sent_at is not None and time.monotonic() - _job.cancel_sent_at > CANCEL_GRACE_S:
        _client.kill()
    state = context.window_manager.csdf_job
    for event in _client.poll(_job.id):
        if event.event == "progress":
            total = max(int(event.get("total") or 0), 1)
            state.stage = str(event.get("stage") or "")
            state.progress = min(max(int(event.get("step") or 0) / total, 0.0), 1.0)
            loss, eta = event.get("loss"), event.get("eta_s")
            state.loss = float(loss) if loss is not None else -1.0
            state.eta_s = float(eta) if eta is not None else -1.0
            if not state.cancelling:
                state.message = progress_text(state.stage, state.progress, event.get("message") or "", loss, eta)
        elif event.terminal:
            return event
    return None


def progress_text(stage: str, fraction: float, message: str, loss: float | None, eta_s: float | None) -> str:
    """One status line: ``encode 42% · loss 0.0031 · 1:05 left · message``."""
    parts = [f"{stage} {fraction:.0%}".strip()]
    if loss is not None and math.isfinite(loss):
        parts.append(f"loss {loss:.4g}")
    if eta_s is not None and math.isfinite(eta_s):
        parts.append(f"{int(eta_s) // 60}:{int(eta_s) % 60:02d} left")
    if message:
        parts.append(message)
    return " · ".join(parts)


def wait(context: bpy.types.Context) -> protocol.Event:
    """Block until the job ends (background mode), printing progress; Ctrl-C cancels the job."""
    state = context.window_manager.csdf_job
    printed, printed_at = "", 0.0
    while True:
        try:
            while (event := pump(context)) is None:
                line = f"Compact SDF: {state.kind}: {state.message}"
                now = time.monotonic()
                if state.message and (now - printed_at > 15.0 or (line != printed and now - printed_at > 2.0)):
                    print(line, flush=True)
                    printed, printed_at = line, now
                time.sleep(0.02)
            return event
        except KeyboardInterrupt:
            if state.cancelling and _client is not None:
                _client.kill()
            else:
                request_cancel(context)
                print("Compact SDF: cancelling… (Ctrl-C again stops the backend at once)", flush=True)


def conclude(context: bpy.types.Context, event: protocol.Event) -> tuple[str, str]:
    """Finish the job: import the result or explain the failure. Returns (report type, message)."""
    global _job
    job, _job = _job, None
    assert job is not None
    state = context.window_manager.csdf_job
    try:
        if event.event == "result":
            level, message = "INFO", job.spec.finish(context, event.get("data") or {})
        elif event.event == "cancelled":
            level, message = "WARNING", f"{job.spec.label}: {event.get('message') or 'cancelled; nothing changed.'}"
        else:
            kind = event.get("kind") or "Internal"
            level, message = "ERROR", f"{job.spec.label} failed: {event.get('message')}"
            if kind == "MissingDependency" or job.spec.cmd == "probe":
                backend = context.window_manager.csdf_backend
                backend.state = "MISSING" if kind == "MissingDependency" else "ERROR"
                backend.summary = str(event.get("message"))
            trace = event.get("traceback")
            if trace:
                print(f"Compact SDF: {job.spec.label} ({kind}):\n{trace}")
    except (UserError, OSError, ValueError, KeyError) as exc:
        level, message = "ERROR", f"{job.spec.label}: could not import the result: {exc}"
    finally:
        shutil.rmtree(job.folder, ignore_errors=True)
        state.busy, state.cancelling, state.progress, state.message = False, False, 0.0, ""
    state.last_result = message
    return level, message


class JobOperator:
    """Mixin for operators that run one backend job (see module docstring)."""

    _timer: bpy.types.Timer | None = None

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not context.window_manager.csdf_job.busy

    def prepare(self, context: bpy.types.Context, folder: Path) -> JobSpec:
        raise NotImplementedError

    def _start(self, context: bpy.types.Context) -> bool:
        folder = job_folder()
        try:
            start(context, self.prepare(context, folder), folder)
        except (UserError, WorkerError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(exc, WorkerError):
                backend = context.window_manager.csdf_backend
                backend.state, backend.summary = "ERROR", str(exc)
            self.report({"ERROR"}, str(exc))
            return False
        return True

    def _finish(self, context: bpy.types.Context, event: protocol.Event) -> set[str]:
        level, message = conclude(context, event)
        self.report({level}, message)
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        return {"FINISHED"} if level == "INFO" else {"CANCELLED"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not self._start(context):
            return {"CANCELLED"}
        return self._finish(context, wait(context))

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if bpy.app.background or context.window is None:
            return self.execute(context)
        if not self._start(context):
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type == "ESC" and event.value == "PRESS":
            request_cancel(context)
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        terminal = pump(context)
        state = context.window_manager.csdf_job
        if context.workspace is not None:
            context.workspace.status_text_set(f"Compact SDF — {state.kind}: {state.message}  (Esc to cancel)")
        tag_redraw(context)
        if terminal is None:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        self._timer = None
        result = self._finish(context, terminal)
        tag_redraw(context)
        return result


def tag_redraw(context: bpy.types.Context) -> None:
    """Redraw the 3D views' sidebars and the status bar."""
    screen = context.screen
    if screen is None:
        return
    for area in screen.areas:
        if area.type in {"VIEW_3D", "STATUSBAR", "PREFERENCES"}:
            area.tag_redraw()


class CSDF_OT_cancel_job(bpy.types.Operator):
    bl_idname = "csdf.cancel_job"
    bl_label = "Cancel Job"
    bl_description = "Stop the running Compact SDF job; the scene and the library stay as they were"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.window_manager.csdf_job.busy

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not request_cancel(context):
            self.report({"WARNING"}, "No job is running")
            return {"CANCELLED"}
        self.report({"INFO"}, "Cancelling…")
        return {"FINISHED"}


class CSDF_OT_release_worker(bpy.types.Operator):
    bl_idname = "csdf.release_worker"
    bl_label = "Release Backend"
    bl_description = "Stop the backend worker process to free its memory (it restarts with the next job)"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not context.window_manager.csdf_job.busy

    def execute(self, context: bpy.types.Context) -> set[str]:
        stop_worker()
        self.report({"INFO"}, "Backend worker stopped")
        return {"FINISHED"}


class CSDF_OT_check_backend(JobOperator, bpy.types.Operator):
    bl_idname = "csdf.check_backend"
    bl_label = "Check Backend"
    bl_description = "Start the backend worker and report its Python, torch, CUDA and the device it will use"

    def prepare(self, context: bpy.types.Context, folder: Path) -> JobSpec:
        def finish(context: bpy.types.Context, data: dict[str, Any]) -> str:
            backend = context.window_manager.csdf_backend
            backend.state, backend.summary = "READY", describe_probe(data)
            return "Backend ready: " + backend.summary.replace("\n", "; ")

        return JobSpec("probe", {}, finish, "Check backend")


def describe_probe(info: dict[str, Any]) -> str:
    """Probe result as short lines for the UI."""
    cuda = f"CUDA {info['cuda']} ({info.get('cuda_device')})" if info.get("cuda") else "no CUDA"
    return (
        f"Python {info.get('python_version')} at {info.get('python')}\n"
        f"torch {info.get('torch')}, {cuda}, numpy {info.get('numpy')}\n"
        f"Device: {info.get('device')} ({info.get('threads')} CPU threads)"
    )


CLASSES = [CSDF_OT_cancel_job, CSDF_OT_release_worker, CSDF_OT_check_backend]
