"""Fidelity measurement (backend/geometry/fidelity.py) and result decimation (backend/geometry/simplify.py)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.geometry.fidelity import measure_fidelity, vertex_distance
from backend.geometry.simplify import decimate


def test_a_mesh_matches_itself_and_distances_grow_off_surface(sphere_mesh):
    mesh = (sphere_mesh.vertices, sphere_mesh.faces)
    same = measure_fidelity(mesh, mesh, samples=5_000)
    assert same["cd_l1"] < 0.02 and same["fscore_0_01"] > 0.9
    distance = vertex_distance(sphere_mesh.vertices * 1.1, mesh)
    assert distance.dtype == np.float32 and distance.shape == (len(sphere_mesh.vertices),)
    radius = np.linalg.norm(sphere_mesh.vertices, axis=1)
    np.testing.assert_allclose(distance, 0.1 * radius, rtol=0.1)


def test_decimate_reaches_the_target_and_keeps_small_meshes(sphere_mesh):
    vertices, faces = sphere_mesh.vertices, sphere_mesh.faces
    target = len(faces) // 4
    v, f = decimate(vertices, faces, target)
    assert 0 < len(f) <= target and v.dtype == np.float32 and f.dtype == np.int32 and f.max() < len(v)
    assert decimate(vertices, faces, len(faces) + 10)[1] is faces
    with pytest.raises(ValueError, match="at least 4"):
        decimate(vertices, faces, 0)
