"""Baselines and ablation variants built from the engine's own modules.

* generalization-only (DeepSDF-style): the engine's model with ``detail=False``;
* grid-only (overfitting-only): one dense shared feature grid read by the detail MLP, no coarse
  branch, trained on every sample;
* no band sampling (ablation): our model with the detail grid stored at *every* lattice node and
  the detail branch trained on all samples, far field included (what the paper's sampling
  strategy avoids);
* quadric decimation of the source mesh to a byte budget (fast-simplification).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import fast_simplification
import numpy as np
import torch
from torch import nn

from backend.config import Preset, with_training
from backend.library import Library, ShapeEntry, history_entry
from backend.meshes import Mesh, normalization, validate_mesh
from backend.model import CompactSdf, DetailBranch, ModelConfig
from backend.sampling import ShapeSamples, cached_samples
from backend.train import cap_code_norms, code_regularizer, cosine_decay, sample_pools, schedule, train

#: Bytes of a mesh as stored here: float32 xyz per vertex + int32 triple per face.
VERTEX_BYTES, FACE_BYTES = 12, 12


def generalization_only(preset: Preset) -> Preset:
    """``preset`` without the detail branch and grid: same code size, coarse branch only."""
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
    """f(z, x) = MLP[z, c(x), x] over a feature grid stored at every lattice node (overfitting-only)."""

    def __init__(self, config: ModelConfig, resolution: int) -> None:
        super().__init__()
        self.branch = DetailBranch(dataclasses.replace(config, grid_resolution=resolution))
        self.branch.grid.set_nodes(np.arange(resolution**3))

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.branch(z, x)


class GridOnlyModel(nn.Module):
    """The grid-only baseline shaped like ``CompactSdf`` (``coarse`` field, ``detail=None``), so the
    engine's decoder and ``Library`` byte counts apply unchanged: the grid field plays the coarse
    role and is evaluated everywhere the decoder looks."""

    def __init__(self, config: ModelConfig, resolution: int) -> None:
        super().__init__()
        self.config = dataclasses.replace(config, grid_resolution=resolution, detail=False)
        self.coarse = DenseGridField(config, resolution)
        self.detail = None

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value = self.coarse(z, x)
        return value, value


def grid_only_resolution(shared_grid_rows: int, cap: int) -> int:
    """Dense lattice size holding about as many nodes as our sparse grid (equal grid bytes), ≤ cap."""
    return int(min(cap, max(8, round(shared_grid_rows ** (1 / 3)))))


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
    grid = model.coarse.branch.grid.features
    dense = torch.optim.Adam([{"params": [codes], "lr": cfg.lr_code},
                              {"params": [p for p in model.parameters() if p is not grid], "lr": cfg.lr_network}])
    sparse = torch.optim.SparseAdam([grid], lr=cfg.lr_grid)
    base = [[cfg.lr_code, cfg.lr_network], [cfg.lr_grid]]
    gen = torch.Generator().manual_seed(seed)
    all_rows = torch.arange(len(entries))
    steps, loss = 0, torch.zeros(())
    for _, frac in schedule(cfg.steps, budget_s):
        cosine_decay([dense, sparse], base, frac, cfg.final_lr_fraction)
        bi, pi = band.draw(cfg.band_batch, gen), points.draw(cfg.point_batch, gen)
        x = torch.cat([band.points[bi], points.points[pi]])
        sdf = torch.cat([band.sdf[bi], points.sdf[pi]])
        shape = torch.cat([band.shape[bi], points.shape[pi]])
        loss = (model.coarse(codes[shape], x) - sdf).abs().mean()
        dense.zero_grad(set_to_none=True)
        sparse.zero_grad(set_to_none=True)
        (loss + code_regularizer(codes, all_rows, cfg, frac)).backward()
        dense.step()
        sparse.step()
        cap_code_norms(codes)
        steps += 1
    model.eval()
    spec = dataclasses.replace(with_training(preset, time_budget_s=budget_s), name=f"{preset.name}-grid-only",
                               model=model.config)
    stats = {"steps": steps, "seconds": round(budget_s, 2), "fused_loss": loss.item(), "grid_resolution": resolution}
    return Library(spec, model, codes.detach(), entries, [history_entry("encode", list(shapes), stats)])


def encode_without_band_sampling(shapes: Mapping[str, Mesh], preset: Preset, seed: int,
                                 cache_dir: Path | None) -> Library:
    """Our model trained without the band sampling strategy (ablation).

    The shared grid holds every node of its lattice and the detail phase fits the residual at every
    sample of every shape (band lattice, near, wide and uniform points), so each shape's detail can
    act anywhere in the cube. Everything else (coarse phase, steps, sizes) is ``preset``'s.
    """
    torch.manual_seed(seed)
    entries, samples = prepare_samples(shapes, preset, cache_dir, seed)
    everywhere = [dataclasses.replace(s, near_count=len(s.points)) for s in samples]
    model = CompactSdf(preset.model)
    model.detail.grid.set_nodes(np.arange(preset.model.grid_resolution**3))
    d = preset.model.code_size
    codes = nn.Parameter(torch.randn(len(entries), d, generator=torch.Generator().manual_seed(seed)) / d**0.5)
    model.train()
    stats = train(model, codes, everywhere, preset.train, shape_rows=list(range(len(entries))), seed=seed)
    model.eval()
    spec = dataclasses.replace(preset, name=f"{preset.name}-no-band-sampling")
    return Library(spec, model, codes.detach(), entries,
                   [history_entry("encode", list(shapes), {"coarse_steps": stats.coarse_steps,
                                                           "detail_steps": stats.detail_steps, "seconds": round(stats.seconds, 2)})])
