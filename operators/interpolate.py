"""Interpolate between library shapes: in-betweens side by side, or one weighted blend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
import numpy as np
from bpy.app.translations import pgettext_rpt as rpt_
from mathutils import Matrix, Vector

from .. import mesh_bridge
from ..backend.interfaces import protocol
from . import recipe as recipes
from .results import add_result_object, load_result, select_only, target_faces
from .scene_library import library_file
from .shape_list import shape_matrix
from .job_operator import JobOperator
from .session import JobSpec, UserError
from .shape_keys import add_morph_keys, wants_shape_keys


class CSDF_OT_interpolate(JobOperator, bpy.types.Operator):
    bl_idname = "csdf.interpolate"
    bl_label = "Interpolate"
    bl_description = (
        "Decode shapes between the library shapes ticked in the list: a row of in-betweens, "
        "or one blend from the per-shape weights"
    )
    # Redo with unchanged settings reuses the decoded meshes (no backend run).
    bl_options = {"REGISTER", "UNDO"}

    mode: bpy.props.EnumProperty(
        name="Mode",
        items=[
            ("PATH", "In-Betweens", "Count shapes along the path through the ticked shapes, endpoints included"),
            ("WEIGHTS", "Weighted Blend", "One shape from the ticked shapes' weights"),
        ],
        default="PATH",
    )

    def prepare(self, context: bpy.types.Context, folder: Path) -> JobSpec:
        settings = context.scene.csdf
        path = library_file(settings, must_exist=True)
        names = [item.name for item in settings.shapes if item.use]
        origin = context.scene.cursor.location.copy()
        resolution = settings.resolution
        faces = target_faces(settings)
        if self.mode == "WEIGHTS":
            target = recipes.ticked_weights(settings)
            request: protocol.RequestArgs = protocol.DecodeArgs(
                library=str(path), items=[protocol.DecodeItem(target, str(folder / "blend.npz"))],
                resolution=resolution, mode=settings.blend_mode, target_faces=faces, detail=settings.detail,
            )
            label = rpt_("Blend {} shapes").format(len(target))
            first = next(iter(target))
        else:
            if len(names) < 2:
                raise UserError(rpt_("Tick at least two shapes in the library list to interpolate between them."))
            if wants_shape_keys(settings):
                return self._shape_keys(context, path, names, folder)
            request = protocol.InterpolateArgs(
                library=str(path), names=names, count=settings.interp_count, out_dir=str(folder),
                resolution=resolution, mode=settings.blend_mode, target_faces=faces, detail=settings.detail,
                pace=settings.interp_pace,
            )
            label = rpt_("Interpolate {} shapes").format(settings.interp_count)
            first = names[0]
        mode, detail = settings.blend_mode, settings.detail

        # Orientation and scale of the first shape's source object (e.g. an importer's axis
        # conversion); locations are laid out in a row along X from the 3D cursor.
        basis = shape_matrix(settings, first).to_3x3()

        def finish(context: bpy.types.Context, data: dict[str, Any]) -> str:
            created, offset = [], 0.0
            results = [(item, load_result(item["out"])) for item in data["items"]]
            fallbacks = {item["stats"].get("morph_fallback") for item in data["items"]} - {None}
            settings.morph_note = next(iter(fallbacks), "")
            xs = [a["vertices"] @ np.array(basis[0], dtype=np.float32) for _, a in results]
            widths = [float(np.ptp(x)) if len(x) else 0.0 for x in xs]
            gap = 0.25 * max(widths + [1e-3])
            for index, ((item, arrays), x, width) in enumerate(zip(results, xs, widths)):
                if len(arrays["faces"]) == 0:
                    continue
                location = origin + Vector((offset - float(x.min()), 0.0, 0.0))
                offset += width + gap
                if self.mode == "WEIGHTS":
                    name, info = "csdf_blend", {"weights": item["target"]}
                    weights = dict(item["target"])
                else:
                    name = f"csdf_interp_{index:02d}"
                    info = {"path": names, "index": index, "count": len(results),
                            "position": item["stats"]["path_position"]}
                    weights = dict(item["stats"]["weights"])
                info.update(library=str(path), resolution=resolution, mode=mode, detail=detail)
                matrix = Matrix.Translation(location) @ basis.to_4x4()
                obj = add_result_object(context, name, arrays, matrix, info=info)
                recipes.store(obj, recipes.Recipe.of_blend(str(path), weights, resolution, mode=mode, detail=detail))
                created.append(obj)
            select_only(context, created)
            done = rpt_("{}: created {} in 'Compact SDF'").format(label, object_count(len(created)))
            if settings.morph_note:
                return done + rpt_(" (blended as Spherical, not morphed: {})").format(settings.morph_note)
            return done

        return JobSpec(request, finish, label, reusable=True)

    def _shape_keys(self, context: bpy.types.Context, path: Path, names: list[str], folder: Path) -> JobSpec:
        """Morph the active object along the path and keep the in-betweens as its shape keys."""
        settings = context.scene.csdf
        obj = context.active_object
        if obj is None or obj.type != "MESH":
            raise UserError(rpt_("Make the mesh of '{}' the active object to morph it into shape keys.").format(names[0]))
        arrays = mesh_bridge.mesh_to_arrays(obj.data)
        if len(arrays.vertices) == 0:
            raise UserError(rpt_("'{}' has no vertices to morph.").format(obj.name))
        points = folder / "points.npz"
        protocol.save_meshes(str(points), [{"vertices": arrays.vertices, "faces": arrays.faces}])
        request = protocol.CarryArgs(library=str(path), names=names, count=settings.interp_count, points=str(points),
                                     out=str(folder / "carried.npz"), resolution=settings.resolution)
        label = rpt_("Morph {} into shape keys").format(obj.name)
        object_name = obj.name

        def finish(context: bpy.types.Context, data: dict[str, Any]) -> str:
            target = bpy.data.objects.get(object_name)
            if data.get("failure"):
                settings.morph_note = data["failure"]
                raise UserError(rpt_("{} cannot morph into {}: {}").format(names[0], names[-1], data["failure"]))
            settings.morph_note = ""
            if target is None or target.type != "MESH" or len(target.data.vertices) != len(arrays.vertices):
                raise UserError(rpt_("'{}' changed while it was morphed; run it again.").format(object_name))
            carried = protocol.load_meshes(data["out"], data["count"])
            keys = add_morph_keys(target, [c["vertices"] for c in carried], " → ".join(names))
            select_only(context, [target])
            return rpt_("{}: added {} shape keys, played by its Blend property").format(label, len(keys))

        return JobSpec(request, finish, label)


def object_count(count: int) -> str:
    """``1 object`` / ``3 objects``."""
    return (rpt_("{} object") if count == 1 else rpt_("{} objects")).format(count)


CLASSES = [CSDF_OT_interpolate]
