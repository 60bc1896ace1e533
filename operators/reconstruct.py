"""Decode library shapes back into mesh objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
import numpy as np
from bpy.app.translations import pgettext_rpt as rpt_

from .. import mesh_bridge
from ..backend.interfaces import protocol
from . import recipe as recipes
from .encode import shape_count
from .results import add_result_object, format_fidelity, load_result, select_only, show_heatmap, target_faces
from .scene_library import library_file
from .shape_list import shape_matrix, used_shapes
from .job_operator import JobOperator
from .session import JobSpec, UserError


def source_reference(context: bpy.types.Context, name: str, folder: Path) -> tuple[str, float] | None:
    """Save the mesh of the object a shape was encoded from (same name) as a reference .npz.

    Returns (path, bounding-box diagonal), or None when no such mesh object exists.
    """
    obj = context.scene.objects.get(name)
    if obj is None or obj.type != "MESH":
        return None
    arrays = mesh_bridge.object_to_arrays(obj, context.evaluated_depsgraph_get())
    if len(arrays.faces) == 0:
        return None
    path = folder / f"reference_{len(list(folder.glob('reference_*')))}.npz"
    protocol.save_meshes(str(path), [{"vertices": arrays.vertices, "faces": arrays.faces}])
    diagonal = float(np.linalg.norm(arrays.vertices.max(axis=0) - arrays.vertices.min(axis=0)))
    return str(path), diagonal


class CSDF_OT_reconstruct(JobOperator, bpy.types.Operator):
    bl_idname = "csdf.reconstruct"
    bl_label = "Reconstruct"
    bl_description = (
        "Decode the library shapes ticked in the list (or the active one) into new mesh objects "
        "in the 'Compact SDF' collection, placed like their sources"
    )
    # Redo with unchanged settings reuses the decoded meshes (no backend run).
    bl_options = {"REGISTER", "UNDO"}

    def prepare(self, context: bpy.types.Context, folder: Path) -> JobSpec:
        settings = context.scene.csdf
        path = library_file(settings, must_exist=True)
        names = used_shapes(settings)
        if not names:
            raise UserError(rpt_("The library list is empty: open a library or encode shapes first."))
        heatmap = settings.heatmap
        items, ranges = [], {}
        for index, name in enumerate(names):
            item = protocol.DecodeItem(name, str(folder / f"shape_{index:03d}.npz"), heatmap=heatmap)
            reference = source_reference(context, name, folder)
            if reference is not None:
                item.reference, diagonal = reference
                ranges[name] = diagonal * settings.heatmap_range
            items.append(item)
        resolution, mode = settings.resolution, settings.blend_mode

        def finish(context: bpy.types.Context, data: dict[str, Any]) -> str:
            created, lines = [], []
            for item in data["items"]:
                name = str(item["target"])
                arrays = load_result(item["out"])
                if len(arrays["faces"]) == 0:
                    lines.append(rpt_("{}: empty surface (raise the resolution)").format(name))
                    continue
                info = {"library": str(path), "shape": name, "resolution": resolution}
                obj = add_result_object(context, f"{name}_csdf", arrays, shape_matrix(settings, name), info=info)
                recipes.store(obj, recipes.Recipe.of_blend(str(path), {name: 1.0}, resolution, mode=mode))
                if heatmap and "distance" in arrays:
                    show_heatmap(context, obj, arrays["distance"], ranges[name])
                created.append(obj)
                fidelity = format_fidelity(item.get("stats") or {})
                lines.append(rpt_("{}: {} triangles").format(obj.name, item["faces"]) + (f", {fidelity}" if fidelity else ""))
            select_only(context, created)
            for line in lines:
                print(f"Compact SDF: {line}")
            missing = [n for n in names if n not in ranges] if heatmap else []
            note = (". " + rpt_("No source object for the heatmap of: {}.").format(", ".join(missing))) if missing else ""
            return rpt_("Reconstructed {} of {}: ").format(len(created), len(names)) + "; ".join(lines) + note

        request = protocol.DecodeArgs(
            library=str(path), items=items, resolution=resolution, mode=settings.blend_mode,
            target_faces=target_faces(settings),
        )
        return JobSpec(request, finish, rpt_("Reconstruct {}").format(shape_count(len(names))), reusable=True)


CLASSES = [CSDF_OT_reconstruct]
