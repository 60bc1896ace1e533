"""The worker session: one backend process, one job at a time, progress on ``WindowManager.csdf_job``.

``start`` submits a job, ``pump`` applies its events, ``conclude`` imports its result (or explains
its failure). ``abandon`` ends a job without importing anything (file load, unregister). The last
decode result is kept so that a repeat of the same request is served without the backend
(cheap redo). Nothing touches the scene or the library before the worker reports success.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
from bpy.app.translations import pgettext_rpt as rpt_

from ..backend.interfaces import protocol
from ..preferences import backend_python, get_prefs, user_path
from ..worker_client import CancelGrace, WorkerClient

#: Seconds a cancelled job may take to stop before the worker is killed.
CANCEL_GRACE_S = 15.0


class UserError(Exception):
    """Input problem reported to the user as is; nothing was changed."""


@dataclass
class JobSpec:
    """What to run and what to do with the result; ``reusable`` results may serve a repeat."""

    request: protocol.RequestArgs
    finish: Callable[[bpy.types.Context, dict[str, Any]], str]
    label: str
    reusable: bool = False


@dataclass
class Job:
    id: str
    spec: JobSpec
    folder: Path
    key: str = ""
    ready: protocol.Event | None = None  # terminal event known at start (a reused result)
    grace: CancelGrace = field(default_factory=lambda: CancelGrace(CANCEL_GRACE_S))


@dataclass
class _Reusable:
    key: str
    folder: Path
    data: dict[str, Any]


_client: WorkerClient | None = None
_job: Job | None = None
_last: _Reusable | None = None


def log_path() -> Path:
    """The worker's log file (stderr of every worker run, tracebacks included)."""
    return user_path("logs") / "worker.log"


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
        client = WorkerClient(python, log_path())
        client.start()
        _client = client
    return _client


def running() -> Job | None:
    """The job in progress, if any."""
    return _job


def stop_worker() -> None:
    """Stop the worker (frees its memory); a later job starts a new one."""
    global _client
    if _client is not None:
        _client.stop()
        _client = None


def abandon() -> bool:
    """End the running job without importing anything (file load, Release Backend); False if none."""
    global _job
    job, _job = _job, None
    if job is None:
        return False
    if _client is not None and job.ready is None:
        _client.cancel(job.id)
    shutil.rmtree(job.folder, ignore_errors=True)
    wm = bpy.context.window_manager
    if wm is not None and hasattr(wm, "csdf_job"):
        reset_state(wm.csdf_job)
    return True


def shutdown() -> None:
    """Stop the worker, forget the running job and the kept result (unregister)."""
    global _last
    abandon()
    stop_worker()
    if _last is not None:
        shutil.rmtree(_last.folder, ignore_errors=True)
        _last = None


def reset_state(state: Any) -> None:
    """``csdf_job`` as it is when no job runs."""
    state.busy, state.cancelling, state.progress, state.message = False, False, 0.0, ""


def request_key(request: protocol.RequestArgs, folder: Path) -> str:
    """Identity of a request's outcome: its arguments (job folder aside), its input files and the
    library file's size and modification time."""
    digest = hashlib.sha256(protocol.dumps(request.to_dict()).replace(str(folder), "").encode())
    library = Path(getattr(request, "library", "") or "")
    if library.is_file():
        stat = library.stat()
        digest.update(f"{stat.st_mtime_ns}:{stat.st_size}".encode())
    for path in sorted(folder.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def start(context: bpy.types.Context, spec: JobSpec, folder: Path) -> Job:
    """Submit a job (or reuse the kept result of the same request); WorkerError if the backend cannot start."""
    global _job
    if _job is not None:
        raise UserError(rpt_("Another job is running ({}): wait for it or press Cancel.").format(_job.spec.label))
    if hasattr(spec.request, "device"):
        spec.request.device = get_prefs(context).device
    key = request_key(spec.request, folder) if spec.reusable else ""
    if key and _last is not None and _last.key == key:
        _job = Job("", spec, folder, key, ready=protocol.result("", _last.data))
    else:
        client = get_client(context)
        _job = Job(client.submit(spec.request), spec, folder, key)
    state = context.window_manager.csdf_job
    state.busy, state.kind, state.cancelling = True, spec.label, False
    state.stage, state.message, state.progress, state.loss, state.eta_s = "", rpt_("Starting…"), 0.0, -1.0, -1.0
    return _job


def request_cancel(context: bpy.types.Context) -> bool:
    """Ask the running job to stop; False when there is none."""
    if _job is None or _client is None:
        return False
    if not _job.grace.sent:
        _client.cancel(_job.id)
        _job.grace.start()
        state = context.window_manager.csdf_job
        state.cancelling, state.message = True, rpt_("Cancelling…")
    return True


def pump(context: bpy.types.Context) -> protocol.Event | None:
    """Apply the job's new events to ``csdf_job``; return its terminal event once it arrives."""
    if _job is None:
        return None
    if _job.ready is not None:
        return _job.ready
    if _client is None:
        return None
    if _job.grace.expired():
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
        parts.append(rpt_("loss {:.4g}").format(loss))
    if eta_s is not None and math.isfinite(eta_s):
        parts.append(rpt_("{:d}:{:02d} left").format(int(eta_s) // 60, int(eta_s) % 60))
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
    keep = False
    try:
        if event.event == "result":
            data = event.get("data") or {}
            level, message = "INFO", job.spec.finish(context, data)
            keep = bool(job.key) and job.ready is None
            if keep:
                _keep(job, data)
        elif event.event == "cancelled":
            level = "WARNING"
            message = rpt_("{}: {}").format(job.spec.label, event.get("message") or rpt_("cancelled; nothing changed."))
        else:
            level, message = "ERROR", failure_message(context, job, event)
    except (UserError, OSError, ValueError, KeyError) as exc:
        level, message = "ERROR", rpt_("{}: could not import the result: {}").format(job.spec.label, exc)
    finally:
        if not keep:
            shutil.rmtree(job.folder, ignore_errors=True)
        reset_state(state)
    state.last_result, state.last_failed = message, level == "ERROR"
    return level, message


def failure_message(context: bpy.types.Context, job: Job, event: protocol.Event) -> str:
    """The report for an ``error`` event; backend state updated, traceback printed (and in the log)."""
    kind = event.get("kind") or "Internal"
    if kind == "MissingDependency" or job.spec.request.CMD == "probe":
        backend = context.window_manager.csdf_backend
        backend.state = "MISSING" if kind == "MissingDependency" else "ERROR"
        backend.summary = str(event.get("message"))
    trace = event.get("traceback")
    if trace:
        print(f"Compact SDF: {job.spec.label} ({kind}):\n{trace}")
    message = rpt_("{} failed: {}").format(job.spec.label, event.get("message"))
    if kind in {"Internal", "WorkerCrashed", "Protocol"}:
        message += " " + rpt_("Open Log (Compact SDF panel) shows the details.")
    return message


def _keep(job: Job, data: dict[str, Any]) -> None:
    """Keep ``job``'s result (folder included) in place of the previous one."""
    global _last
    if _last is not None:
        shutil.rmtree(_last.folder, ignore_errors=True)
    _last = _Reusable(job.key, job.folder, data)
