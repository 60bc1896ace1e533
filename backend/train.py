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

    coarse_steps: int
    detail_steps: int
    seconds: float
    coarse_loss: float
    fused_loss: float


def schedule(steps: int, budget_s: float | None):
    """Yield (step, fraction done): ``steps`` steps, or as many as fit in ``budget_s`` seconds."""
    if budget_s is None:
        yield from ((step, step / steps) for step in range(steps))
        return
    start, step = time.perf_counter(), 0
    while (elapsed := time.perf_counter() - start) < budget_s:
        yield step, elapsed / budget_s
        step += 1


def cosine_decay(optimizers: list[torch.optim.Optimizer], base: list[list[float]], frac: float, floor: float) -> None:
    decay = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac))
    for opt, lrs in zip(optimizers, base):
        for group, lr in zip(opt.param_groups, lrs):
            group["lr"] = lr * decay


class SamplePool:
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


def sample_pools(samples: list[ShapeSamples], resolution: int, device: torch.device) -> tuple[SamplePool, SamplePool]:
    """(band-lattice pool, point pool) of all shapes."""
    band = SamplePool([lattice_points(s.band_index, resolution) for s in samples], [s.band_sdf for s in samples], device)
    points = SamplePool([s.points for s in samples], [s.points_sdf for s in samples], device)
    return band, points


def code_regularizer(codes: torch.Tensor, rows: torch.Tensor, config: TrainConfig, frac: float) -> torch.Tensor:
    """The paper's small penalty on mean code norm, ramped in over the first tenth of training."""
    return config.code_regularization * min(1.0, 10 * frac) * codes[rows].norm(dim=1).mean()


def cap_code_norms(codes: torch.Tensor) -> None:
    """Scale every code longer than 1 back to norm 1, in place (as the paper does)."""
    with torch.no_grad():
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
    band, points = sample_pools(samples, model.config.grid_resolution, device)
    detail_steps = config.detail_steps if model.detail is not None else 0
    budgets = _phase_budgets(config.time_budget_s, config.steps, detail_steps)
    total = 1000 if budgets[0] is not None else config.steps + detail_steps
    start = time.perf_counter()
    coarse_done = detail_done = 0

    opt = torch.optim.Adam([{"params": [codes], "lr": config.lr_code},
                            {"params": list(model.coarse.parameters()), "lr": config.lr_network}])
    base = [[g["lr"] for g in opt.param_groups]]
    coarse_loss = torch.zeros(())
    for step, frac in schedule(config.steps, budgets[0]):
        cosine_decay([opt], base, frac, config.final_lr_fraction)
        coarse_done += 1
        bi, pi = band.draw(config.band_batch, gen), points.draw(config.point_batch, gen)
        x = torch.cat([band.points[bi], points.points[pi]])
        sdf = torch.cat([band.sdf[bi], points.sdf[pi]])
        shapes = torch.cat([band.shape[bi], points.shape[pi]])
        coarse_loss = (model.coarse(codes[rows[shapes]], x) - sdf).abs().mean()
        loss = coarse_loss + code_regularizer(codes, rows, config, frac)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        codes.grad *= mask
        opt.step()
        cap_code_norms(codes)
        if step % 10 == 0:
            done = int(frac * config.steps / (config.steps + detail_steps) * total) if budgets[0] else step + 1
            reporter.report("training coarse", done, total, coarse_loss.item())

    fused_loss = coarse_loss.item()
    if model.detail is not None:
        detail_done, fused_loss = _detail_phase(model, codes.detach()[rows], samples, config, gen,
                                                reporter, total, budgets[1])
    reporter.report("training detail", total, total, fused_loss)
    return TrainStats(coarse_done, detail_done, time.perf_counter() - start, coarse_loss.item(), fused_loss)


def _phase_budgets(budget_s: float | None, coarse_steps: int, detail_steps: int) -> tuple[float | None, float | None]:
    """Split a wall-clock budget between the phases in proportion to their step counts."""
    if budget_s is None:
        return None, None
    share = coarse_steps / (coarse_steps + detail_steps)
    return budget_s * share, budget_s * (1 - share)


@torch.no_grad()
def _coarse_at(model: CompactSdf, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.coarse(z.expand(len(c), -1), c) for c in x.split(_CHUNK)]) if len(x) else x[:, 0]


