"""Auto-decoder training (DESIGN §1), staged for CPU throughput.

1. **Coarse phase**: codes and the coarse branch learn from every sample (band nodes, jittered
   surface points, uniform points), with the paper's code regulariser. A share of each batch
   (``blend_fraction``) is taught at slerp blends of two shapes' codes against the same blend of
   the two shapes' *exact* distances (``sampling.blend_set``), so in-betweens are trained rather
   than left to chance (docs/benchmarks.md).
2. **Detail phase**: each shape's own grid stores the exact distance of its band nodes in feature
   channel 0 (rounded as it will be stored); the other channels and the shared detail MLP learn
   what rounding and reading between nodes lose, with large batches and sparse updates
   (SparseAdam touches only the rows a batch used).

Steps scale with the collection: the coarse phase with the number of shapes, the detail phase
with the number of stored nodes, so every shape gets the same training whatever the library size.
Adding shapes fits each new code with the coarse branch frozen (``fit_code``), then trains only
the new shapes' grids with the detail MLP frozen: the old shapes do not change at all, and the
new ones are as exact inside their bands as shapes trained with the networks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from .checkpoint import Checkpointer, TrainingState
from .codec import DetailCodec
from ..config import TrainConfig
from .distributed import SINGLE, Cluster, sum_gradients, total
from .model import CompactSdf
from ..progress import Reporter
from ..geometry.sampling import BlendSet, ShapeSamples, lattice_points


@dataclass
class TrainingRun:
    """One training run, as its phases share it: its process group (``distributed``), its
    checkpoints and the state it resumes from (``checkpoint``), and the full code table.

    Not to be confused with ``operators/session.py``, the Blender side's open library."""

    cluster: Cluster = SINGLE
    checkpoints: Checkpointer | None = None
    resumed: TrainingState | None = None
    codes: torch.Tensor | None = None
    facts: dict = field(default_factory=dict)  #: carried by every checkpoint (e.g. the coarse phase's results)

    def start(self, phase: str, model: CompactSdf, optimizers: list[torch.optim.Optimizer],
              gen: torch.Generator) -> tuple[int, float]:
        """(steps done, fraction done) of ``phase``: restores model, codes, optimisers and generator
        when the resumed state was saved in this phase, else (0, 0)."""
        state = self.resumed
        if state is None or state.phase != phase:
            return 0, 0.0
        state.load_model(model)
        if self.codes is not None:
            with torch.no_grad():
                self.codes.copy_(state.codes.to(self.codes.device))
        state.load_optimizers(optimizers)
        state.load_generator(gen)
        self.resumed = None
        return state.step, state.fraction

    def step_done(self, phase: str, step: int, fraction: float, model: CompactSdf,
                  optimizers: list[torch.optim.Optimizer], gen: torch.Generator) -> None:
        """Write a checkpoint after ``step`` steps of ``phase`` if one is due."""
        if self.checkpoints is not None and self.codes is not None and self.checkpoints.due():
            self.checkpoints.save(phase, step, fraction, model, self.codes, optimizers, gen, self.facts)


def schedule(steps: int, budget_s: float | None, start: int = 0, fraction: float = 0.0) -> Iterator[tuple[int, float]]:
    """Yield (step, fraction done): ``steps`` steps, or as many as fit in ``budget_s`` seconds,
    beginning after ``start`` steps (``fraction`` of the budget) already done."""
    if budget_s is None:
        yield from ((step, step / steps) for step in range(start, steps))
        return
    start_time, step = time.perf_counter() - fraction * budget_s, start
    while (elapsed := time.perf_counter() - start_time) < budget_s:
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


def code_regularizer(codes: torch.Tensor, config: TrainConfig, frac: float) -> torch.Tensor:
    """The paper's small penalty on mean code norm, ramped in over the first tenth of training."""
    return config.code_regularization * min(1.0, 10 * frac) * codes.norm(dim=1).mean()


def cap_code_norms(codes: torch.Tensor) -> None:
    """Scale every code longer than 1 back to norm 1, in place (as the paper does)."""
    with torch.no_grad():
        codes.div_(codes.norm(dim=1, keepdim=True).clamp_min(1.0))


