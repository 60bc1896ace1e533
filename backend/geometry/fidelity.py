"""Fidelity of a decoded mesh against its source: DESIGN §3 metrics and per-vertex distances."""

from __future__ import annotations

import numpy as np

from .metrics import compare_meshes, point_to_mesh_distance

#: Surface samples per mesh when a decode is compared with its source.
FIDELITY_SAMPLES = 50_000

MeshArrays = tuple[np.ndarray, np.ndarray]


def measure_fidelity(decoded: MeshArrays, source: MeshArrays, samples: int = FIDELITY_SAMPLES) -> dict[str, float]:
    """CD-L1, F-scores and the other ``MeshMetrics`` of ``decoded`` (V, F) against ``source`` (V, F)."""
    return compare_meshes(source, decoded, samples).to_dict()


def vertex_distance(vertices: np.ndarray, source: MeshArrays) -> np.ndarray:
    """Unsigned distance (n,) float32 from each of ``vertices`` (n, 3) to the ``source`` surface."""
    return point_to_mesh_distance(vertices, *source).distance.astype(np.float32)
