"""Encode selected mesh objects into the latent library."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy

from .. import mesh_bridge
from ..backend import protocol
from .common import library_file, read_meta, refresh_shapes
from .jobs import JobOperator, JobSpec, UserError


class CSDF_OT_encode_selected(JobOperator, bpy.types.Operator):
    bl_idname = "csdf.encode_selected"
    bl_label = "Encode Selected"
    bl_description = (
        "Encode the selected mesh objects (modifiers applied, in object space) into the library file; "
        "runs in the background, Esc cancels"
    )
    bl_options = {"REGISTER"}

    def prepare(self, context: bpy.types.Context, folder: Path) -> JobSpec:
        settings = context.scene.csdf
        path = library_file(settings, must_exist=False)
        mode = settings.encode_mode
        if mode == "AUTO":
            mode = "ADD" if path.is_file() else "NEW"
        if mode == "ADD" and not path.is_file():
            raise UserError(f"Cannot add to {path.name}: the file does not exist (use New Library mode).")

        selected = list(context.selected_objects)
        objects = [obj for obj in selected if obj.type == "MESH"]
        others = [f"{obj.name} ({obj.type.lower()})" for obj in selected if obj.type != "MESH"]
        if not objects:
            detail = f" Selected: {', '.join(others)} — not mesh objects." if others else ""
            raise UserError(f"Select one or more mesh objects to encode.{detail}")
        if mode == "ADD":
            existing = {shape["name"] for shape in read_meta(path).get("shapes", [])}
            clash = sorted(existing.intersection(obj.name for obj in objects))
            if clash:
                raise UserError(
                    f"Already in {path.name}: {', '.join(clash)}. Rename the objects or encode into a new library."
                )

        depsgraph = context.evaluated_depsgraph_get()
        meshes = []
        for obj in objects:
            arrays = mesh_bridge.object_to_arrays(obj, depsgraph)
            if len(arrays.faces) == 0:
                raise UserError(f"'{obj.name}' has no faces (empty mesh); nothing was encoded.")
            meshes.append({"vertices": arrays.vertices, "faces": arrays.faces})
        meshes_path = folder / "meshes.npz"
        protocol.save_meshes(str(meshes_path), meshes)

        names = [obj.name for obj in objects]
        matrices = {obj.name: obj.matrix_world.copy() for obj in objects}
        skipped = f" Skipped non-mesh: {', '.join(others)}." if others else ""

        def finish(context: bpy.types.Context, data: dict[str, Any]) -> str:
            settings = context.scene.csdf
            refresh_shapes(settings, read_meta(path))
            for name, matrix in matrices.items():
                item = settings.shapes.get(name)
                if item is not None:
                    item.matrix, item.has_matrix = matrix, True
            return (
                f"Encoded {len(names)} shape{'s' if len(names) != 1 else ''} into {path.name} "
                f"in {data.get('elapsed_s', 0):.0f} s ({len(settings.shapes)} in the library).{skipped}"
            )

        args = {
            "meshes": str(meshes_path),
            "names": names,
            "library_in": str(path) if mode == "ADD" else None,
            "library_out": str(path),
            "preset": settings.preset,
            "steps": settings.steps or None,
            "seed": settings.seed,
        }
        return JobSpec("encode", args, finish, f"Encode {len(names)} shape{'s' if len(names) != 1 else ''}")


CLASSES = [CSDF_OT_encode_selected]
