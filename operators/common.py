"""Helpers shared by the operators: library metadata, the shape list, result objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
import numpy as np
from bpy.app.translations import pgettext_rpt as rpt_
from mathutils import Matrix

from .. import mesh_bridge
from ..backend.interfaces import protocol
from .session import UserError

#: Collection that receives every object this extension creates.
COLLECTION_NAME = "Compact SDF"
#: Material given to results with a fidelity heatmap (shows the colour attribute when rendered).
HEATMAP_MATERIAL = "Compact SDF Fidelity"


def library_file(settings: Any, *, must_exist: bool) -> Path:
    """Absolute path of the scene's library, resolved in Blender (``//`` relative to the .blend).

    UserError when unset, when relative to a .blend file that is not saved yet, or when missing
    and required: nothing may reach the worker, whose working directory is the extension folder.
    """
    raw = settings.library_path.strip()
    if not raw:
        raise UserError(rpt_("No library file: use New or Open in the Compact SDF panel first."))
    if raw.startswith("//") and not bpy.data.filepath:
        raise UserError(
            rpt_("The library path {} is relative to the .blend file, which is not saved yet: "
                 "save the .blend file first, or choose an absolute path with New or Open.").format(raw)
        )
    path = Path(bpy.path.abspath(raw)).absolute()
    if must_exist and not path.is_file():
        raise UserError(
            rpt_("Library file not found: {}. Encode some shapes first, or open another library.").format(path)
        )
    return path


def read_meta(path: Path) -> dict[str, Any]:
    """Library metadata without torch; UserError with the reader's message when it fails."""
    from ..backend.errors import LibraryError
    from ..backend.store.library_meta import read_library_meta

    try:
        meta = read_library_meta(str(path))
        for shape in meta["shapes"]:  # the conversions refresh_shapes makes, checked where errors are caught
            int(shape.get("code_size") or 0)
            encode_errors(shape.get("stats") or {})
    except (LibraryError, OSError) as exc:
        raise UserError(rpt_("Cannot read library {}: {}. Open another library, or encode into a new one.").format(
            path.name, exc)) from exc
    except (RecursionError, TypeError, ValueError, OverflowError) as exc:
        raise UserError(rpt_("Cannot read library {}: its metadata is malformed ({}). "
                             "Open another library, or encode the shapes again.").format(path.name, type(exc).__name__)) from exc
    return meta


def encode_errors(stats: dict[str, Any]) -> tuple[float, float]:
    """(near-surface, far-field) mean SDF errors recorded at encode time; -1 where unknown."""
    near, far = stats.get("near_surface_error"), stats.get("far_field_error")
    return (float(near) if near is not None else -1.0, float(far) if far is not None else -1.0)


def refresh_shapes(settings: Any, meta: dict[str, Any]) -> None:
    """Rebuild the shape list from library metadata, keeping per-shape UI state by name."""
    kept = {
        item.name: (item.use, item.weight, item.matrix.copy(), item.has_matrix) for item in settings.shapes
    }
    settings.shapes.clear()
    for shape in meta.get("shapes", []):
        item = settings.shapes.add()
        item.name = str(shape["name"])
        item.code_size = int(shape.get("code_size") or 0)
        item.surface_error, item.far_error = encode_errors(shape.get("stats") or {})
        if item.name in kept:
            item.use, item.weight, matrix, item.has_matrix = kept[item.name]
            item.matrix = matrix
    settings.active_shape = min(settings.active_shape, max(len(settings.shapes) - 1, 0))
    settings.library_error = ""


def used_shapes(settings: Any) -> list[str]:
    """Shapes ticked "use" in list order, else the active one."""
    names = [item.name for item in settings.shapes if item.use]
    if not names and 0 <= settings.active_shape < len(settings.shapes):
        names = [settings.shapes[settings.active_shape].name]
    return names


def result_collection(context: bpy.types.Context) -> bpy.types.Collection:
    """The scene's "Compact SDF" collection, created and linked when missing."""
    scene = context.scene
    collection = bpy.data.collections.get(COLLECTION_NAME) or bpy.data.collections.new(COLLECTION_NAME)
    if collection not in scene.collection.children_recursive[:]:
        scene.collection.children.link(collection)
    return collection


