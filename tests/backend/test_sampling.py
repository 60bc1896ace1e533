import igl
import numpy as np

from backend.geometry.meshes import Mesh, normalization
from backend.geometry.sampling import (
    SampleConfig, band_lattice, blend_set, cached_samples, lattice_points, lattice_spacing, sample_shape, signed_distance,
)


def _normalized(mesh):
    return Mesh(normalization(mesh.vertices).apply(mesh.vertices), mesh.faces)


def test_signed_distance_of_sphere(sphere_mesh):
    pts = np.array([[0, 0, 0], [2, 0, 0], [0, 0.5, 0]], float)
    d = signed_distance(sphere_mesh.vertices, sphere_mesh.faces, pts)
    np.testing.assert_allclose(d, [-1, 1, -0.5], atol=0.01)
    # the magnitude is the exact distance to the mesh, not libigl's winding-number-scaled one
    unsigned = np.sqrt(igl.point_mesh_squared_distance(pts, sphere_mesh.vertices, sphere_mesh.faces)[0])
    np.testing.assert_allclose(np.abs(d), unsigned, rtol=1e-6)


def test_open_mesh_still_has_an_inside(sphere_mesh):
    """An open mesh (a hole cut out) keeps a sensible inside thanks to the winding number."""
    open_mesh = Mesh(sphere_mesh.vertices, sphere_mesh.faces[10:])
    d = signed_distance(open_mesh.vertices, open_mesh.faces, np.array([[0, 0, 0], [0.3, 0.2, 0.1], [1.5, 0, 0]]))
    assert d[0] < 0 and d[1] < 0 and d[2] > 0


def test_band_lattice_matches_brute_force(torus_mesh):
    m = _normalized(torus_mesh)
    res, width = 48, 3 * lattice_spacing(48)
    band = band_lattice(m.vertices, m.faces, res, width)
    every = np.arange(res**3)
    sdf = signed_distance(m.vertices, m.faces, lattice_points(every, res))
    expected = every[np.abs(sdf) <= width]
    np.testing.assert_array_equal(band.index, expected)
    np.testing.assert_allclose(band.sdf, sdf[expected], atol=1e-6)


def test_samples_and_cache(torus_mesh, tmp_path):
    m = _normalized(torus_mesh)
    cfg = SampleConfig(grid_resolution=32, surface_points=2000, wide_points=1000, uniform_points=1000)
    s = sample_shape(m, cfg, seed=1)
    assert s.points.shape == (4000, 3) and s.points.dtype == np.float32
    assert np.all(np.abs(s.band_sdf) <= cfg.band_cells * lattice_spacing(32) + 1e-6)
    assert s.near_count == 2000 and np.abs(s.points_sdf[:2000]).mean() < np.abs(s.points_sdf[3000:]).mean()
    first = cached_samples(m, cfg, tmp_path, seed=1)
    np.testing.assert_array_equal(first.points, s.points)
    (entry,) = tmp_path.glob("*.npz")
    entry.write_bytes(b"corrupt")
    again = cached_samples(m, cfg, tmp_path, seed=1)  # a corrupt cache entry is resampled, not trusted
    np.testing.assert_array_equal(again.band_index, s.band_index)


def test_blend_set_holds_every_shapes_exact_distance(sphere_mesh, torus_mesh, monkeypatch):
    """Each sample set's blend points carry its own exact distance (the very value it trains on) and
    the other shapes' too."""
    import backend.geometry.sampling as sampling

    meshes = [_normalized(sphere_mesh), _normalized(torus_mesh)]
    cfg = SampleConfig(grid_resolution=32, surface_points=500, wide_points=200, uniform_points=300)
    samples = [sample_shape(m, cfg, seed=i) for i, m in enumerate(meshes)]
    blend = blend_set(samples, meshes, per_shape=400, seed=3, workers=1)
    for i, (s, points, sdf) in enumerate(zip(samples, blend.points, blend.sdf)):
        assert points.shape == (400, 3) and sdf.shape == (400, 2) and sdf.dtype == np.float32
        rows = [np.flatnonzero((s.points == p).all(1))[0] for p in points]  # each point is one of the shape's own
        np.testing.assert_array_equal(sdf[:, i], s.points_sdf[rows])
        for j, m in enumerate(meshes):
            np.testing.assert_allclose(sdf[:, j], signed_distance(m.vertices, m.faces, points), atol=1e-6)
    # the same set whatever the number of processes; a small cap means fewer points per shape
    again = blend_set(samples, meshes, per_shape=400, seed=3, workers=2)
    np.testing.assert_array_equal(np.concatenate(again.sdf), np.concatenate(blend.sdf))
    monkeypatch.setattr(sampling, "BLEND_TABLE_CAP", 2 * 2 * 50)
    assert [len(p) for p in blend_set(samples, meshes, per_shape=400, workers=1).points] == [50, 50]


def test_blend_set_of_one_rank_has_columns_for_the_whole_collection(sphere_mesh, torus_mesh):
    """A rank holding only shape 1's samples still gets both shapes' distances, own column at row 1."""
    meshes = [_normalized(sphere_mesh), _normalized(torus_mesh)]
    cfg = SampleConfig(grid_resolution=32, surface_points=500, wide_points=200, uniform_points=300)
    torus = sample_shape(meshes[1], cfg)
    (sdf,) = blend_set([torus], meshes, per_shape=100, workers=1).sdf
    assert sdf.shape == (100, 2) and np.all(np.isin(sdf[:, 1], torus.points_sdf))
