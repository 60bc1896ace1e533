"""Triangle-count reduction of decoded meshes (quadric decimation, ``fast_simplification``)."""

from __future__ import annotations

import numpy as np


def decimate(vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """About ``target_faces`` triangles of (V float32 (n, 3), F int32 (m, 3)); unchanged when already fewer."""
    if target_faces < 4:
        raise ValueError(f"target_faces must be at least 4, got {target_faces}")
    if len(faces) <= target_faces:
        return vertices, faces
    import fast_simplification

    v, f = fast_simplification.simplify(
        np.ascontiguousarray(vertices, dtype=np.float32), np.ascontiguousarray(faces, dtype=np.int32),
        target_count=target_faces,
    )
    return np.asarray(v, dtype=np.float32), np.asarray(f, dtype=np.int32)


def decimate_path(stations: list[np.ndarray], faces: np.ndarray, target_faces: int) -> tuple[list[np.ndarray], np.ndarray]:
    """About ``target_faces`` triangles of a path of meshes that share ``faces`` (a morph): the first
    is decimated, and each of its new vertices sits at the same barycentric place of the same
    triangle in every mesh, so the decimated path still shares one face list."""
    import igl

    if len(faces) <= target_faces:
        return stations, faces
    vertices, reduced = decimate(stations[0], faces, target_faces)
    first = np.asarray(stations[0], dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    _, triangle, closest = igl.point_mesh_squared_distance(vertices.astype(np.float64), first, f)
    corners = f[triangle]
    weights = igl.barycentric_coordinates(closest, first[corners[:, 0]], first[corners[:, 1]], first[corners[:, 2]])
    return [np.einsum("nk,nkd->nd", weights, np.asarray(v, dtype=np.float64)[corners]) for v in stations], reduced
