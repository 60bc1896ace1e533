"""Known-answer tests for backend.geometry.metrics (DESIGN §3)."""

from pathlib import Path

import numpy as np
import pytest
import trimesh
from skimage.measure import marching_cubes

from backend.geometry.meshes import normalization
from backend.geometry.metrics import (
    compactness,
    compare_meshes,
    component_count,

    fidelity_ratio,
    is_closed,
    oracle_mesh,
    point_to_mesh_distance,
    sample_surface,
    sdf_lattice,
)

MESHES = Path(__file__).resolve().parents[1] / "data"
N = 20_000


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    mesh = trimesh.load(MESHES / f"{name}.obj", force="mesh", process=False)
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


def icosphere(radius: float = 1.0, center=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    s = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    return np.asarray(s.vertices) * radius + np.asarray(center), np.asarray(s.faces, dtype=np.int64)


@pytest.fixture(scope="module")
def spot_low() -> tuple[np.ndarray, np.ndarray]:
    return load("spot_low_resolution")


def test_normalization_longest_side_and_round_trip(spot_low):
    v, _ = spot_low
    norm = normalization(v)
    vn = norm.apply(v)
    assert np.ptp(vn, axis=0).max() == pytest.approx(1.8)
    np.testing.assert_allclose(vn.min(axis=0) + vn.max(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(norm.invert(vn), v, atol=1e-12)


def test_sample_surface_is_seeded_uniform_and_on_surface():
    v = np.array([[0, 0, 0], [3, 0, 0], [0, 1, 0], [10, 0, 0], [11, 0, 0], [10, 1, 0]], dtype=float)
    f = np.array([[0, 1, 2], [3, 4, 5]])  # areas 1.5 and 0.5
    a = sample_surface(v, f, N, seed=3)
    b = sample_surface(v, f, N, seed=3)
    np.testing.assert_array_equal(a.points, b.points)
    assert not np.array_equal(a.points, sample_surface(v, f, N, seed=4).points)
    assert (a.face_index == 0).mean() == pytest.approx(0.75, abs=0.02)
    assert point_to_mesh_distance(a.points, v, f).distance.max() < 1e-12


def test_mesh_against_itself(spot_low):
    m = compare_meshes(spot_low, spot_low, n_samples=N)
    assert m.cd_l1 < 1e-9 and m.cd_l2 < 1e-15 and m.hausdorff < 1e-9
    assert m.fscore_0_005 == 1.0 and m.fscore_0_01 == 1.0
    assert m.normal_consistency > 0.999


def test_concentric_spheres_known_distance():
    gt, rec = icosphere(1.0), icosphere(1.01)
    scale = normalization(gt[0]).scale
    gap = 0.01 * scale  # normalised distance between the two surfaces (≈ 0.009)
    m = compare_meshes(gt, rec, n_samples=N)
    assert m.cd_l1 == pytest.approx(gap, rel=0.02)
    assert m.cd_l2 == pytest.approx(2 * gap**2, rel=0.04)
    assert m.hausdorff == pytest.approx(gap, rel=0.02)
    assert m.fscore_0_005 == 0.0  # every sample is ~0.009 away: beyond τ = 0.005, within 0.01
    assert m.fscore_0_01 == 1.0
    assert m.normal_consistency > 0.995


def test_hausdorff_of_shifted_sphere():
    shift = 0.05
    gt, rec = icosphere(), icosphere(center=(shift, 0.0, 0.0))
    m = compare_meshes(gt, rec, n_samples=N)
    assert m.hausdorff == pytest.approx(shift * normalization(gt[0]).scale, rel=0.03)


def test_transform_comes_from_ground_truth():
    gt, rec = icosphere(1.0), icosphere(1.01)
    m1 = compare_meshes(gt, rec, n_samples=N)
    m2 = compare_meshes((gt[0] * 7.0, gt[1]), (rec[0] * 7.0, rec[1]), n_samples=N)
    assert m1.cd_l1 == pytest.approx(m2.cd_l1, rel=1e-9)


def test_empty_reconstruction(spot_low):
    empty = (np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    m = compare_meshes(spot_low, empty, n_samples=N)
    assert m.cd_l1 == np.inf and m.hausdorff == np.inf
    assert m.fscore_0_005 == 0.0 and m.fscore_0_01 == 0.0 and m.normal_consistency == 0.0
    d = m.to_dict()
    assert d["cd_l1"] == np.inf and d["n_samples"] == N
    assert component_count(empty[1]) == 0 and not is_closed(empty[1])


def test_components_and_closedness():
    a, b = icosphere(), icosphere(center=(5.0, 0.0, 0.0))
    two = np.concatenate([a[1], b[1] + len(a[0])])
    assert component_count(a[1]) == 1
    assert component_count(two) == 2
    assert is_closed(a[1]) and is_closed(two)
    assert not is_closed(a[1][1:])


def test_narrow_band_lattice_matches_full(spot_low):
    v, f = spot_low
    vn = normalization(v).apply(v)
    res = 48
    full = sdf_lattice(vn, f, res, narrow_band=False)
    band = sdf_lattice(vn, f, res)
    near = np.abs(full) < 2.0 / (res - 1)
    np.testing.assert_array_equal(band[near], full[near])
    np.testing.assert_array_equal(np.sign(band), np.sign(full))
    assert np.all(np.abs(band) <= np.abs(full))  # far values are lower bounds
    vf, ff, _, _ = marching_cubes(full, 0.0)
    vb, fb, _, _ = marching_cubes(band, 0.0)
    np.testing.assert_array_equal(fb, ff)
    np.testing.assert_array_equal(vb, vf)


def test_oracle_converges_and_is_clean(spot_low):
    cd = {}
    for res in (64, 128):
        rec = oracle_mesh(*spot_low, res)
        assert component_count(rec.faces) == 1 and is_closed(rec.faces)
        assert trimesh.Trimesh(rec.vertices, rec.faces, process=False).volume > 0  # outward
        vn = normalization(spot_low[0]).apply(rec.vertices)
        assert np.abs(vn).max() < 0.9 + 2.0 / (res - 1)  # no surface on the lattice boundary
        cd[res] = compare_meshes(spot_low, rec, n_samples=N).cd_l1
    assert 2.5 < cd[64] / cd[128] < 5.0


def test_fidelity_ratio_and_compactness():
    assert fidelity_ratio(3e-4, 1.5e-4) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        fidelity_ratio(1e-4, 0.0)
    c = compactness(bytes_per_shape=256, bytes_shared=1_000_000, n_shapes=4)
    assert c["amortised_bytes_per_shape"] == pytest.approx(256 + 250_000)
    assert c["bytes_total"] == 4 * 256 + 1_000_000
