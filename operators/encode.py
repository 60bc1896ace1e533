"""Encode selected mesh objects into the latent library."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
from bpy.app.translations import pgettext_rpt as rpt_

from .. import mesh_bridge
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
            refresh_shapes(settings, read_meta(path))
            for name, matrix in matrices.items():
                item = settings.shapes.get(name)
                if item is not None:
                    item.matrix, item.has_matrix = matrix, True
            return rpt_("Encoded {} into {} in {:.0f} s ({} in the library).").format(
                shape_count(len(names)), path.name, data.get("elapsed_s", 0), len(settings.shapes)) + skipped

        request = protocol.EncodeArgs(
            meshes=str(meshes_path),
            names=names,
            library_out=str(path),
            library_in=str(path) if mode == "ADD" else None,
            preset=settings.preset,
            size=settings.size,
            steps=settings.steps or None,
            seed=settings.seed,
        )
        return JobSpec(request, finish, rpt_("Encode {}").format(shape_count(len(names))))


def shape_count(count: int) -> str:
    """``1 shape`` / ``3 shapes``."""
    return (rpt_("{} shape") if count == 1 else rpt_("{} shapes")).format(count)


CLASSES = [CSDF_OT_encode_selected]
