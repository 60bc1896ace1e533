"""Decoding on the tiny preset (sphere + torus): band fill, reconstructions, blends and raw codes."""

import numpy as np
import pytest
import torch

from backend.api import _blend, decode, interpolate
from backend.field.decode import blend_volume, fill_outside_band, marching_cubes
from backend.errors import BadInputError, LibraryError
from backend.geometry.meshes import Mesh, load_mesh
from backend.geometry.metrics import compare_meshes, component_count, is_closed, point_to_mesh_distance


def test_fill_outside_band_takes_the_sign_of_the_enclosing_band():
    """Two shells of band nodes: the core inside the inner shell is negative, the gap between the shells
    is positive (its boundary votes +), the outside is positive, and band values are kept."""
    r = 16
    ijk = np.stack(np.meshgrid(*[np.arange(r)] * 3, indexing="ij"), -1).reshape(-1, 3)
    cheb = np.abs(ijk - 7.5).max(1)  # Chebyshev distance from the centre: nested cubic shells
    inner = np.flatnonzero(np.abs(cheb - 2.5) < 0.1)  # a closed shell around a 4^3 core
    outer = np.flatnonzero(np.abs(cheb - 5.5) < 0.1)  # a closed shell around the gap
    index = np.concatenate([inner, outer])
    values = np.concatenate([np.full(len(inner), -0.01, np.float32), np.full(len(outer), 0.02, np.float32)])
    volume = fill_outside_band(index, values, r, fill=0.5).reshape(-1)
    np.testing.assert_array_equal(volume[index], values)
    core, gap, outside = cheb < 2.4, (cheb > 2.6) & (cheb < 5.4), cheb > 5.6
    assert np.all(volume[core] == -0.5) and np.all(volume[gap] == 0.5) and np.all(volume[outside] == 0.5)
    # the same shells with the inner one positive: the core follows its boundary and turns positive
    flipped = fill_outside_band(index, np.abs(values), r, fill=0.5).reshape(-1)
    assert np.all(flipped[core] == 0.5)
    # a region touching no band node at all is outside (+)
    assert np.all(fill_outside_band(np.zeros(0, np.int64), np.zeros(0, np.float32), 4, fill=1.0) == 1.0)


def test_fill_outside_band_majority_vote():
    """A region whose boundary is mostly negative is inside, whatever a few positive nodes say."""
    r = 12
    ijk = np.stack(np.meshgrid(*[np.arange(r)] * 3, indexing="ij"), -1).reshape(-1, 3)
    cheb = np.abs(ijk - 5.5).max(1)
    inner, outer = np.flatnonzero(np.abs(cheb - 1.5) < 0.1), np.flatnonzero(np.abs(cheb - 4.5) < 0.1)
    values = np.concatenate([np.full(len(inner), -1.0, np.float32), np.full(len(outer), 1.0, np.float32)])
    values[:5] = 1.0  # a few dissenting nodes on the inner shell
    volume = fill_outside_band(np.concatenate([inner, outer]), values, r, fill=0.25).reshape(-1)
    assert np.all(volume[cheb < 1.4] == -0.25)
    assert np.all(volume[(cheb > 1.6) & (cheb < 4.4)] == 0.25) and np.all(volume[cheb > 4.6] == 0.25)


def test_tiny_library_reconstructs_training_shapes(tiny_library, sphere_mesh, torus_mesh):
    for name, gt, bound in (("sphere", sphere_mesh, 4e-3), ("torus", torus_mesh, 6e-3)):
        mesh = decode(tiny_library, name, resolution=64, device="cpu")
        assert mesh.vertices.dtype == np.float64 and mesh.faces.dtype == np.int32
        metrics = compare_meshes(gt, Mesh(mesh.vertices, mesh.faces), n_samples=20_000)
        assert metrics.cd_l1 < bound, (name, metrics)
        assert component_count(mesh.faces) == 1 and is_closed(mesh.faces)
        # decoded in the source's own coordinates: bounding boxes agree
        np.testing.assert_allclose(mesh.vertices.min(0), gt.vertices.min(0), atol=0.05 * np.ptp(gt.vertices))
    assert tiny_library.shape_info("torus")["stats"]["near_surface_error"] < 0.01


