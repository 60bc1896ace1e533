"""Training, decoding, blending, inversion and add mode on the tiny preset (sphere + torus)."""

import numpy as np
import pytest
import torch

from backend.api import decode, encode, interpolate, invert
from backend.errors import BadMeshError, Cancelled, LibraryError
from backend.meshes import Mesh
from backend.metrics import compare_meshes, component_count, is_closed
from backend.model import CompactSdf, ModelConfig


def test_geometric_init_is_a_sphere():
    torch.manual_seed(0)
    model = CompactSdf(ModelConfig(code_size=8, coarse_width=64, grid_resolution=16))
    x = torch.randn(256, 3)
    x = x / x.norm(dim=1, keepdim=True) * torch.rand(256, 1)
    coarse, fused = model(torch.zeros(256, 8), x)
    sphere = x.norm(dim=1) - 0.5
    assert np.corrcoef(coarse.detach(), sphere)[0, 1] > 0.8  # a sphere up to finite-width noise
    assert model(torch.zeros(1, 8), torch.zeros(1, 3))[0] < 0
    assert torch.equal(coarse, fused)  # empty grid: the detail branch adds exactly nothing


def test_detail_branch_is_zero_away_from_stored_nodes():
    model = CompactSdf(ModelConfig(code_size=4, grid_resolution=9, grid_channels=2))
    grid = model.detail.grid
    grid.set_nodes(np.array([0]))  # only the corner node (-1, -1, -1)
    torch.nn.init.normal_(model.detail.out.weight)
    with torch.no_grad():
        grid.features[1:] = 1.0
    x = torch.tensor([[-1.0, -1.0, -1.0], [0.5, 0.5, 0.5]])
    _, presence = grid(x)
    np.testing.assert_allclose(presence, [1.0, 0.0])
    assert model.detail(torch.zeros(2, 4), x)[1] == 0


def test_tiny_library_reconstructs_training_shapes(tiny_library, sphere_mesh, torus_mesh):
    for name, gt, bound in (("sphere", sphere_mesh, 4e-3), ("torus", torus_mesh, 6e-3)):
        mesh = decode(tiny_library, name, resolution=64, device="cpu")
        assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int32
        metrics = compare_meshes(gt, Mesh(mesh.vertices, mesh.faces), n_samples=20_000)
        assert metrics.cd_l1 < bound, (name, metrics)
        assert component_count(mesh.faces) == 1 and is_closed(mesh.faces)
        # decoded in the source's own coordinates: bounding boxes agree
        np.testing.assert_allclose(mesh.vertices.min(0), gt.vertices.min(0), atol=0.05 * np.ptp(gt.vertices))
    assert tiny_library.shape_info("torus")["stats"]["near_surface_error"] < 0.01


def test_detail_only_in_band(tiny_library):
    mesh = decode(tiny_library, "torus", resolution=64)
    assert 0 < mesh.stats["detail_fraction"] < 0.25


def test_blends_decode(tiny_library):
    for mode in ("linear", "slerp"):
        mesh = decode(tiny_library, {"sphere": 0.5, "torus": 0.5}, resolution=48, mode=mode)
        assert len(mesh.faces) > 100 and np.all(np.isfinite(mesh.vertices))
    path = interpolate(tiny_library, ["sphere", "torus"], 3, resolution=48)
    assert len(path) == 3
    with pytest.raises(ValueError, match="weights"):
        decode(tiny_library, {"sphere": -1.0, "torus": 0.5})
    with pytest.raises(LibraryError, match="no shape named"):
        decode(tiny_library, "cube")


def test_inversion_recovers_a_training_shape(tiny_library, torus_mesh):
    inverted = invert(tiny_library, torus_mesh, "torus again", device="cpu", seed=3)
    codes = inverted.codes
    fitted, torus, sphere = codes[2], codes[inverted.index("torus")], codes[inverted.index("sphere")]
    assert (fitted - torus).norm() < (fitted - sphere).norm()
    mesh = decode(inverted, "torus again", resolution=64)
    assert compare_meshes(torus_mesh, Mesh(mesh.vertices, mesh.faces), n_samples=20_000).cd_l1 < 0.01
    assert tiny_library.names == ["sphere", "torus"]  # the original object is untouched


def test_add_mode_keeps_old_codes(tiny_library, sphere_mesh, data_dir):
    from backend.meshes import load_mesh

    before = decode(tiny_library, "sphere", resolution=48)
    spot = load_mesh(data_dir / "spot_low_resolution.obj")
    grown = encode({"spot": spot}, preset="tiny", library=tiny_library)
    assert grown.names == ["sphere", "torus", "spot"]
    torch.testing.assert_close(grown.codes[:2], tiny_library.codes)
    after = decode(grown, "sphere", resolution=48)
    drift = compare_meshes(Mesh(before.vertices, before.faces), Mesh(after.vertices, after.faces), n_samples=10_000)
    assert drift.cd_l1 < 0.003 and component_count(after.faces) == 1
    added = decode(grown, "spot", resolution=64)
    assert compare_meshes(spot, Mesh(added.vertices, added.faces), n_samples=10_000).cd_l1 < 0.02
    with pytest.raises(BadMeshError, match="already in the library"):
        encode({"sphere": sphere_mesh}, preset="tiny", library=tiny_library, steps=1)


def test_cancel_stops_training(sphere_mesh):
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        encode({"s": sphere_mesh}, preset="tiny", should_stop=stop)


def test_progress_reports_eta(sphere_mesh):
    seen = []
    encode({"s": sphere_mesh}, preset="tiny", steps=40, on_progress=seen.append)
    training = [p for p in seen if p.stage.startswith("training")]
    assert {p.stage for p in training} == {"training coarse", "training detail"}
    assert training[-1].step == training[-1].total == 80  # 40 steps in each phase
    assert training[-1].loss is not None and training[-1].eta_s is not None


def test_seed_makes_training_deterministic(sphere_mesh):
    a = encode({"s": sphere_mesh}, preset="tiny", steps=20, seed=5)
    b = encode({"s": sphere_mesh}, preset="tiny", steps=20, seed=5)
    torch.testing.assert_close(a.codes, b.codes)
