"""Blender meshes ↔ NumPy arrays, with ``foreach_get``/``foreach_set`` only (no per-vertex loops).

The only module that converts between Blender data and arrays. Vertices are float32 (n, 3),
faces int32 (m, 3) triangles.
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np

#: Colour attribute holding the fidelity heatmap (read by the heatmap material).
HEATMAP_ATTRIBUTE = "csdf_fidelity"


@dataclass
class MeshArrays:
    """Triangle mesh arrays: ``vertices`` float32 (n, 3), ``faces`` int32 (m, 3)."""

    vertices: np.ndarray
    faces: np.ndarray


def mesh_to_arrays(mesh: bpy.types.Mesh) -> MeshArrays:
    """Vertices and triangulated faces of a mesh datablock (n-gons split as Blender draws them)."""
    vertices = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    if len(vertices):
        mesh.attributes["position"].data.foreach_get("vector", vertices)
    mesh.calc_loop_triangles()
    faces = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int32)
    if len(faces):
        mesh.loop_triangles.foreach_get("vertices", faces)
    return MeshArrays(vertices.reshape(-1, 3), faces.reshape(-1, 3))


def object_to_arrays(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> MeshArrays:
    """Evaluated geometry (modifiers applied) of a mesh object, in object-local coordinates."""
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        return mesh_to_arrays(mesh)
    finally:
        evaluated.to_mesh_clear()


def arrays_to_mesh(name: str, vertices: np.ndarray, faces: np.ndarray, *, smooth: bool = True) -> bpy.types.Mesh:
    """A new mesh datablock from float (n, 3) vertices and int (m, 3) triangles."""
    vertices = np.ascontiguousarray(vertices, dtype=np.float32).reshape(-1, 3)
    faces = np.ascontiguousarray(faces, dtype=np.int32).reshape(-1, 3)
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"{name}: face indices out of range 0..{len(vertices) - 1}")
    mesh = bpy.data.meshes.new(name)
    fill_mesh(mesh, vertices, faces, smooth=smooth)
    return mesh


def fill_mesh(mesh: bpy.types.Mesh, vertices: np.ndarray, faces: np.ndarray, *, smooth: bool = True) -> None:
    """Replace a mesh datablock's geometry in place (objects using it update)."""
    vertices = np.ascontiguousarray(vertices, dtype=np.float32).reshape(-1, 3)
    faces = np.ascontiguousarray(faces, dtype=np.int32).reshape(-1, 3)
    mesh.clear_geometry()
    mesh.vertices.add(len(vertices))
    mesh.loops.add(faces.size)
    mesh.polygons.add(len(faces))
    mesh.attributes["position"].data.foreach_set("vector", vertices.ravel())
    mesh.attributes[".corner_vert"].data.foreach_set("value", faces.ravel())
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.update()
    if smooth and len(faces):
        mesh.shade_smooth()


def set_vertex_distance(mesh: bpy.types.Mesh, distance: np.ndarray, scale: float) -> None:
    """Store per-vertex distance as a float attribute and a heatmap colour attribute.

    ``csdf_distance`` holds the raw distance; ``csdf_fidelity`` maps 0 → blue, ``scale`` and
    beyond → red (viridis-like ramp); it is made the active and the render colour attribute, so
    Solid view's "Attribute" colouring and the heatmap material both show it.
    """
    distance = np.ascontiguousarray(distance, dtype=np.float32).ravel()
    if len(distance) != len(mesh.vertices):
        raise ValueError(f"{len(distance)} distances for {len(mesh.vertices)} vertices")
    for name in ("csdf_distance", HEATMAP_ATTRIBUTE):
        if name in mesh.attributes:
            mesh.attributes.remove(mesh.attributes[name])
    mesh.attributes.new("csdf_distance", "FLOAT", "POINT").data.foreach_set("value", distance)
    colors = heatmap(distance / max(scale, 1e-12))
    attribute = mesh.color_attributes.new(HEATMAP_ATTRIBUTE, "FLOAT_COLOR", "POINT")
    attribute.data.foreach_set("color", colors.ravel())
    mesh.color_attributes.active_color = attribute
    mesh.color_attributes.render_color_index = mesh.color_attributes.active_color_index


#: Colour ramp stops (linear RGB), from "on the surface" to "far off".
_RAMP = np.array(
    [[0.05, 0.03, 0.30], [0.02, 0.30, 0.55], [0.05, 0.60, 0.35], [0.85, 0.80, 0.05], [0.90, 0.10, 0.05]],
    dtype=np.float32,
)


def heatmap(t: np.ndarray) -> np.ndarray:
    """RGBA float32 (n, 4) colours for values ``t`` clipped to [0, 1]."""
    t = np.clip(np.nan_to_num(np.asarray(t, dtype=np.float32), nan=1.0), 0.0, 1.0) * (len(_RAMP) - 1)
    low = np.minimum(t.astype(np.int32), len(_RAMP) - 2)
    frac = (t - low)[:, None]
    rgb = _RAMP[low] * (1.0 - frac) + _RAMP[low + 1] * frac
    return np.concatenate([rgb, np.ones((len(t), 1), dtype=np.float32)], axis=1)
