"""The two-branch SDF network of DESIGN §1.

* ``CoarseBranch`` (generalization): MLP on [z, x, PE(x)] with a skip connection and geometric
  initialisation, so the untrained SDF is a sphere. Owns the whole cube and the latent space.
* ``ShapeGrids`` + ``DetailBranch`` (overfitting): sparse feature grids on one shared lattice, each
  shape storing features only at its own nodes near its surface, read by trilinear interpolation;
  a small MLP on [z, c(x), x], shared by all shapes, turns features into the signed distance in
  the band (feature channel 0 holds it directly, the MLP refines it; decoding reads channel 0
  cubically, ``ShapeGrids.cubic_first_channel``). Where a shape has no nodes
  its presence is zero and the coarse branch alone speaks: the grid never acts in the far field,
  and one shape's detail never leaks into another's.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig


def positional_encoding(x: torch.Tensor, frequencies: int) -> torch.Tensor:
    """[sin(2^k pi x), cos(2^k pi x)] for k < frequencies; (B, 6*frequencies)."""
    if frequencies == 0:
        return x[:, :0]
    scales = (2.0 ** torch.arange(frequencies, dtype=x.dtype, device=x.device)) * math.pi
    angles = (x[:, :, None] * scales).flatten(1)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class CoarseBranch(nn.Module):
    """Code-conditioned MLP f_g(z, x) with geometric initialisation (a sphere of radius 0.5)."""

    def __init__(self, config: ModelConfig, sphere_radius: float = 0.5) -> None:
        super().__init__()
        self.frequencies = config.pe_frequencies
        in_dim = config.code_size + 3 + 6 * config.pe_frequencies
        width, depth = config.coarse_width, config.coarse_depth
        self.skip_at = depth // 2
        dims = [in_dim] + [width] * depth
        self.layers = nn.ModuleList()
        for i in range(depth):
            extra = in_dim if i == self.skip_at else 0
            self.layers.append(nn.Linear(dims[i] + extra, width))
        self.out = nn.Linear(width, 1)
        self._geometric_init(config.code_size, sphere_radius)

    def _geometric_init(self, code_size: int, radius: float) -> None:
        for i, layer in enumerate(self.layers):
            nn.init.normal_(layer.weight, 0.0, math.sqrt(2) / math.sqrt(layer.out_features))
            nn.init.zeros_(layer.bias)
            # Only x itself drives the initial field: code and encoding columns start at zero.
            first = 0 if i == 0 else (layer.in_features - (code_size + 3 + 6 * self.frequencies) if i == self.skip_at else None)
            if first is not None:
                with torch.no_grad():
                    layer.weight[:, first : first + code_size] = 0
                    layer.weight[:, first + code_size + 3 :] = 0
        nn.init.normal_(self.out.weight, math.sqrt(math.pi) / math.sqrt(self.out.in_features), 1e-4)
        nn.init.constant_(self.out.bias, -radius)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([z, x, positional_encoding(x, self.frequencies)], dim=1)
        h = inputs
        for i, layer in enumerate(self.layers):
            if i == self.skip_at:
                h = torch.cat([h, inputs], dim=1)
            h = F.relu(layer(h))
        return self.out(h).squeeze(1)


def lattice_corners(x: torch.Tensor, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear lattice indices (B, 8) and trilinear weights (B, 8) of the cell holding each point of x (B, 3)."""
    r = resolution
    u = (x.clamp(-1, 1) + 1) * ((r - 1) / 2)
    i0 = u.floor().clamp(0, r - 2)
    frac = u - i0
    i0 = i0.long()
    base = (i0[:, 0] * r + i0[:, 1]) * r + i0[:, 2]
    index, weights = [], []
    for dx in (0, 1):
        wx = frac[:, 0] if dx else 1 - frac[:, 0]
        for dy in (0, 1):
            wy = frac[:, 1] if dy else 1 - frac[:, 1]
            for dz in (0, 1):
                wz = frac[:, 2] if dz else 1 - frac[:, 2]
                index.append(base + (dx * r + dy) * r + dz)
                weights.append(wx * wy * wz)
    return torch.stack(index, 1), torch.stack(weights, 1)


def catmull_rom(t: torch.Tensor) -> torch.Tensor:
    """Catmull-Rom weights (..., 4) of the nodes at offsets -1, 0, 1, 2 for fractions ``t`` in [0, 1]."""
    t2, t3 = t * t, t * t * t
    return torch.stack([-0.5 * t3 + t2 - 0.5 * t, 1.5 * t3 - 2.5 * t2 + 1, -1.5 * t3 + 2 * t2 + 0.5 * t, 0.5 * t3 - 0.5 * t2], -1)