class _DetailSet:
    """Detail samples of one kind with precomputed grid rows/weights and the coarse residual."""

    def __init__(self, z_index: torch.Tensor, x: torch.Tensor, residual: torch.Tensor, rows: torch.Tensor,
                 weights: torch.Tensor) -> None:
        self.z_index, self.x, self.residual, self.rows, self.weights = z_index, x, residual, rows, weights
        self.order, self.cursor = torch.zeros(0, dtype=torch.int64), 0

    def draw(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """The next n samples of a random permutation: every sample is visited equally often."""
        if self.cursor + n > len(self.order):
            self.order, self.cursor = torch.randperm(len(self.x), generator=gen, device=self.x.device), 0
        self.cursor += n
        return self.order[self.cursor - n : self.cursor]


def _detail_sets(model: CompactSdf, z: torch.Tensor, samples: list[ShapeSamples], reporter: Reporter) -> tuple[_DetailSet, _DetailSet]:
    """(band-lattice nodes, near-surface points) of all shapes, ready for detail steps.

    A lattice node reads only its own row (trilinear weights are one-hot there), which makes
    a node sample 8 times cheaper than an off-lattice point.
    """
    grid, res, device = model.detail.grid, model.config.grid_resolution, z.device
    parts: dict[str, list[list[torch.Tensor]]] = {"nodes": [], "near": []}
    for i, s in enumerate(samples):
        reporter.check()
        nodes = torch.as_tensor(s.band_index).to(device)
        for key, x, sdf in (("nodes", torch.as_tensor(lattice_points(s.band_index, res)), s.band_sdf),
                            ("near", torch.as_tensor(s.points[: s.near_count]), s.points_sdf[: s.near_count])):
            x = x.to(device)
            if key == "nodes":
                rows, weights = grid.node_rows(nodes), torch.ones(len(x), 1, device=device)
            else:
                rows, weights = grid.corners(x)
            residual = torch.as_tensor(sdf).to(device) - _coarse_at(model, z[i : i + 1], x)
            parts[key].append([torch.full((len(x),), i, dtype=torch.int64, device=device), x, residual, rows, weights])
    return tuple(_DetailSet(*(torch.cat(col) for col in zip(*parts[k]))) for k in ("nodes", "near"))  # type: ignore[return-value]


def _detail_phase(model: CompactSdf, z: torch.Tensor, samples: list[ShapeSamples], config: TrainConfig,
                  gen: torch.Generator, reporter: Reporter, total: int, budget_s: float | None) -> tuple[int, float]:
    """Train the detail MLP and grid on the residual of the frozen coarse branch; (steps, loss).

    Each batch is 7/8 band-lattice nodes (what decoding at the grid's resolution reads) and 1/8
    near-surface points between nodes (what other resolutions read).
    """
    detail = model.detail
    sets = _detail_sets(model, z, samples, reporter)
    sizes = (config.detail_batch * 7 // 8, config.detail_batch // 8)
    grid = detail.grid.features
    dense = torch.optim.Adam([p for p in detail.parameters() if p is not grid], lr=config.lr_network)
    sparse = torch.optim.SparseAdam([grid], lr=config.lr_grid)
    base = [[config.lr_network], [config.lr_grid]]
    loss, steps_done = torch.zeros(()), 0
    share = config.steps / (config.steps + config.detail_steps)
    for step, frac in schedule(config.detail_steps, budget_s):
        cosine_decay([dense, sparse], base, frac, config.final_lr_fraction)
        steps_done += 1
        loss = 0.0
        for part, n in zip(sets, sizes):
            i = part.draw(n, gen)
            pred = detail.from_lookup(z[part.z_index[i]], part.x[i], *detail.grid.lookup(part.rows[i], part.weights[i]))
            loss = loss + (pred - part.residual[i]).abs().sum() / config.detail_batch
        dense.zero_grad(set_to_none=True)
        sparse.zero_grad(set_to_none=True)
        loss.backward()
        dense.step()
        sparse.step()
        if step % 10 == 0:
            done = int((share + (1 - share) * frac) * total) if budget_s else config.steps + step + 1
            reporter.report("training detail", done, total, loss.item())
    return steps_done, loss.item()


def fit_code(model: CompactSdf, samples: ShapeSamples, config: TrainConfig, init: torch.Tensor, *, steps: int,
             seed: int = 0, reporter: Reporter | None = None) -> torch.Tensor:
    """Optimise one code (1, D) for an unseen shape with every shared weight frozen."""
    reporter = reporter or Reporter()
    device = init.device
    gen = torch.Generator(device=device).manual_seed(seed)
    band, points = sample_pools([samples], model.config.grid_resolution, device)
    code = torch.nn.Parameter(init.clone())
    opt = torch.optim.Adam([code], lr=config.lr_invert)
    model.requires_grad_(False)
    try:
        for step in range(steps):
            cosine_decay([opt], [[config.lr_invert]], step / steps, config.final_lr_fraction)
            bi, pi = band.draw(config.band_batch // 4, gen), points.draw(config.point_batch // 4, gen)
            x = torch.cat([band.points[bi], points.points[pi]])
            sdf = torch.cat([band.sdf[bi], points.sdf[pi]])
            coarse, fused = model(code.expand(len(x), -1), x)
            loss = (coarse - sdf).abs().mean() + (fused - sdf).abs().mean() + code_regularizer(code, torch.zeros(1, dtype=torch.int64), config, 1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            cap_code_norms(code)
            if step % 10 == 0 or step == steps - 1:
                reporter.report("inverting", step + 1, steps, loss.item())
    finally:
        model.requires_grad_(True)
    return code.detach()