def test_shape_decodes_only_near_its_stored_band(tiny_library, data_dir):
    mesh = decode(tiny_library, "torus", resolution=64)
    assert 0 < mesh.stats["detail_fraction"] < 0.25
    assert 0 < mesh.stats["band_nodes"] <= mesh.stats["detail_evaluations"]
    normalized = decode(tiny_library, "torus", resolution=64, normalized=True)
    source = load_mesh(data_dir / "torus.obj")
    gt = tiny_library.shapes[1].transform.apply(source.vertices)
    distance = point_to_mesh_distance(normalized.vertices, gt, source.faces).distance
    # every vertex lies within the stored band (2 voxels of the 64^3 grid) plus a voxel of meshing slack
    assert distance.max() < 3 * 2 / 63


def test_blends_decode(tiny_library):
    for mode in ("linear", "slerp"):
        mesh = decode(tiny_library, {"sphere": 0.5, "torus": 0.5}, resolution=48, mode=mode)
        assert len(mesh.faces) > 100 and np.all(np.isfinite(mesh.vertices))
    path = interpolate(tiny_library, ["sphere", "torus"], 3, resolution=48)
    assert len(path) == 3
    with pytest.raises(BadInputError, match="weights"):
        decode(tiny_library, {"sphere": -1.0, "torus": 0.5})
    with pytest.raises(LibraryError, match="no shape named"):
        decode(tiny_library, "cube")
    with pytest.raises(ValueError, match="detail"):
        decode(tiny_library, {"sphere": 0.5, "torus": 0.5}, detail=1.5)


def test_inbetweens_of_two_closed_shapes_are_closed_single_pieces(tiny_library):
    """Every slerp in-between of the sphere and the torus (each one closed piece) is one closed piece too."""
    path = interpolate(tiny_library, ["sphere", "torus"], 7, resolution=64)
    for t, mesh in zip(np.linspace(0, 1, 7)[1:-1], path[1:-1]):
        assert component_count(mesh.faces) == 1 and is_closed(mesh.faces), t


def test_blend_with_detail_zero_is_the_coarse_shape(tiny_library):
    """detail=0 adds no shape's detail: the decode is the coarse branch's band decode of the blended code."""
    target = {"sphere": 0.3, "torus": 0.7}
    code, _, _ = _blend(tiny_library, target, "slerp")
    volume, _ = blend_volume(tiny_library.model, [(code, 1.0)], [], 40)
    coarse, _, _ = marching_cubes(volume)
    mesh = decode(tiny_library, target, resolution=40, detail=0.0, normalized=True)
    np.testing.assert_array_equal(mesh.vertices, coarse)
    assert mesh.stats["detail_evaluations"] == 0
    # at 0.7 the torus keeps some of its detail when the dial is up, so the full-detail blend differs
    full = decode(tiny_library, target, resolution=40, detail=1.0, normalized=True)
    assert full.stats["detail_evaluations"] > 0
    assert len(full.vertices) != len(coarse) or not np.array_equal(full.vertices, coarse)


def test_whole_shape_blend_with_detail_zero_is_coarse_and_with_detail_one_is_the_shape(tiny_library):
    code, _, weights = _blend(tiny_library, {"torus": 1.0}, "slerp")
    assert weights == {tiny_library.index("torus"): 1.0}
    torch.testing.assert_close(code, tiny_library.codes[1])
    volume, _ = blend_volume(tiny_library.model, [(code, 1.0)], [], 40)
    coarse, _, _ = marching_cubes(volume)
    np.testing.assert_array_equal(decode(tiny_library, {"torus": 1.0}, resolution=40, detail=0.0, normalized=True).vertices,
                                  coarse)
    np.testing.assert_array_equal(decode(tiny_library, {"torus": 2.0}, resolution=40, normalized=True).vertices,
                                  decode(tiny_library, "torus", resolution=40, normalized=True).vertices)


def test_raw_code_decodes(tiny_library):
    mesh = decode(tiny_library, tiny_library.codes[1].numpy(), resolution=40)
    assert len(mesh.faces) > 100 and mesh.stats["detail_evaluations"] == 0  # a raw code has no detail of its own
    with pytest.raises(BadInputError, match="raw code"):
        decode(tiny_library, np.zeros(3), resolution=40)


def test_field_blend_ends_are_the_shapes(tiny_library):
    """mode='distance' blends whole fields; at either end it is exactly the shape."""
    whole = decode(tiny_library, "torus", resolution=40)
    end = decode(tiny_library, {"sphere": 0.0, "torus": 1.0}, resolution=40, mode="distance")
    np.testing.assert_allclose(end.vertices, whole.vertices, atol=1e-6)  # the blended transform rounds
    middle = decode(tiny_library, {"sphere": 0.5, "torus": 0.5}, resolution=40, mode="distance")
    assert len(middle.faces) > 0 and np.isfinite(middle.vertices).all()
