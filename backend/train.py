"""Auto-decoder training (DESIGN §1), staged for CPU throughput.

1. **Coarse phase**: codes and the coarse branch learn from every sample (band nodes, jittered
   surface points, uniform points), with the paper's code regulariser.
2. **Detail phase**: codes and the coarse branch are frozen, their prediction is computed once
   at every detail sample, and the detail MLP and shared grid learn the residual with large
   batches. A detail step costs no coarse evaluation, so each grid node is visited many times
   more per second than in joint training; the grid gets sparse gradients (SparseAdam touches
   only the rows a batch used).

Inverting an unseen shape optimises only its code through both branches (``fit_code``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from .config import TrainConfig
from .model import CompactSdf
from .progress import Reporter
from .sampling import ShapeSamples, lattice_points

_CHUNK = 65_536


@dataclass
class TrainStats:
    """What a training run did."""

    steps: int
    seconds: float
    coarse_loss: float
    fused_loss: float


def _cosine(optimizers: list[torch.optim.Optimizer], base: list[list[float]], frac: float, floor: float) -> None:
    decay = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac))
    for opt, lrs in zip(optimizers, base):
        for group, lr in zip(opt.param_groups, lrs):
            group["lr"] = lr * decay


class _Pool:
    """Flat samples of many shapes, drawn with shapes picked uniformly at random."""

    def __init__(self, points: list[np.ndarray], sdf: list[np.ndarray], device: torch.device) -> None:
        self.points = torch.as_tensor(np.concatenate(points)).to(device)
        self.sdf = torch.as_tensor(np.concatenate(sdf)).to(device)
        count = torch.tensor([len(p) for p in points], dtype=torch.int64, device=device)
        self.count, self.start = count, torch.cumsum(count, 0) - count
        self.shape = torch.repeat_interleave(torch.arange(len(points), device=device), count)

    def draw(self, n: int, gen: torch.Generator) -> torch.Tensor:
        shapes = torch.randint(len(self.count), (n,), generator=gen, device=self.count.device)
        u = torch.rand(n, generator=gen, device=self.count.device)
        return self.start[shapes] + (u * self.count[shapes]).long().clamp_max(self.count[shapes] - 1)


def _pools(samples: list[ShapeSamples], resolution: int, device: torch.device) -> tuple[_Pool, _Pool]:
    """(band-lattice pool, point pool) of all shapes."""
    band = _Pool([lattice_points(s.band_index, resolution) for s in samples], [s.band_sdf for s in samples], device)
    points = _Pool([s.points for s in samples], [s.points_sdf for s in samples], device)
    return band, points


def _code_loss(codes: torch.Tensor, rows: torch.Tensor, config: TrainConfig, frac: float) -> torch.Tensor:
    return config.code_regularization * min(1.0, 10 * frac) * codes[rows].norm(dim=1).mean()


def _cap_norms(codes: torch.Tensor) -> None:
    with torch.no_grad():  # the paper caps code norms at 1
        codes.div_(codes.norm(dim=1, keepdim=True).clamp_min(1.0))


def train(
    model: CompactSdf,
    codes: torch.nn.Parameter,
    samples: list[ShapeSamples],
    config: TrainConfig,
    *,
    shape_rows: list[int],
    trainable_rows: list[int] | None = None,
    seed: int = 0,
    reporter: Reporter | None = None,
) -> TrainStats:
    """Fit ``samples[i]`` with code row ``shape_rows[i]``: coarse phase, then detail phase.

    Only ``trainable_rows`` of the codes move (default: all of ``shape_rows``).
    """
    reporter = reporter or Reporter()
    device = codes.device
    gen = torch.Generator(device=device).manual_seed(seed)
    rows = torch.tensor(shape_rows, dtype=torch.int64, device=device)
    mask = torch.zeros(len(codes), 1, device=device)
    mask[shape_rows if trainable_rows is None else trainable_rows] = 1
    band, points = _pools(samples, model.config.grid_resolution, device)
    total = config.steps + (config.detail_steps if model.detail is not None else 0)
    start = time.perf_counter()

    opt = torch.optim.Adam([{"params": [codes], "lr": config.lr_code},
                            {"params": list(model.coarse.parameters()), "lr": config.lr_network}])
    base = [[g["lr"] for g in opt.param_groups]]
    coarse_loss = torch.zeros(())
    for step in range(config.steps):
        frac = step / config.steps
        _cosine([opt], base, frac, config.final_lr_fraction)
        bi, pi = band.draw(config.band_batch, gen), points.draw(config.point_batch, gen)
        x = torch.cat([band.points[bi], points.points[pi]])
        sdf = torch.cat([band.sdf[bi], points.sdf[pi]])
        shapes = torch.cat([band.shape[bi], points.shape[pi]])
        coarse_loss = (model.coarse(codes[rows[shapes]], x) - sdf).abs().mean()
        loss = coarse_loss + _code_loss(codes, rows, config, frac)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        codes.grad *= mask
        opt.step()
        _cap_norms(codes)
        if step % 10 == 0 or step == config.steps - 1:
            reporter.report("training coarse", step + 1, total, coarse_loss.item())

    fused_loss = coarse_loss
    if model.detail is not None:
        fused_loss = _detail_phase(model, codes.detach()[rows], samples, config, gen, reporter, total)
    return TrainStats(total, time.perf_counter() - start, coarse_loss.item(), float(fused_loss))


@torch.no_grad()
def _coarse_at(model: CompactSdf, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.coarse(z.expand(len(c), -1), c) for c in x.split(_CHUNK)]) if len(x) else x[:, 0]


def _detail_phase(model: CompactSdf, z: torch.Tensor, samples: list[ShapeSamples], config: TrainConfig,
                  gen: torch.Generator, reporter: Reporter, total: int) -> float:
    """Train the detail MLP and grid on the residual of the frozen coarse branch."""
    device = z.device
    res = model.config.grid_resolution
    xs, residual, shape = [], [], []
    for i, s in enumerate(samples):
        reporter.check()
        x = torch.cat([torch.as_tensor(lattice_points(s.band_index, res)), torch.as_tensor(s.points[: s.near_count])]).to(device)
        sdf = torch.cat([torch.as_tensor(s.band_sdf), torch.as_tensor(s.points_sdf[: s.near_count])]).to(device)
        xs.append(x)
        residual.append(sdf - _coarse_at(model, z[i : i + 1], x))
        shape.append(torch.full((len(x),), i, dtype=torch.int64, device=device))
    x_all, r_all, s_all = torch.cat(xs), torch.cat(residual), torch.cat(shape)
    detail = model.detail
    grid = detail.grid.features
    dense = torch.optim.Adam([p for p in detail.parameters() if p is not grid], lr=config.lr_network)
    sparse = torch.optim.SparseAdam([grid], lr=config.lr_grid)
    base = [[config.lr_network], [config.lr_grid]]
    order = torch.randperm(len(x_all), generator=gen, device=device)
    cursor, loss = 0, torch.zeros(())
    for step in range(config.detail_steps):
        _cosine([dense, sparse], base, step / config.detail_steps, config.final_lr_fraction)
        if cursor + config.detail_batch > len(order):  # epochs: every sample is visited equally often
            order, cursor = torch.randperm(len(x_all), generator=gen, device=device), 0
        idx = order[cursor : cursor + config.detail_batch]
        cursor += config.detail_batch
        loss = (detail(z[s_all[idx]], x_all[idx]) - r_all[idx]).abs().mean()
        dense.zero_grad(set_to_none=True)
        sparse.zero_grad(set_to_none=True)
        loss.backward()
        dense.step()
        sparse.step()
        if step % 10 == 0 or step == config.detail_steps - 1:
            reporter.report("training detail", config.steps + step + 1, total, loss.item())
    return loss.item()


def fit_code(model: CompactSdf, samples: ShapeSamples, config: TrainConfig, init: torch.Tensor, *, steps: int,
             seed: int = 0, reporter: Reporter | None = None) -> torch.Tensor:
    """Optimise one code (1, D) for an unseen shape with every shared weight frozen."""
    reporter = reporter or Reporter()
    device = init.device
    gen = torch.Generator(device=device).manual_seed(seed)
    band, points = _pools([samples], model.config.grid_resolution, device)
    code = torch.nn.Parameter(init.clone())
    opt = torch.optim.Adam([code], lr=config.lr_invert)
    model.requires_grad_(False)
    try:
        for step in range(steps):
            _cosine([opt], [[config.lr_invert]], step / steps, config.final_lr_fraction)
            bi, pi = band.draw(config.band_batch // 4, gen), points.draw(config.point_batch // 4, gen)
            x = torch.cat([band.points[bi], points.points[pi]])
            sdf = torch.cat([band.sdf[bi], points.sdf[pi]])
            coarse, fused = model(code.expand(len(x), -1), x)
            loss = (coarse - sdf).abs().mean() + (fused - sdf).abs().mean() + _code_loss(code, torch.zeros(1, dtype=torch.int64), config, 1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            _cap_norms(code)
            if step % 10 == 0 or step == steps - 1:
                reporter.report("inverting", step + 1, steps, loss.item())
    finally:
        model.requires_grad_(True)
    return code.detach()
