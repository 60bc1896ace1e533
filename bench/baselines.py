"""Baselines built for the benchmark.

* generalization-only (DeepSDF-style): the engine's model with ``ModelConfig(detail=False)``,
  encoded through ``backend.api.encode`` like ours;
* grid-only (overfitting-only): one dense feature grid shared by every shape, read trilinearly by
  an MLP on ``[z, c(x), x]``, no coarse branch, trained on every sample (a small module of its own:
  the engine's grids are per shape and sparse);
* quadric decimation of the source mesh to a byte budget (fast-simplification);
* Draco (the ``DracoPy`` package) at a number of quantisation bits;
* a narrow-band signed distance grid: float16 exact SDF values at the lattice nodes within a band
  of the surface plus a bit mask of those nodes, both zstd-compressed; decoded by filling the sign
  outside the band and marching cubes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import fast_simplification
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backend.config import ModelConfig, Preset, with_training
from backend.field.decode import fill_outside_band, marching_cubes
from backend.store.library import Library, ShapeEntry, history_entry
from backend.geometry.meshes import Mesh, normalization, validate_mesh
from backend.field.model import lattice_corners
from backend.geometry.sampling import ShapeSamples, cached_samples, signed_distance
from backend.field.train import cap_code_norms, code_regularizer, cosine_decay, sample_pools, schedule

#: Bytes of a mesh as stored here: float32 xyz per vertex + int32 triple per face.
VERTEX_BYTES, FACE_BYTES = 12, 12
DRACO_COMPRESSION_LEVEL = 10


def generalization_only(preset: Preset) -> Preset:
    """``preset`` without the detail branch and grids: same code size, coarse branch only."""
    return dataclasses.replace(preset, name=f"{preset.name}-generalization-only",
                               model=dataclasses.replace(preset.model, detail=False))


def mesh_bytes(mesh: Mesh) -> int:
    """Storage of a mesh's referenced vertices and its faces (float32 vertices, int32 faces)."""
    return VERTEX_BYTES * len(np.unique(mesh.faces)) + FACE_BYTES * len(mesh.faces)


def _compact(vertices: np.ndarray, faces: np.ndarray) -> Mesh:
    used, inverse = np.unique(faces, return_inverse=True)
    return Mesh(vertices[used], inverse.reshape(-1, 3))


def decimate_to_bytes(mesh: Mesh, budget: float) -> Mesh:
    """Quadric-decimated ``mesh`` whose ``mesh_bytes`` fit ``budget`` (the mesh itself if it fits).

    The target face count is lowered until the result fits; below 4 faces it stops there, so the
    result can exceed a budget too small for any closed mesh (callers report the actual bytes).
    """
    if mesh_bytes(mesh) <= budget:
        return mesh
    target = max(4, int(budget / (FACE_BYTES + VERTEX_BYTES / 2)))  # closed meshes: V ≈ F / 2
    while True:
        v, f = fast_simplification.simplify(mesh.vertices, mesh.faces.astype(np.int32), target_count=min(target, len(mesh.faces) - 1))
        result = _compact(np.asarray(v), np.asarray(f, dtype=np.int64))
        size = mesh_bytes(result)
        if size <= budget or target <= 4:
            return result
        target = max(4, min(target - 1, int(target * budget / size)))


def draco_available() -> bool:
    try:
        import DracoPy  # noqa: F401
    except ImportError:
        return False
    return True


def draco_round_trip(mesh: Mesh, bits: int) -> tuple[int, Mesh]:
    """(bytes of the Draco buffer, decoded mesh) at ``bits`` quantisation bits, compression level 10."""
    import DracoPy

    buffer = DracoPy.encode(np.ascontiguousarray(mesh.vertices, dtype=np.float32),
                            np.ascontiguousarray(mesh.faces, dtype=np.uint32), quantization_bits=bits,
                            compression_level=DRACO_COMPRESSION_LEVEL)
    decoded = DracoPy.decode(buffer)
    return len(buffer), Mesh(np.asarray(decoded.points, dtype=np.float64), np.asarray(decoded.faces, dtype=np.int64).reshape(-1, 3))


def narrow_band_round_trip(mesh: Mesh, resolution: int, band_voxels: float = 3.0, zstd_level: int = 19) -> tuple[int, Mesh]:
    """(stored bytes, decoded mesh) of a narrow-band signed distance grid at ``resolution``^3.

    Stored: the exact SDF (normalised frame, ``np.linspace(-1, 1, resolution)`` lattice) as float16
    at every node within ``band_voxels`` voxels of the surface, in linear-index order, and the
    ``np.packbits`` mask of those nodes; each zstd-compressed. Decoded: the band values, every
    other node set to ±(band + 1 voxel) by ``fill_outside_band``, marching cubes.
    """
    import zstandard

    from backend.geometry.metrics import sdf_lattice

    norm = normalization(mesh.vertices)
    v = norm.apply(mesh.vertices)
    h = 2.0 / (resolution - 1)
    coarse = sdf_lattice(v, mesh.faces, resolution).reshape(-1)  # exact near the surface, bounds elsewhere
    candidates = np.flatnonzero(np.abs(coarse) <= band_voxels * h)  # holds every node with |sdf| ≤ band
    axis = np.linspace(-1.0, 1.0, resolution)
    i, j, k = np.unravel_index(candidates, (resolution,) * 3)
    exact = signed_distance(v, mesh.faces, np.stack([axis[i], axis[j], axis[k]], 1))
    keep = np.abs(exact) <= band_voxels * h
    index, values = candidates[keep], exact[keep].astype(np.float16)
    mask = np.zeros(resolution**3, dtype=bool)
    mask[index] = True
    compressor = zstandard.ZstdCompressor(level=zstd_level)
    blobs = [compressor.compress(np.packbits(mask).tobytes()), compressor.compress(values.tobytes())]
    # decode from what is stored
    decompressor = zstandard.ZstdDecompressor()
    stored_mask = np.unpackbits(np.frombuffer(decompressor.decompress(blobs[0]), np.uint8))[: resolution**3].astype(bool)
    stored_values = np.frombuffer(decompressor.decompress(blobs[1]), np.float16).astype(np.float32)
    volume = fill_outside_band(np.flatnonzero(stored_mask), stored_values, resolution, (band_voxels + 1) * h)
    verts, faces, _ = marching_cubes(volume)
    return sum(len(b) for b in blobs), Mesh(norm.invert(verts.astype(np.float64)), faces.astype(np.int64))


