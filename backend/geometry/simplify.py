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
