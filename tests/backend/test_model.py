"""The network: geometric initialisation and per-shape detail grids that never share rows."""

import numpy as np
import pytest
import torch

from backend.config import ModelConfig
from backend.field.model import CompactSdf


def test_geometric_init_is_a_sphere():
    torch.manual_seed(0)
    model = CompactSdf(ModelConfig(code_size=8, coarse_width=64, grid_resolution=16))
    model.detail.grid.set_shapes([np.zeros(0, dtype=np.int64)])  # one shape without stored nodes
    x = torch.randn(256, 3)
    x = x / x.norm(dim=1, keepdim=True) * torch.rand(256, 1)
    coarse, fused = model(0, torch.zeros(256, 8), x)
    sphere = x.norm(dim=1) - 0.5
    assert np.corrcoef(coarse.detach(), sphere)[0, 1] > 0.8  # a sphere up to finite-width noise
    assert model(0, torch.zeros(1, 8), torch.zeros(1, 3))[0] < 0
    assert torch.equal(coarse, fused)  # no nodes: the detail branch adds exactly nothing


def test_detail_branch_is_zero_away_from_stored_nodes():
    model = CompactSdf(ModelConfig(code_size=4, grid_resolution=9, grid_channels=2))
    grid = model.detail.grid
    grid.set_shapes([np.array([0])])  # only the corner node (-1, -1, -1)
    torch.nn.init.normal_(model.detail.out.weight)
    torch.nn.init.normal_(model.detail.out.bias)
    with torch.no_grad():
        grid.features[1:] = 1.0
    x = torch.tensor([[-1.0, -1.0, -1.0], [0.5, 0.5, 0.5]])
    _, presence = grid.lookup(*grid.corners(0, x))
    np.testing.assert_allclose(presence, [1.0, 0.0])
    correction, presence = model.detail(0, torch.zeros(2, 4), x)
    assert correction[1] != 0 and presence[1] == 0  # the MLP says something, presence silences it
    coarse, fused = model(0, torch.zeros(2, 4), x)
    assert fused[1] == coarse[1] and fused[0] != coarse[0]


def test_shapes_never_read_each_others_rows():
    grid = CompactSdf(ModelConfig(code_size=4, grid_resolution=5, grid_channels=3)).detail.grid
    keys = [np.array([0, 7, 30]), np.array([7, 8]), np.zeros(0, dtype=np.int64)]
    grid.set_shapes(keys, [torch.full((3, 3), 1.0), torch.full((2, 3), 2.0), None])
    assert [grid.node_count(s) for s in range(3)] == [3, 2, 0]
    assert grid.offsets == [0, 3, 5] and grid.features.shape == (6, 3) and torch.equal(grid.features[0], torch.zeros(3))
    index = torch.tensor([0, 7, 8, 30, 99])
    assert grid.rows_at(0, index).tolist() == [1, 2, 0, 3, 0]
    assert grid.rows_at(1, index).tolist() == [0, 4, 5, 0, 0]
    assert grid.rows_at(2, index).tolist() == [0, 0, 0, 0, 0]
    for shape, value in ((0, 1.0), (1, 2.0)):  # node 7 is shared by both shapes, each reads its own features
        rows, weights = grid.rows_at(shape, torch.tensor([[7] * 8])), torch.full((1, 8), 1 / 8)
        feats, presence = grid.lookup(rows, weights)
        torch.testing.assert_close(feats, torch.full((1, 3), value))
        assert presence.item() == pytest.approx(1.0)
    back_keys, back_features = grid.all_shapes()
    assert [k.tolist() for k in back_keys] == [k.tolist() for k in keys]
    assert [f.shape[0] for f in back_features] == [3, 2, 0]


def _sphere_grid(resolution: int = 33, radius: float = 0.5, band: float = 1.5):
    """A grid whose only shape stores a sphere's exact distance (channel 0, in units of skip_gain) in a
    ``band``-voxel band, as training stores it: (grid, skip_gain, the distance function)."""
    model = CompactSdf(ModelConfig(code_size=4, grid_resolution=resolution, grid_channels=1))
    grid = model.detail.grid
    axis = np.linspace(-1, 1, resolution)
    nodes = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    distance = np.linalg.norm(nodes, axis=1) - radius
    keys = np.flatnonzero(np.abs(distance) <= band * 2 / (resolution - 1))
    grid.set_shapes([keys], [torch.from_numpy(distance[keys, None] / model.detail.skip_gain).float()])
    return grid, model.detail.skip_gain, lambda x: x.norm(dim=1) - radius


def test_cubic_reading_is_exact_at_nodes_and_follows_curvature_between_them():
    """Catmull-Rom reading of a thin band (outer stencil nodes extrapolated) beats trilinear reading
    between nodes by a wide margin, and equals the stored value at a node."""
    grid, gain, sphere = _sphere_grid()
    torch.manual_seed(0)
    direction = torch.nn.functional.normalize(torch.randn(4000, 3), dim=1)
    x = direction * (0.5 + (torch.rand(4000, 1) - 0.5) * 0.04)  # within a voxel of the surface
    cubic, known = grid.cubic_first_channel(0, x)
    linear, presence = grid.lookup(*grid.corners(0, x))
    stored = presence > 0.999  # all 8 corners stored: where trilinear reading is whole
    assert stored.float().mean() > 0.9 and bool(known[stored].all())
    cubic_error = (cubic[stored] * gain - sphere(x[stored])).abs().mean()
    linear_error = (linear[stored, 0] * gain - sphere(x[stored])).abs().mean()
    assert cubic_error < linear_error / 4
    node = torch.tensor([[16, 16, 24]]) * (2 / 32) - 1  # (0, 0, 0.5): on the sphere, a stored node
    value, known = grid.cubic_first_channel(0, node)
    assert known[0] and value[0] == grid.features[1:, 0][grid.rows_at(0, torch.tensor([(16 * 33 + 16) * 33 + 24]))[0] - 1]


def test_cubic_reading_reaches_one_node_past_the_band_and_no_further():
    """Just outside the stored band (where a coarser decode lattice has the far end of an edge that
    crosses the surface) the read extrapolates the distance; far from the band it is unknown."""
    grid, gain, sphere = _sphere_grid()
    torch.manual_seed(1)
    direction = torch.nn.functional.normalize(torch.randn(4000, 3), dim=1)
    h = 2 / 32
    x = direction * (0.5 + 1.9 * h)  # beyond the ±1.5-voxel band
    _, presence = grid.lookup(*grid.corners(0, x))
    value, known = grid.cubic_first_channel(0, x)
    assert known.float().mean() > 0.8 and (presence[known] < 0.999).float().mean() > 0.5  # read past the band
    error = (value[known] * gain - sphere(x[known])).abs()
    assert error.mean() < 0.06 * h and error.max() < 0.25 * h  # a sphere of radius 8 voxels: strongly curved
    far = torch.tensor([[0.0, 0.0, 0.0], [0.9, 0.9, 0.9]])  # the centre and a far corner
    assert not grid.cubic_first_channel(0, far)[1].any()
