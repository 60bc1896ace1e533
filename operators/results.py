"""What becomes of a decoded mesh: the result object in the Compact SDF collection, its heatmap,
the selection, the report line and the triangle budget."""

from __future__ import annotations

from typing import Any

import bpy
import numpy as np
from mathutils import Matrix

from .. import mesh_bridge
from ..backend.interfaces import protocol

#: Collection that receives every object this extension creates.
COLLECTION_NAME = "Compact SDF"
#: Material given to results with a fidelity heatmap (shows the colour attribute when rendered).
HEATMAP_MATERIAL = "Compact SDF Fidelity"


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
