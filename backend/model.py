"""The two-branch SDF network of DESIGN §1.

* ``CoarseBranch`` (generalization): MLP on [z, x, PE(x)] with a skip connection and geometric
  initialisation, so the untrained SDF is a sphere. Owns the whole cube.
* ``SparseGrid`` + ``DetailBranch`` (overfitting): a feature grid shared by all shapes, stored only
  at lattice nodes near some training surface (the union of the shapes' bands), read by trilinear
  interpolation; a small MLP on [z, c(x), x] turns features into a correction. The correction is
  multiplied by the interpolated node-presence weight, so it fades to exactly zero outside the
  stored band: the grid never acts in the far field, and there is no seam where the band ends.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the network. Presets live in ``backend.config``."""

    code_size: int = 64
    pe_frequencies: int = 6  #: NeRF-style positional encoding of x in the coarse branch
    coarse_width: int = 128
    coarse_depth: int = 4  #: hidden layers; the input is re-injected before the middle one
    grid_resolution: int = 256  #: lattice points per axis over [-1, 1] (at most 1024)
    grid_channels: int = 8
    detail_width: int = 64
    detail_depth: int = 2
    detail: bool = True  #: False gives the generalization-only (DeepSDF-style) baseline

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown model settings {sorted(unknown)}")
        config = cls(**data)
        if not 2 <= config.grid_resolution <= 1024:
            raise ValueError(f"grid resolution {config.grid_resolution} is outside 2..1024")
        return config


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


class SparseGrid(nn.Module):
    """Shared feature grid stored at a sparse set of lattice nodes, read trilinearly.

    Row 0 of ``features`` is a fixed zero row standing for "no node here". Gradients are sparse
    (``embedding_bag``), so an optimiser step touches only the rows a batch used.
    """

    def __init__(self, resolution: int, channels: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.features = nn.Parameter(torch.zeros(1, channels))
        self.register_buffer("keys", torch.zeros(0, dtype=torch.int64), persistent=False)
        self.register_buffer("table", torch.zeros(resolution**3, dtype=torch.int32), persistent=False)

    def set_nodes(self, keys: np.ndarray, features: torch.Tensor | None = None) -> None:
        """Store features at linear lattice indices ``keys`` (sorted, unique); new rows start at zero."""
        keys_t = torch.as_tensor(np.asarray(keys, dtype=np.int64))
        rows = torch.zeros(len(keys_t) + 1, self.features.shape[1])
        if features is not None:
            rows[1:] = features
        self.keys = keys_t
        self.table = torch.zeros(self.resolution**3, dtype=torch.int32)
        self.table[keys_t] = torch.arange(1, len(keys_t) + 1, dtype=torch.int32)
        self.features = nn.Parameter(rows)

    def add_nodes(self, keys: np.ndarray) -> None:
        """Add zero-initialised nodes; existing nodes keep their features."""
        old_keys = self.keys.numpy()
        merged = np.union1d(old_keys, keys)
        features = torch.zeros(len(merged), self.features.shape[1])
        features[np.searchsorted(merged, old_keys)] = self.features.detach()[1:]
        self.set_nodes(merged, features)

    def corners(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row ids (B, 8) and trilinear weights (B, 8) of the cell containing each point."""
        r = self.resolution
        u = (x.clamp(-1, 1) + 1) * ((r - 1) / 2)
        i0 = u.floor().clamp(0, r - 2)
        frac = u - i0
        i0 = i0.long()
        base = (i0[:, 0] * r + i0[:, 1]) * r + i0[:, 2]
        rows, weights = [], []
        for dx in (0, 1):
            wx = frac[:, 0] if dx else 1 - frac[:, 0]
            for dy in (0, 1):
                wy = frac[:, 1] if dy else 1 - frac[:, 1]
                for dz in (0, 1):
                    wz = frac[:, 2] if dz else 1 - frac[:, 2]
                    rows.append(self.table[base + (dx * r + dy) * r + dz])
                    weights.append(wx * wy * wz)
        return torch.stack(rows, 1).long(), torch.stack(weights, 1)

    def node_rows(self, index: torch.Tensor) -> torch.Tensor:
        """Rows (k, 1) of linear lattice indices; with weight 1 they read a node's own features."""
        return self.table[index].long()[:, None]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Interpolated features (B, C) and node-presence weight (B,) in [0, 1]."""
        return self.lookup(*self.corners(x))

    def lookup(self, rows: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and presence for precomputed ``rows``/``weights`` (B, K) (see ``corners``)."""
        present = (rows > 0).to(weights.dtype)
        feats = F.embedding_bag(rows, self.features, per_sample_weights=weights, mode="sum", sparse=True, padding_idx=0)
        return feats, (weights * present).sum(1)


class DetailBranch(nn.Module):
    """Local MLP f_o(z, c(x), x) over the shared sparse grid."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.grid = SparseGrid(config.grid_resolution, config.grid_channels)
        dims = [config.code_size + config.grid_channels + 3] + [config.detail_width] * config.detail_depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.from_lookup(z, x, *self.grid(x))

    def from_lookup(self, z: torch.Tensor, x: torch.Tensor, feats: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
        """The correction at x (B,) given the grid's features and presence there."""
        h = torch.cat([z, feats, x], dim=1)
        for layer in self.layers:
            h = F.relu(layer(h))
        return self.out(h).squeeze(1) * presence


class CompactSdf(nn.Module):
    """Shared networks of a library: coarse branch plus (optionally) the detail branch."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.coarse = CoarseBranch(config)
        self.detail = DetailBranch(config) if config.detail else None

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(coarse prediction, fused prediction) for codes z (B, D) at points x (B, 3)."""
        coarse = self.coarse(z, x)
        if self.detail is None:
            return coarse, coarse
        return coarse, coarse + self.detail(z, x)
