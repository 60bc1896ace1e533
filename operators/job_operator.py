"""Base of the operators that run one backend job (see ``session``).

Subclasses implement ``prepare`` (validate the context, write inputs into the job folder, return a
``JobSpec``). ``execute`` runs the job synchronously (background mode, scripts, the CLI, and a
redo served from the kept result); ``invoke`` runs it modally with a timer so Blender stays
responsive, Esc or the Cancel button stopping it. ``cancel`` (Blender calls it when a file is
loaded or the window closes mid-job) ends the job cleanly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import bpy
from bpy.app.translations import pgettext_rpt as rpt_

from ..backend.interfaces import protocol
from ..worker_client import WorkerError
from . import session
from .redraw import tag_redraw
from .session import JobSpec, UserError


class JobOperator:
    """Mixin for operators that run one backend job."""

    _timer: bpy.types.Timer | None = None
    _job: session.Job | None = None

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not context.window_manager.csdf_job.busy

    def prepare(self, context: bpy.types.Context, folder: Path) -> JobSpec:
        raise NotImplementedError

    def _start(self, context: bpy.types.Context) -> bool:
        folder = session.job_folder()
        try:
            self._job = session.start(context, self.prepare(context, folder), folder)
        except (UserError, WorkerError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(exc, WorkerError):
                backend = context.window_manager.csdf_backend
                backend.state, backend.summary = "ERROR", str(exc)
            self.report({"ERROR"}, str(exc))
            return False
        return True

    def _finish(self, context: bpy.types.Context, event: protocol.Event) -> set[str]:
        level, message = session.conclude(context, event)
        self.report({level}, message)
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        return {"FINISHED"} if level == "INFO" else {"CANCELLED"}

    def _stop_timer(self, context: bpy.types.Context) -> None:
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not self._start(context):
            return {"CANCELLED"}
        return self._finish(context, session.wait(context))

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
        if session.running() is not self._job:  # abandoned (file load, Release Backend)
            self._stop_timer(context)
            return {"CANCELLED"}
        if event.type == "ESC" and event.value == "PRESS":
            session.request_cancel(context)
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        terminal = session.pump(context)
        state = context.window_manager.csdf_job
        if context.workspace is not None:
            context.workspace.status_text_set(
                rpt_("Compact SDF — {}: {}  (Esc to cancel)").format(state.kind, state.message)
            )
        tag_redraw(context)
        if terminal is None:
            return {"PASS_THROUGH"}
        self._stop_timer(context)
        result = self._finish(context, terminal)
        tag_redraw(context)
        return result

    def cancel(self, context: bpy.types.Context) -> None:
        """Blender ends the modal operator (file load, window closed): stop the job, import nothing."""
        self._stop_timer(context)
        if session.running() is self._job:
            session.abandon()
        if context.workspace is not None:
            context.workspace.status_text_set(None)
