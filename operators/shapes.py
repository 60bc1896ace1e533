"""Edit the library from the shape list: replace (re-encode), remove and rename the active shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
from bpy.app.translations import pgettext_rpt as rpt_

from ..backend.interfaces import protocol
from .scene_library import library_file, read_meta
from .shape_list import refresh_shapes
from .encode import save_meshes
from .job_operator import JobOperator
from .session import JobSpec, UserError


def active_shape(context: bpy.types.Context) -> Any | None:
    """The shape list's active item, if any."""
    settings = context.scene.csdf
    if 0 <= settings.active_shape < len(settings.shapes):
        return settings.shapes[settings.active_shape]
    return None


class _ShapeOperator(JobOperator):
    """A job on the list's active shape that rewrites the library file."""

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not super().poll(context):
            return False
        if active_shape(context) is None:
            cls.poll_message_set("Select a shape in the library list")
            return False
        return True


class CSDF_OT_shape_replace(_ShapeOperator, bpy.types.Operator):
    bl_idname = "csdf.shape_replace"
    bl_label = "Replace Shape"
    bl_description = (
        "Re-encode the active shape from the mesh object of the same name (after you edited it); "
        "the other shapes keep their codes. Runs in the background, Esc cancels"
    )
    bl_options = {"UNDO"}  # no REGISTER: Repeat Last and Redo must never retrain

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not super().poll(context):
            return False
        obj = context.scene.objects.get(active_shape(context).name)
        if obj is None or obj.type != "MESH":
            cls.poll_message_set("No mesh object named like the active shape to re-encode it from")
            return False
        return True

    def prepare(self, context: bpy.types.Context, folder: Path) -> JobSpec:
        settings = context.scene.csdf
        path = library_file(settings, must_exist=True)
        name = active_shape(context).name
        obj = context.scene.objects[name]
        meshes = folder / "meshes.npz"
        save_meshes(context, [obj], meshes)
        matrix = obj.matrix_world.copy()

        def finish(context: bpy.types.Context, data: dict[str, Any]) -> str:
            refresh_shapes(context.scene.csdf, read_meta(path), placed={name: matrix})
            return rpt_("Re-encoded {} in {} in {:.0f} s").format(name, path.name, data.get("elapsed_s", 0))

        request = protocol.ReplaceArgs(
            library=str(path), name=name, meshes=str(meshes), library_out=str(path),
            steps=settings.steps or None, seed=settings.seed,
        )
        return JobSpec(request, finish, rpt_("Replace {}").format(name))


class CSDF_OT_shape_remove(_ShapeOperator, bpy.types.Operator):
    bl_idname = "csdf.shape_remove"
    bl_label = "Remove Shape"
    bl_description = "Remove the active shape from the library file (objects already decoded stay)"
    bl_options = {"REGISTER", "UNDO"}

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        return context.window_manager.invoke_confirm(
            self, event, title=rpt_("Remove {} from the library?").format(active_shape(context).name),
            confirm_text=rpt_("Remove"),
        )

    def prepare(self, context: bpy.types.Context, folder: Path) -> JobSpec:
        path = library_file(context.scene.csdf, must_exist=True)
        name = active_shape(context).name

        def finish(context: bpy.types.Context, data: dict[str, Any]) -> str:
            refresh_shapes(context.scene.csdf, read_meta(path))
            return rpt_("Removed {} from {}").format(name, path.name)

        request = protocol.RemoveArgs(library=str(path), names=[name], library_out=str(path))
        return JobSpec(request, finish, rpt_("Remove {}").format(name))


class CSDF_OT_shape_rename(_ShapeOperator, bpy.types.Operator):
    bl_idname = "csdf.shape_rename"
    bl_label = "Rename Shape"
    bl_description = "Rename the active shape in the library file"
    bl_options = {"REGISTER", "UNDO"}

    new_name: bpy.props.StringProperty(name="New Name", description="The shape's new name")

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        self.new_name = active_shape(context).name
        return context.window_manager.invoke_props_dialog(self, confirm_text=rpt_("Rename"))

    def prepare(self, context: bpy.types.Context, folder: Path) -> JobSpec:
        settings = context.scene.csdf
        path = library_file(settings, must_exist=True)
        old, new = active_shape(context).name, self.new_name.strip()
        if not new:
            raise UserError(rpt_("Type a new name for {}.").format(old))
        if new != old and new in settings.shapes:
            raise UserError(rpt_("{} already has a shape named {}: choose another name.").format(path.name, new))

        def finish(context: bpy.types.Context, data: dict[str, Any]) -> str:
            item = context.scene.csdf.shapes.get(old)
            if item is not None:
                item.name = new  # keeps its tick, weight and source transform through the refresh
            refresh_shapes(context.scene.csdf, read_meta(path))
            return rpt_("Renamed {} to {} in {}").format(old, new, path.name)

        request = protocol.RenameArgs(library=str(path), old=old, new=new, library_out=str(path))
        return JobSpec(request, finish, rpt_("Rename {}").format(old))


CLASSES = [CSDF_OT_shape_replace, CSDF_OT_shape_remove, CSDF_OT_shape_rename]