def _past_the_band(edge: torch.Tensor, extrapolated: torch.Tensor) -> torch.Tensor:
    """A missing node's value next to the stored node ``edge``: no surface lies between them (it would
    have put the node in the band), so it keeps ``edge``'s sign and lies at least as far out; the
    linear ``extrapolated`` value says how much further."""
    return torch.copysign(torch.maximum(extrapolated.abs(), edge.abs()), edge)


def _cubic_along_last(values: torch.Tensor, present: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Catmull-Rom reading along the last axis (4 nodes) of ``values``: (value, known). A missing node
    is extrapolated linearly from the two nodes beyond it on the other side: always for the outer
    ones, and for an inner one when those two are present (so the read reaches one node past the
    band's edge, as a distance field continues). Known where both inner nodes are present or extrapolated."""
    v0, v1, v2, v3 = values.unbind(-1)
    p0, p1, p2, p3 = present.unbind(-1)
    inner1 = torch.where(p1, v1, _past_the_band(v2, 2 * v2 - v3))
    inner2 = torch.where(p2, v2, _past_the_band(v1, 2 * v1 - v0))
    known = (p1 | (p2 & p3)) & (p2 | (p0 & p1))
    first = torch.where(p0, v0, 2 * inner1 - inner2)
    last = torch.where(p3, v3, 2 * inner2 - inner1)
    value = first * weights[..., 0] + inner1 * weights[..., 1] + inner2 * weights[..., 2] + last * weights[..., 3]
    return value, known


class ShapeGrids(nn.Module):
    """Each shape's own sparse feature grid, all on one lattice, read trilinearly.

    Shape ``s`` stores features only at its lattice nodes within the storage band of its
    surface (sorted linear indices ``keys[s]``); its rows are ``offsets[s] + 1 ...`` of one
    ``features`` table whose row 0 is a fixed zero row ("no node here"). A shape never reads
    another shape's rows, so adding or removing shapes leaves every other shape untouched.
    Gradients are sparse (``embedding_bag``): an optimiser step touches only the rows a batch used.
    """

    def __init__(self, resolution: int, channels: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.features = nn.Parameter(torch.zeros(1, channels))
        self.keys: list[torch.Tensor] = []
        self.offsets: list[int] = []

    @property
    def channels(self) -> int:
        return self.features.shape[1]

    def node_count(self, shape: int) -> int:
        return len(self.keys[shape])

    def shape_features(self, shape: int) -> torch.Tensor:
        """The (k, C) feature rows of one shape."""
        start = self.offsets[shape] + 1
        return self.features[start : start + len(self.keys[shape])]

    def set_shapes(self, keys: list[np.ndarray], features: list[torch.Tensor | None] | None = None) -> None:
        """Replace every shape's nodes (sorted unique linear indices); missing features start at zero."""
        features = features or [None] * len(keys)
        rows = [torch.zeros(1, self.channels)]
        self.keys, self.offsets = [], []
        for k, f in zip(keys, features):
            self.offsets.append(sum(len(r) for r in rows) - 1)
            self.keys.append(torch.as_tensor(np.asarray(k, dtype=np.int64)))
            rows.append(torch.zeros(len(k), self.channels) if f is None else f.detach().float().cpu())
        self.features = nn.Parameter(torch.cat(rows).to(self.features.device))

    def all_shapes(self) -> tuple[list[np.ndarray], list[torch.Tensor]]:
        """(keys, features) of every shape, for rebuilding after adding or removing shapes."""
        return [k.numpy() for k in self.keys], [self.shape_features(s).detach().cpu() for s in range(len(self.keys))]

    def rows_at(self, shape: int, index: torch.Tensor) -> torch.Tensor:
        """Feature rows of linear lattice indices ``index`` for ``shape`` (0 where it has no node)."""
        keys = self.keys[shape].to(index.device)
        if not len(keys):
            return torch.zeros_like(index)
        pos = torch.searchsorted(keys, index).clamp_max(len(keys) - 1)
        return torch.where(keys[pos] == index, pos + 1 + self.offsets[shape], torch.zeros_like(pos))

    def corners(self, shape: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row ids (B, 8) and trilinear weights (B, 8) of the cell containing each point."""
        index, weights = lattice_corners(x, self.resolution)
        return self.rows_at(shape, index), weights

    def lookup(self, rows: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features renormalised over the present corners (B, C) and node presence (B,) in [0, 1]."""
        present = weights * (rows > 0).to(weights.dtype)
        presence = present.sum(1)
        feats = F.embedding_bag(rows, self.features, per_sample_weights=present / presence.clamp_min(1e-6)[:, None],
                                mode="sum", sparse=True, padding_idx=0)
        return feats, presence

    @torch.no_grad()
    def cubic_first_channel(self, shape: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Channel 0 of ``shape`` read with Catmull-Rom weights over each point's 4³ stencil: (value
        (B,), known (B,)). Stencil nodes the band lacks are extrapolated linearly along each axis in
        turn (``_cubic_along_last``), so a thin band reads cubically near its surface and a node
        past its edge is known too (a lattice coarser than the stored one needs such nodes at both
        ends of the edges that cross the surface). Exact at stored nodes; between them it follows the
        field's curvature, which trilinear reading flattens (finer decodes get closer to the source)."""
        r = self.resolution
        u = (x.clamp(-1, 1) + 1) * ((r - 1) / 2)
        base = u.floor().clamp(0, r - 2)
        weights = catmull_rom(u - base)  # (B, 3, 4)
        steps = torch.arange(-1, 3, device=x.device)
        ijk = base.long()[:, :, None] + steps  # (B, 3, 4): stencil coordinates along each axis
        inside = (ijk >= 0) & (ijk < r)
        ijk = ijk.clamp(0, r - 1)
        index = (ijk[:, 0, :, None, None] * r + ijk[:, 1, None, :, None]) * r + ijk[:, 2, None, None, :]
        rows = self.rows_at(shape, index.reshape(len(x), -1)).reshape(index.shape)
        rows = rows * (inside[:, 0, :, None, None] & inside[:, 1, None, :, None] & inside[:, 2, None, None, :])
        values, present = self.features[:, 0][rows], rows > 0
        values, present = _cubic_along_last(values, present, weights[:, None, None, 2])
        values, present = _cubic_along_last(values, present, weights[:, None, 1])
        return _cubic_along_last(values, present, weights[:, 0])


class DetailBranch(nn.Module):
    """Local MLP f_o(z, c(x), x) over each shape's own sparse grid."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.grid = ShapeGrids(config.grid_resolution, config.grid_channels)
        self.skip_gain = 4 * 2.0 / (config.grid_resolution - 1)  #: channel 0 counts in units of four lattice voxels
        dims = [config.code_size + config.grid_channels + 3] + [config.detail_width] * config.detail_depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, shape: int, z: torch.Tensor, x: torch.Tensor, cubic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The band value (B,) of ``shape`` at x, and its node presence (B,): 0 where it has no nodes.
        ``cubic`` (decoding) reads channel 0 with ``ShapeGrids.cubic_first_channel`` where that is
        known, and the band then speaks there in full (presence 1)."""
        feats, presence = self.grid.lookup(*self.grid.corners(shape, x))
        if cubic:
            value, known = self.grid.cubic_first_channel(shape, x)
            feats[:, 0] = torch.where(known, value, feats[:, 0])
            presence = torch.where(known, torch.ones_like(presence), presence)
        return self.from_features(z, x, feats), presence

    def from_features(self, z: torch.Tensor, x: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """The signed distance inside the stored band (B,) given interpolated features.

        Channel 0 holds the distance itself (in units of ``skip_gain``); the MLP on [z, c, x] adds
        what channel 0's quantisation and trilinear reading lose. Inside its band a shape therefore
        never depends on the coarse branch: shapes added through frozen networks are as exact as
        shapes trained with them.
        """
        h = torch.cat([z, feats, x], dim=1)
        for layer in self.layers:
            h = F.relu(layer(h))
        return self.out(h).squeeze(1) + self.skip_gain * feats[:, 0]


class CompactSdf(nn.Module):
    """Shared networks of a library: coarse branch plus (optionally) the detail branch."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.coarse = CoarseBranch(config)
        self.detail = DetailBranch(config) if config.detail else None

    def forward(self, shape: int, z: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(coarse prediction, fused prediction) of grid ``shape`` with codes z (B, D) at points x (B, 3).

        Fused: the band value where the shape's grid is present, fading to the coarse branch where it is not.
        """
        coarse = self.coarse(z, x)
        if self.detail is None:
            return coarse, coarse
        value, presence = self.detail(shape, z, x)
        return coarse, coarse + presence * (value - coarse)
