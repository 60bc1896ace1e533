"""Evenly paced interpolation paths: positions along a path chosen so that every step changes the
shape by about the same amount, instead of evenly spaced blend weights.

A distance blend does not change at a constant rate: thin parts of one shape fade out early, so
evenly spaced weights tend to give a large first (or last) step and small ones in between. Here a
path is probed at finer, evenly spaced positions (a low-resolution decode each), the
change between neighbouring probes is measured as the symmetric mean surface distance (Chamfer L1),
and the output positions are placed at equal shares of the accumulated change.
"""

from __future__ import annotations

import numpy as np

from ..geometry.meshes import Mesh
from ..geometry.metrics import point_to_mesh_distance, sample_surface

#: Surface samples per mesh when measuring a step (enough to rank steps, cheap next to a decode).
STEP_SAMPLES = 2000


def step_change(a: Mesh, b: Mesh, samples: int = STEP_SAMPLES, seed: int = 0) -> float:
    """Symmetric mean distance between the surfaces of ``a`` and ``b`` (same frame). A vanished
    surface counts as shrunk to a point: the other's mean distance from its own centroid."""
    empty_a, empty_b = len(a.faces) == 0, len(b.faces) == 0
    if empty_a and empty_b:
        return 0.0
    if empty_a or empty_b:
        m = b if empty_a else a
        points = sample_surface(m.vertices, m.faces, samples, seed).points
        return float(np.linalg.norm(points - points.mean(0), axis=1).mean())
    pa = sample_surface(a.vertices, a.faces, samples, seed).points
    pb = sample_surface(b.vertices, b.faces, samples, seed + 1).points
    a_to_b = point_to_mesh_distance(pa, b.vertices, b.faces).distance.mean()
    b_to_a = point_to_mesh_distance(pb, a.vertices, a.faces).distance.mean()
    return float((a_to_b + b_to_a) / 2)


def even_positions(probes: list[Mesh], positions: np.ndarray, count: int) -> np.ndarray:
    """``count`` positions from ``positions[0]`` to ``positions[-1]`` at equal shares of the change
    accumulated along the probe meshes (``probes[i]`` decoded at ``positions[i]``), linear between
    probes; evenly spaced if the probes do not change at all."""
    positions = np.asarray(positions, dtype=np.float64)
    if len(probes) != len(positions) or len(positions) < 2:
        raise ValueError("need one probe mesh per position, at least two")
    steps = np.array([step_change(a, b) for a, b in zip(probes, probes[1:])])
    cumulative = np.concatenate([[0.0], np.cumsum(steps)])
    if cumulative[-1] <= 0:
        return np.linspace(positions[0], positions[-1], count)
    # np.interp needs increasing x: steps of zero change are nudged so the curve stays invertible
    cumulative += np.linspace(0.0, 1e-9 * cumulative[-1], len(cumulative))
    targets = np.linspace(0.0, cumulative[-1], count)
    out = np.interp(targets, cumulative, positions)
    out[0], out[-1] = positions[0], positions[-1]
    return out
