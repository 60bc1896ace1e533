"""Encode selected mesh objects into the latent library."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
from bpy.app.translations import pgettext_iface as iface_
from bpy.app.translations import pgettext_rpt as rpt_

from .. import mesh_bridge
from ..backend.config import SHARED_FRAME
from ..backend.errors import CheckpointError
from ..backend.field.checkpoint_meta import LATEST, CheckpointInfo, checkpoint_path, read_checkpoint, remove_checkpoint
from ..backend.interfaces import protocol
from .scene_library import library_file, read_meta
from .shape_list import refresh_shapes
from .job_operator import JobOperator
from .session import JobSpec, UserError


def selected_meshes(context: bpy.types.Context) -> list[bpy.types.Object]:
    """Selected mesh objects, in selection order."""
    return [obj for obj in context.selected_objects if obj.type == "MESH"]


def save_meshes(context: bpy.types.Context, objects: list[bpy.types.Object], path: Path) -> None:
    """Write the evaluated geometry (modifiers applied, object space) of ``objects`` to a mesh .npz."""
    depsgraph = context.evaluated_depsgraph_get()
    meshes = []
    for obj in objects:
        arrays = mesh_bridge.object_to_arrays(obj, depsgraph)
        if len(arrays.faces) == 0:
            raise UserError(rpt_("'{}' has no faces (empty mesh); nothing was encoded.").format(obj.name))
        meshes.append({"vertices": arrays.vertices, "faces": arrays.faces})
    protocol.save_meshes(str(path), meshes)


class CSDF_OT_encode_selected(JobOperator, bpy.types.Operator):
    bl_idname = "csdf.encode_selected"
    bl_label = "Encode Selected"
    bl_description = (
        "Encode the selected mesh objects (modifiers applied, in object space) into the library file; "
        "runs in the background, Esc cancels"
    )
    # UNDO: the shape list changes. No REGISTER: Repeat Last and the Redo panel must never retrain.
    bl_options = {"UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not super().poll(context):
            return False
        if not selected_meshes(context):
            cls.poll_message_set("Select one or more mesh objects to encode")
            return False
        return True

    def prepare(self, context: bpy.types.Context, folder: Path) -> JobSpec:
        settings = context.scene.csdf
        path = library_file(settings, must_exist=False)
        mode = settings.encode_mode
        if mode == "AUTO":
            mode = "ADD" if path.is_file() else "NEW"
        if mode == "ADD" and not path.is_file():
            raise UserError(
                rpt_("Cannot add to {}: the file does not exist. Set Encode Into to New Library.").format(path.name)
            )
        if (checkpoint_path(path) / LATEST).is_file():
            raise UserError(
                rpt_("An interrupted encode into {} can be resumed: press Resume in the Encode panel, "
                     "or Discard it to start over.").format(path.name)
            )
        objects = selected_meshes(context)
        others = [f"{obj.name} ({obj.type.lower()})" for obj in context.selected_objects if obj.type != "MESH"]
        if mode == "ADD":
            existing = {shape["name"] for shape in read_meta(path).get("shapes", [])}
            clash = sorted(existing.intersection(obj.name for obj in objects))
            if clash:
                raise UserError(
                    rpt_("Already in {}: {}. Use Replace in the shape list to re-encode them, "
                         "or rename the objects.").format(path.name, ", ".join(clash))
                )
        meshes_path = folder / "meshes.npz"
        save_meshes(context, objects, meshes_path)
        names = [obj.name for obj in objects]
        matrices = {obj.name: obj.matrix_world.copy() for obj in objects}
        skipped = (" " + rpt_("Skipped non-mesh: {}.").format(", ".join(others))) if others else ""

        def finish(context: bpy.types.Context, data: dict[str, Any]) -> str:
            settings = context.scene.csdf
            refresh_shapes(settings, read_meta(path), placed=matrices)
            shared = " " + rpt_("In the library's shared frame.") if data.get("frame") == SHARED_FRAME else ""
            return rpt_("Encoded {} into {} in {:.0f} s ({} in the library).").format(
                shape_count(len(names)), path.name, data.get("elapsed_s", 0), len(settings.shapes)) + shared + skipped

        request = protocol.EncodeArgs(
            meshes=str(meshes_path),
            names=names,
            library_out=str(path),
            library_in=str(path) if mode == "ADD" else None,
            preset=settings.preset,
            size=settings.size,
            steps=settings.steps or None,
            seed=settings.seed,
            frame=settings.frame,
            checkpoint_minutes=settings.checkpoint_minutes,
        )
        return JobSpec(request, finish, rpt_("Encode {}").format(shape_count(len(names))))


def shape_count(count: int) -> str:
    """``1 shape`` / ``3 shapes``."""
    return (rpt_("{} shape") if count == 1 else rpt_("{} shapes")).format(count)


# Interrupted encodes: a checkpoint beside the library (``<library>.ckpt``, see backend field.checkpoint_meta)
# that a crash, a closed Blender or a stopped backend left. Resume continues it; Discard deletes it.


@dataclass(frozen=True)
class Interrupted:
    """The checkpoint of an interrupted encode into ``library``: ``info`` from its ``latest.json``,
    or None with the ``problem`` when that is unreadable (it can then only be discarded)."""

    library: Path
    info: CheckpointInfo | None
    problem: str = ""

    @property
    def directory(self) -> Path:
        return checkpoint_path(self.library)

    @property
    def names(self) -> list[str]:
        names = (self.info.request or {}).get("names") if self.info else None
        return [str(n) for n in names] if isinstance(names, list) else []


_seen: tuple[tuple[str, int, int], Interrupted] | None = None  # the last checkpoint read, by its latest.json's stat


def interrupted_encode(settings: Any) -> Interrupted | None:
    """The interrupted encode into the scene's library, if its checkpoint exists (torch-free, cheap
    enough to call from ``draw``: one stat, and a read when ``latest.json`` changed)."""
    global _seen
    try:
        library = library_file(settings, must_exist=False)
        latest = checkpoint_path(library) / LATEST
        stat = latest.stat()
    except (UserError, OSError):
        return None
    key = (str(latest), stat.st_mtime_ns, stat.st_size)
    if _seen is None or _seen[0] != key:
        try:
            found = Interrupted(library, read_checkpoint(library))
        except CheckpointError as exc:
            found = Interrupted(library, None, str(exc))
        if found.info is None and not found.problem:  # removed between the stat and the read
            return None
        _seen = (key, found)
    return _seen[1]


def describe_interrupted(found: Interrupted) -> tuple[str, str]:
    """Two panel lines: what was interrupted, and how far it got and when (or why it cannot resume)."""
    names = found.names
    title = iface_("Interrupted encode of {}").format(shape_count(len(names))) if names else iface_("Interrupted encode")
    info = found.info
    if info is None:
        return title, iface_("Unreadable checkpoint: {}").format(found.problem)
    phase = iface_("Coarse phase") if info.phase == "coarse" else iface_("Detail phase")
    if info.fraction is not None:
        progress = iface_("{} {:.0%} (step {:d})").format(phase, info.fraction, info.step)
    else:
        progress = iface_("{} step {:d}").format(phase, info.step)
    return title, iface_("{}, saved {}").format(progress, age_text(info.age_s))


def age_text(seconds: float) -> str:
    """``just now``, ``5 min ago``, ``3 h ago``, ``2 days ago``."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return iface_("just now")
    if minutes < 60:
        return iface_("{:d} min ago").format(minutes)
    if minutes < 48 * 60:
        return iface_("{:d} h ago").format(minutes // 60)
    return iface_("{:d} days ago").format(minutes // (24 * 60))


class CSDF_OT_encode_resume(JobOperator, bpy.types.Operator):
    bl_idname = "csdf.encode_resume"
    bl_label = "Resume"
    bl_description = (
        "Continue the interrupted encode into the library file from its last checkpoint, with the meshes "
        "and settings it started with; runs in the background, Esc cancels"
    )
    bl_options = {"UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not super().poll(context):
            return False
        found = interrupted_encode(context.scene.csdf)
        if found is None:
            cls.poll_message_set("No interrupted encode of this library to resume")
            return False
        if found.info is None or not found.info.resumable_by_worker:
            cls.poll_message_set("This checkpoint cannot be resumed from Blender: Discard it")
            return False
        return True

    def prepare(self, context: bpy.types.Context, folder: Path) -> JobSpec:
        settings = context.scene.csdf
        path = library_file(settings, must_exist=False)
        found = interrupted_encode(settings)
        if found is None:
            raise UserError(rpt_("No interrupted encode into {} to resume.").format(path.name))
        if found.info is None:
            raise UserError(rpt_("The checkpoint of {} is unreadable ({}): Discard it and encode again.").format(
                path.name, found.problem))
        if not found.info.resumable_by_worker:
            raise UserError(rpt_("The interrupted encode into {} was started outside Blender: resume it with the "
                                 "same command and --resume, or Discard it.").format(path.name))
        try:
            request = protocol.EncodeArgs.from_dict(found.info.request or {})
        except protocol.ProtocolError as exc:
            raise UserError(rpt_("The interrupted encode into {} cannot be resumed ({}): Discard it and encode "
                                 "again.").format(path.name, exc)) from exc
        request.meshes, request.library_out, request.resume = str(found.info.meshes), str(path), True
        request.library_in = str(path) if request.library_in else None
        names = list(request.names)

        def finish(context: bpy.types.Context, data: dict[str, Any]) -> str:
            settings = context.scene.csdf
            # placed like the scene's objects of the same name, as Encode places its own
            objects = [context.scene.objects.get(name) for name in names]
            placed = {obj.name: obj.matrix_world.copy() for obj in objects if obj is not None and obj.type == "MESH"}
            refresh_shapes(settings, read_meta(path), placed=placed)
            return rpt_("Resumed and encoded {} into {} in {:.0f} s ({} in the library).").format(
                shape_count(len(names)), path.name, data.get("elapsed_s", 0), len(settings.shapes))

        return JobSpec(request, finish, rpt_("Resume encode of {}").format(shape_count(len(names))))


class CSDF_OT_encode_discard(bpy.types.Operator):
    bl_idname = "csdf.encode_discard"
    bl_label = "Discard"
    bl_description = "Delete the checkpoint of the interrupted encode into the library file; its training so far is lost"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if context.window_manager.csdf_job.busy:
            cls.poll_message_set("Wait for the running job to end")
            return False
        if interrupted_encode(context.scene.csdf) is None:
            cls.poll_message_set("No interrupted encode of this library")
            return False
        return True

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        found = interrupted_encode(context.scene.csdf)
        return context.window_manager.invoke_confirm(
            self, event, title=rpt_("Discard the interrupted encode into {}?").format(found.library.name if found else ""),
            message=rpt_("Its training so far is lost."), confirm_text=rpt_("Discard"), icon="WARNING",
        )

    def execute(self, context: bpy.types.Context) -> set[str]:
        global _seen
        found = interrupted_encode(context.scene.csdf)
        if found is None:
            self.report({"WARNING"}, rpt_("No interrupted encode to discard"))
            return {"CANCELLED"}
        remove_checkpoint(found.directory)
        _seen = None
        self.report({"INFO"}, rpt_("Discarded the interrupted encode into {}.").format(found.library.name))
        return {"FINISHED"}


CLASSES = [CSDF_OT_encode_selected, CSDF_OT_encode_resume, CSDF_OT_encode_discard]