def slerp_rows(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Row-wise spherical blend of codes a and b (B, D) at t (B,): directions on the sphere, norms
    linear. The batched training twin of the ``slerp`` blend mode (``blend_modes``), kept apart: its
    numerics (angle clamped, no small-angle branch) are what every library was trained with."""
    na, nb = a.norm(dim=1, keepdim=True).clamp_min(1e-12), b.norm(dim=1, keepdim=True).clamp_min(1e-12)
    ua, ub = a / na, b / nb
    theta = torch.acos((ua * ub).sum(1, keepdim=True).clamp(-1 + 1e-6, 1 - 1e-6))
    t = t[:, None]
    direction = (torch.sin((1 - t) * theta) * ua + torch.sin(t * theta) * ub) / torch.sin(theta)
    return direction * ((1 - t) * na + t * nb)


def train_coarse(model: CompactSdf, codes: torch.nn.Parameter, samples: list[ShapeSamples], config: TrainConfig, *,
                 steps: int, budget_s: float | None, gen: torch.Generator, reporter: Reporter,
                 progress: tuple[int, int], rows: list[int] | None = None, blend: BlendSet | None = None,
                 run: TrainingRun | None = None) -> tuple[int, float]:
    """Codes and the coarse branch on every sample; (steps done, loss).

    Sample set ``i`` belongs to code row ``rows[i]`` (default ``i``). In a multi-process run each
    rank passes its own shapes and draws its share of the batch; gradients of the codes and the
    coarse branch are summed over the ranks, so every replica takes the same step.

    With a ``blend`` set (every shape's exact distance at some of each shape's points),
    ``blend_fraction`` of the point batch sits at a random slerp blend of two codes and learns the
    same blend of the two shapes' exact distances, so the space between the codes is trained too.
    """
    run = run or TrainingRun()
    cluster, device = run.cluster, codes.device
    band, points = sample_pools(samples, model.config.grid_resolution, device)
    row_of = torch.as_tensor(rows if rows is not None else range(len(samples)), dtype=torch.int64, device=device)
    share = len(samples) / len(codes)
    band_batch, point_batch = (max(1, round(b * share)) for b in (config.band_batch, config.point_batch))
    global_batch = total(band_batch + point_batch, cluster)
    replicated = [codes, *model.coarse.parameters()]
    opt = torch.optim.Adam([{"params": [codes], "lr": config.lr_code},
                            {"params": list(model.coarse.parameters()), "lr": config.lr_network}])
    base = [[g["lr"] for g in opt.param_groups]]
    blends = SamplePool(blend.points, blend.sdf, device) if blend is not None and len(codes) > 1 else None
    n_blend = min(point_batch - 1, round((band_batch + point_batch) * config.blend_fraction)) if blends else 0
    run.codes = codes
    start, fraction = run.start("coarse", model, [opt], gen)
    loss, done = torch.zeros(()), start
    for step, frac in schedule(steps, budget_s, start, fraction):
        cosine_decay([opt], base, frac, config.final_lr_fraction)
        done += 1
        bi, pi = band.draw(band_batch, gen), points.draw(point_batch - n_blend, gen)
        x = torch.cat([band.points[bi], points.points[pi]])
        sdf = torch.cat([band.sdf[bi], points.sdf[pi]])
        z = codes[row_of[torch.cat([band.shape[bi], points.shape[pi]])]]
        if n_blend:
            xb, zb, sdfb = _blend_batch(blends, codes, row_of, n_blend, gen)
            x, z, sdf = torch.cat([x, xb]), torch.cat([z, zb]), torch.cat([sdf, sdfb])
        error = (model.coarse(z, x) - sdf).abs()
        loss = error.mean().detach()
        opt.zero_grad(set_to_none=True)
        (error.sum() / global_batch + code_regularizer(codes, config, frac) / cluster.world_size).backward()
        sum_gradients(replicated, cluster)
        opt.step()
        cap_code_norms(codes)
        if step % 10 == 0:
            reporter.report("training coarse", progress[0] + int(frac * steps), progress[1], loss.item())
            run.step_done("coarse", step + 1, frac, model, [opt], gen)
    return done, loss.item()


def _blend_batch(blends: SamplePool, codes: torch.Tensor, row_of: torch.Tensor, n: int,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` blend samples (points, codes, targets): a point of the blend set, a random partner
    shape and t ~ U(0, 1); the code is the slerp of the two codes at t and the target the same
    blend of the two shapes' exact distances there."""
    i = blends.draw(n, gen)
    own = row_of[blends.shape[i]]
    other = torch.randint(len(codes), (n,), generator=gen, device=codes.device)
    t = torch.rand(n, generator=gen, device=codes.device)
    table = blends.sdf[i]
    target = (1 - t) * table.gather(1, own[:, None])[:, 0] + t * table.gather(1, other[:, None])[:, 0]
    return blends.points[i], slerp_rows(codes[own], codes[other], t), target


def stored_band(samples: ShapeSamples, resolution: int, band_cells: float) -> tuple[np.ndarray, np.ndarray]:
    """(linear indices, exact sdf) of the sample band's nodes within ``band_cells`` voxels: what a shape stores."""
    keep = np.abs(samples.band_sdf) <= band_cells * 2.0 / (resolution - 1)
    return samples.band_index[keep], samples.band_sdf[keep]


class _DetailSet:
    """Detail samples of one kind with precomputed grid rows/weights and exact distances."""

    def __init__(self, z_index: torch.Tensor, x: torch.Tensor, sdf: torch.Tensor, rows: torch.Tensor,
                 weights: torch.Tensor) -> None:
        self.z_index, self.x, self.sdf, self.rows, self.weights = z_index, x, sdf, rows, weights
        self.order, self.cursor = torch.zeros(0, dtype=torch.int64), 0

    def draw(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """The next n samples of a random permutation: every sample is visited equally often."""
        if self.cursor + n > len(self.order):
            self.order, self.cursor = torch.randperm(len(self.x), generator=gen, device=self.x.device), 0
        self.cursor += n
        return self.order[self.cursor - n : self.cursor]


def _detail_sets(model: CompactSdf, samples: list[ShapeSamples], grids: list[int], band_cells: float,
                 reporter: Reporter) -> tuple[_DetailSet, _DetailSet]:
    """(stored nodes, near-surface points) of the shapes with grids ``grids``, ready for detail steps.

    A stored node reads only its own row (trilinear weights are one-hot there), which makes a node
    sample 8 times cheaper than an off-lattice point. Near points outside half the stored band
    (presence below 1/2) are left out: decoding never reads the grid there.
    """
    grid, res, device = model.detail.grid, model.config.grid_resolution, model.detail.out.weight.device
    parts: dict[str, list[list[torch.Tensor]]] = {"nodes": [], "near": []}
    for i, (s, g) in enumerate(zip(samples, grids)):
        reporter.check()
        index, sdf = stored_band(s, res, band_cells)
        near = torch.as_tensor(s.points[: s.near_count]).to(device)
        rows, weights = grid.corners(g, near)
        keep = (weights * (rows > 0)).sum(1) >= 0.5
        kinds = (("nodes", torch.as_tensor(lattice_points(index, res)).to(device), torch.as_tensor(sdf).to(device),
                  grid.rows_at(g, torch.as_tensor(index).to(device))[:, None], torch.ones(len(index), 1, device=device)),
                 ("near", near[keep], torch.as_tensor(s.points_sdf[: s.near_count]).to(device)[keep], rows[keep], weights[keep]))
        for key, x, target, r, w in kinds:
            parts[key].append([torch.full((len(x),), i, dtype=torch.int64, device=device), x, target, r, w])
    return tuple(_DetailSet(*(torch.cat(col) for col in zip(*parts[k]))) for k in ("nodes", "near"))  # type: ignore[return-value]


def _store_first_channel(model: CompactSdf, nodes: _DetailSet, grids: list[int], codec: DetailCodec) -> None:
    """Channel 0 of every node := its exact distance, rounded as ``codec`` will store it."""
    grid = model.detail.grid
    with torch.no_grad():
        grid.features[nodes.rows[:, 0], 0] = nodes.sdf / model.detail.skip_gain
        for g in grids:
            rows = grid.shape_features(g)
            rows[:, :1] = codec.round_trip(rows[:, :1]).to(rows.device)


def _frozen_first_channel(grad: torch.Tensor) -> torch.Tensor:
    """A sparse gradient with channel 0 zeroed (channel 0 keeps its stored value)."""
    grad = grad.coalesce()
    values = grad.values().clone()
    values[:, 0] = 0
    return torch.sparse_coo_tensor(grad.indices(), values, grad.shape, check_invariants=False, is_coalesced=True)


def train_detail(model: CompactSdf, z: torch.Tensor, samples: list[ShapeSamples], grids: list[int], config: TrainConfig,
                 *, band_cells: float, codec: DetailCodec, train_mlp: bool, budget_s: float | None, gen: torch.Generator,
                 reporter: Reporter, progress: tuple[int, int], run: TrainingRun | None = None) -> tuple[int, float]:
    """Fit the grids ``grids`` (and the detail MLP if ``train_mlp``) to the exact distance in each stored band.

    Channel 0 of every node is set to its distance, already rounded as ``codec`` stores it, and kept;
    the other channels and the MLP learn what that rounding and trilinear reading between nodes
    lose. ``z`` holds the frozen code of each sample set. Each batch is 7/8 stored nodes (what
    decoding at the grid's resolution reads) and 1/8 near-surface points between nodes (what
    other resolutions read). In a multi-process run each rank trains the grids of its own shapes
    on its share of the batch (by stored nodes) and the MLP's gradients are summed over the ranks.
    The trained grids are left rounded as ``codec`` stores them, so a fresh library equals its
    file. Returns (steps done, last loss).
    """
    run = run or TrainingRun()
    cluster, detail = run.cluster, model.detail
    sets = _detail_sets(model, samples, grids, band_cells, reporter)
    _store_first_channel(model, sets[0], grids, codec)
    nodes = len(sets[0].x)
    all_nodes = total(nodes, cluster)
    steps = config.detail_steps_for(int(all_nodes))
    share = nodes / max(all_nodes, 1.0)
    sizes = (round(config.detail_batch * 7 // 8 * share), round(config.detail_batch // 8 * share))
    global_batch = max(total(sum(sizes), cluster), 1.0)
    features = detail.grid.features
    mlp = [p for p in detail.parameters() if p is not features]
    hook = features.register_hook(_frozen_first_channel)
    optimizers: list[torch.optim.Optimizer] = [torch.optim.SparseAdam([features], lr=config.lr_grid)]
    base = [[config.lr_grid]]
    if train_mlp:
        optimizers.append(torch.optim.Adam(mlp, lr=config.lr_network))
        base.append([config.lr_network])
    start, fraction = run.start("detail", model, optimizers, gen)
    loss, done = torch.zeros(()), start
    try:
        for step, frac in schedule(steps, budget_s, start, fraction):
            cosine_decay(optimizers, base, frac, config.final_lr_fraction)
            done += 1
            error = torch.zeros(())
            for part, n in zip(sets, sizes):
                i = part.draw(min(n, len(part.x)), gen) if len(part.x) else part.order[:0]
                feats, _ = detail.grid.lookup(part.rows[i], part.weights[i])
                pred = detail.from_features(z[part.z_index[i]], part.x[i], feats)
                error = error + (pred - part.sdf[i]).abs().sum()
            loss = error.detach() / max(sum(sizes), 1)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            (error / global_batch).backward()
            if train_mlp:
                sum_gradients(mlp, cluster)
            for opt in optimizers:
                opt.step()
            if step % 10 == 0:
                reporter.report("training detail", progress[0] + int(frac * (progress[1] - progress[0])), progress[1], loss.item())
                run.step_done("detail", step + 1, frac, model, optimizers, gen)
    finally:
        hook.remove()
    with torch.no_grad():
        for g in grids:
            rows = detail.grid.shape_features(g)
            rows.copy_(codec.round_trip(rows).to(rows.device))
    return done, loss.item()


def fit_code(model: CompactSdf, samples: ShapeSamples, config: TrainConfig, init: torch.Tensor, *, steps: int,
             gen: torch.Generator, reporter: Reporter | None = None) -> tuple[torch.Tensor, float]:
    """Optimise one code (1, D) for a new shape through the frozen coarse branch; (code, last loss)."""
    reporter = reporter or Reporter()
    band, points = sample_pools([samples], model.config.grid_resolution, init.device)
    code = torch.nn.Parameter(init.clone())
    opt = torch.optim.Adam([code], lr=config.lr_invert)
    model.requires_grad_(False)
    loss = torch.zeros(())
    try:
        for step in range(steps):
            cosine_decay([opt], [[config.lr_invert]], step / steps, config.final_lr_fraction)
            bi, pi = band.draw(config.band_batch // 4, gen), points.draw(config.point_batch // 4, gen)
            x = torch.cat([band.points[bi], points.points[pi]])
            sdf = torch.cat([band.sdf[bi], points.sdf[pi]])
            loss = (model.coarse(code.expand(len(x), -1), x) - sdf).abs().mean()
            opt.zero_grad(set_to_none=True)
            (loss + code_regularizer(code, config, 1.0)).backward()
            opt.step()
            cap_code_norms(code)
            if step % 10 == 0 or step == steps - 1:
                reporter.report("fitting code", step + 1, steps, loss.item())
    finally:
        model.requires_grad_(True)
    return code.detach(), loss.item()