def prepare_samples(shapes: Mapping[str, Mesh], preset: Preset, cache_dir: Path | None,
                    seed: int) -> tuple[list[ShapeEntry], list[ShapeSamples]]:
    """Shape entries (normalisation) and training samples exactly as ``backend.api.encode`` makes them."""
    entries, samples = [], []
    for name, mesh in shapes.items():
        clean = validate_mesh(mesh, name)
        transform = normalization(clean.vertices)
        entries.append(ShapeEntry(name, transform, clean.content_hash()))
        samples.append(cached_samples(Mesh(transform.apply(clean.vertices), clean.faces), preset.sample, cache_dir, seed))
    return entries, samples


class DenseGridField(nn.Module):
    """f(z, x) = MLP[z, c(x), x] over one dense (R^3, C) feature grid shared by every shape.

    c(x) is the trilinear interpolation of the 8 corner rows (``embedding_bag``, sparse gradients,
    so SparseAdam touches only the rows a batch used).
    """

    def __init__(self, config: ModelConfig, resolution: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.features = nn.Parameter(torch.randn(resolution**3, config.grid_channels) * 1e-2)
        dims = [config.code_size + config.grid_channels + 3] + [config.detail_width] * config.detail_depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], 1)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        index, weights = lattice_corners(x, self.resolution)
        feats = F.embedding_bag(index, self.features, per_sample_weights=weights, mode="sum", sparse=True)
        h = torch.cat([z, feats, x], dim=1)
        for layer in self.layers:
            h = F.relu(layer(h))
        return self.out(h).squeeze(1)


class GridOnlyModel(nn.Module):
    """The grid-only baseline shaped like ``CompactSdf`` (a ``coarse`` field, ``detail=None``), so the
    engine's decoder (blend path: the field everywhere it looks) and ``Library`` byte counts apply."""

    def __init__(self, config: ModelConfig, resolution: int) -> None:
        super().__init__()
        self.config = dataclasses.replace(config, detail=False)
        self.coarse = DenseGridField(config, resolution)
        self.detail = None

    def forward(self, shape: int, z: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value = self.coarse(z, x)
        return value, value


def grid_only_resolution(stored_nodes: int, cap: int) -> int:
    """Dense lattice size holding about as many nodes as all our shapes' stored nodes, ≤ cap."""
    return int(min(cap, max(8, round(stored_nodes ** (1 / 3)))))


def encode_grid_only(shapes: Mapping[str, Mesh], preset: Preset, resolution: int, budget_s: float, seed: int,
                     cache_dir: Path | None) -> Library:
    """Train the grid-only baseline for ``budget_s`` seconds on all samples (band lattice and points).

    Each step draws ``band_batch`` band-lattice and ``point_batch`` point samples like our coarse
    phase; Adam for the MLP and codes, sparse Adam for the grid, cosine-decayed learning rates.
    """
    torch.manual_seed(seed)
    cfg = preset.train
    entries, samples = prepare_samples(shapes, preset, cache_dir, seed)
    model = GridOnlyModel(preset.model, resolution)
    d = preset.model.code_size
    codes = nn.Parameter(torch.randn(len(entries), d, generator=torch.Generator().manual_seed(seed)) / d**0.5)
    band, points = sample_pools(samples, preset.sample.grid_resolution, torch.device("cpu"))
    grid = model.coarse.features
    dense = torch.optim.Adam([{"params": [codes], "lr": cfg.lr_code},
                              {"params": [p for p in model.parameters() if p is not grid], "lr": cfg.lr_network}])
    sparse = torch.optim.SparseAdam([grid], lr=cfg.lr_grid)
    base = [[cfg.lr_code, cfg.lr_network], [cfg.lr_grid]]
    gen = torch.Generator().manual_seed(seed)
    steps, loss = 0, torch.zeros(())
    for _, frac in schedule(cfg.coarse_steps_for(len(entries)), budget_s):
        cosine_decay([dense, sparse], base, frac, cfg.final_lr_fraction)
        bi, pi = band.draw(cfg.band_batch, gen), points.draw(cfg.point_batch, gen)
        x = torch.cat([band.points[bi], points.points[pi]])
        sdf = torch.cat([band.sdf[bi], points.sdf[pi]])
        shape = torch.cat([band.shape[bi], points.shape[pi]])
        loss = (model.coarse(codes[shape], x) - sdf).abs().mean()
        dense.zero_grad(set_to_none=True)
        sparse.zero_grad(set_to_none=True)
        (loss + code_regularizer(codes, cfg, frac)).backward()
        dense.step()
        sparse.step()
        cap_code_norms(codes)
        steps += 1
    model.eval()
    spec = dataclasses.replace(with_training(preset, time_budget_s=budget_s), name=f"{preset.name}-grid-only",
                               model=model.config)
    stats = {"coarse_steps": steps, "detail_steps": 0, "seconds": round(budget_s, 2), "fused_loss": loss.item(),
             "grid_resolution": resolution}
    return Library(spec, model, codes.detach(), entries, [history_entry("encode", list(shapes), stats)])