def load_result(path: str) -> dict[str, np.ndarray]:
    (arrays,) = protocol.load_meshes(path, 1)
    return arrays


def add_result_object(
    context: bpy.types.Context,
    name: str,
    arrays: dict[str, np.ndarray],
    matrix: Matrix,
    *,
    info: dict[str, Any],
) -> bpy.types.Object:
    """An object in the Compact SDF collection from a decoded mesh .npz's arrays.

    With the scene's "Replace Previous" on, an earlier result named ``name`` keeps its object
    (transform, modifiers, material slots) and only gets the new mesh; else a new object is made.
    """
    mesh = mesh_bridge.arrays_to_mesh(name, arrays["vertices"], arrays["faces"])
    previous = bpy.data.objects.get(name)
    if context.scene.csdf.replace_results and previous is not None and previous.type == "MESH" and "csdf" in previous:
        old = previous.data
        for material in old.materials:
            mesh.materials.append(material)
        previous.data = mesh
        if old.users == 0:
            bpy.data.meshes.remove(old)
        mesh.name = name
        previous["csdf"] = info
        return previous
    obj = bpy.data.objects.new(name, mesh)
    obj.matrix_world = matrix
    obj["csdf"] = info
    result_collection(context).objects.link(obj)
    return obj


def show_heatmap(context: bpy.types.Context, obj: bpy.types.Object, distance: np.ndarray, scale: float) -> None:
    """Colour ``obj`` by per-vertex ``distance`` in Material Preview/Rendered (heatmap material) and
    in Solid view (the colour attribute is made active and Solid views show attribute colours)."""
    mesh_bridge.set_vertex_distance(obj.data, distance, scale)
    material = heatmap_material()
    if material.name not in obj.data.materials:
        obj.data.materials.clear()
        obj.data.materials.append(material)
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.spaces.active.shading.color_type = "VERTEX"


def heatmap_material() -> bpy.types.Material:
    """The shared material that renders the ``csdf_fidelity`` colour attribute (created once)."""
    material = bpy.data.materials.get(HEATMAP_MATERIAL)
    if material is not None:
        return material
    material = bpy.data.materials.new(HEATMAP_MATERIAL)
    if material.node_tree is None:  # Blender < 5.0 makes node trees on request only
        material.use_nodes = True
    nodes = material.node_tree.nodes
    shader = next(node for node in nodes if node.type == "BSDF_PRINCIPLED")
    attribute = nodes.new("ShaderNodeAttribute")
    attribute.attribute_type, attribute.attribute_name = "GEOMETRY", mesh_bridge.HEATMAP_ATTRIBUTE
    attribute.location = shader.location.x - 250, shader.location.y
    material.node_tree.links.new(attribute.outputs["Color"], shader.inputs["Base Color"])
    return material


def shape_matrix(settings: Any, name: str) -> Matrix:
    """World matrix recorded for a shape when it was encoded, else identity."""
    item = settings.shapes.get(name)
    if item is not None and item.has_matrix:
        return item.matrix.copy()
    return Matrix.Identity(4)


def select_only(context: bpy.types.Context, objects: list[bpy.types.Object]) -> None:
    """Make ``objects`` the selection and the last one active (those outside the view layer are skipped)."""
    view_layer = context.view_layer
    for obj in context.selected_objects:
        obj.select_set(False)
    selected = []
    for obj in objects:
        try:
            obj.select_set(True, view_layer=view_layer)
        except RuntimeError:  # excluded or hidden collection: not selectable here
            continue
        selected.append(obj)
    if selected:
        view_layer.objects.active = selected[-1]


def format_fidelity(stats: dict[str, Any]) -> str:
    """``CD-L1 1.2e-03, F@0.01 0.950, F@0.005 0.800`` from stats with a ``fidelity`` dict, else ``""``."""
    fidelity = stats.get("fidelity")
    if not fidelity:
        return ""
    return "CD-L1 {:.3g}, F@0.01 {:.3f}, F@0.005 {:.3f}".format(
        fidelity["cd_l1"], fidelity["fscore_0_01"], fidelity["fscore_0_005"])


def target_faces(settings: Any) -> int | None:
    """The scene's target triangle count for results, None when decimation is off (0)."""
    return settings.target_faces or None
