"""Operators around the backend worker: cancel the job, release the backend, check it, read its log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
from bpy.app.translations import pgettext_rpt as rpt_

from ..backend.interfaces import protocol
from . import session
from .job_operator import JobOperator
from .session import JobSpec

#: Text datablock that Open Log fills with the worker log.
LOG_TEXT = "Compact SDF worker log"


class CSDF_OT_cancel_job(bpy.types.Operator):
    bl_idname = "csdf.cancel_job"
    bl_label = "Cancel Job"
    bl_description = "Stop the running Compact SDF job; the scene and the library stay as they were"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.window_manager.csdf_job.busy

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not session.request_cancel(context):
            self.report({"WARNING"}, rpt_("No job is running"))
            return {"CANCELLED"}
        self.report({"INFO"}, rpt_("Cancelling…"))
        return {"FINISHED"}


class CSDF_OT_release_worker(bpy.types.Operator):
    bl_idname = "csdf.release_worker"
    bl_label = "Release Backend"
    bl_description = (
        "Stop the backend worker process to free its memory and forget any stale job "
        "(the backend restarts with the next job)"
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not context.window_manager.csdf_job.busy

    def execute(self, context: bpy.types.Context) -> set[str]:
        stale = session.abandon()
        session.stop_worker()
        message = rpt_("Backend worker stopped") + (rpt_("; a stale job was cleared") if stale else "")
        self.report({"INFO"}, message)
        return {"FINISHED"}


class CSDF_OT_check_backend(JobOperator, bpy.types.Operator):
    bl_idname = "csdf.check_backend"
    bl_label = "Check Backend"
    bl_description = "Start the backend worker and report its Python, torch, CUDA and the device it will use"

    def prepare(self, context: bpy.types.Context, folder: Path) -> JobSpec:
        def finish(context: bpy.types.Context, data: dict[str, Any]) -> str:
            backend = context.window_manager.csdf_backend
            backend.state, backend.summary = "READY", describe_probe(data)
            return rpt_("Backend ready: {}").format(backend.summary.replace("\n", "; "))

        return JobSpec(protocol.ProbeArgs(), finish, rpt_("Check backend"))


def describe_probe(info: dict[str, Any]) -> str:
    """Probe result as short lines for the UI."""
    cuda = f"CUDA {info['cuda']} ({info.get('cuda_device')})" if info.get("cuda") else rpt_("no CUDA")
    return "\n".join((
        rpt_("Python {} at {}").format(info.get("python_version"), info.get("python")),
        f"torch {info.get('torch')}, {cuda}, numpy {info.get('numpy')}",
        rpt_("Device: {} ({} CPU threads)").format(info.get("device"), info.get("threads")),
    ))


class CSDF_OT_open_log(bpy.types.Operator):
    bl_idname = "csdf.open_log"
    bl_label = "Open Log"
    bl_description = (
        "Load the backend worker's log (tracebacks of failed jobs) into the text "
        f"'{LOG_TEXT}' and show it in a Text Editor if one is open"
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not session.log_path().is_file():
            cls.poll_message_set("No backend log yet: it is written once the backend has run")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        path = session.log_path()
        text = bpy.data.texts.get(LOG_TEXT) or bpy.data.texts.new(LOG_TEXT)
        text.from_string(path.read_text(encoding="utf-8", errors="replace"))
        text.cursor_set(len(text.lines) - 1)
        shown = False
        for area in context.screen.areas if context.screen else ():
            if area.type == "TEXT_EDITOR":
                area.spaces.active.text = text
                shown = True
        where = rpt_("in the Text Editor") if shown else rpt_("open it in a Text Editor")
        self.report({"INFO"}, rpt_("Backend log ({}) loaded into the text '{}': {}").format(path, LOG_TEXT, where))
        return {"FINISHED"}


CLASSES = [CSDF_OT_cancel_job, CSDF_OT_release_worker, CSDF_OT_check_backend, CSDF_OT_open_log]
