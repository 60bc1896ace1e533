"""Ground-truth signed distances and the training samples of DESIGN §1.

Per shape (in normalised coordinates) there are two sets:

* the **band set**: every node of the fine lattice (the detail grid's lattice) within
  ``band_cells`` voxels of the surface, with its exact signed distance;
* the **point set**: surface points jittered by a wide and a narrow Gaussian, plus uniform points
  in the cube. The coarse branch learns from all of it, which keeps far-field signs right.

Signs come from the fast generalised winding number, so open or slightly broken meshes still get
a sensible inside.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..atomic_io import atomic_write
from ..config import SampleConfig
from ..errors import BadMeshError
from ..lifecycle import exit_with_parent
from .meshes import Mesh
from ..progress import Reporter

_CHUNK = 262_144


def signed_distance(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Exact distance to the mesh, negative inside (fast winding number sign); float32 (n,).

    libigl's fast-winding-number ``signed_distance`` scales the distance by ``1 - 2|w|`` with an
    approximate winding number ``w`` (up to ~1 % off), so only its sign is kept; the magnitude is
    the distance to the returned closest point.
    """
    import igl

    V = np.ascontiguousarray(vertices, dtype=np.float64)
    F = np.ascontiguousarray(faces, dtype=np.int64)
    P = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, 3)
    out = np.empty(len(P), dtype=np.float32)
    for start in range(0, len(P), _CHUNK):
        chunk = P[start : start + _CHUNK]
        s, _, closest, _ = igl.signed_distance(chunk, V, F, sign_type=igl.SIGNED_DISTANCE_TYPE_FAST_WINDING_NUMBER)
        out[start : start + _CHUNK] = np.sign(s) * np.linalg.norm(chunk - closest, axis=1)
    return out


def lattice_spacing(resolution: int) -> float:
    """Spacing of the lattice of ``resolution`` points per axis over [-1, 1]."""
    return 2.0 / (resolution - 1)


def lattice_points(index: np.ndarray, resolution: int) -> np.ndarray:
    """Positions (k, 3) float32 of linear lattice indices (x slowest, z fastest)."""
    ijk = np.stack(np.unravel_index(index, (resolution,) * 3), axis=1)
    return (ijk * lattice_spacing(resolution) - 1.0).astype(np.float32)


@dataclass
class LatticeBand:
    """Lattice nodes near a surface: linear ``index`` (k,) int64 and exact ``sdf`` (k,) float32."""

    index: np.ndarray
    sdf: np.ndarray


def band_lattice(vertices: np.ndarray, faces: np.ndarray, resolution: int, half_width: float, stride: int = 8) -> LatticeBand:
    """All nodes of the ``resolution``^3 lattice with |sdf| <= half_width (absolute units).

    Coarse to fine: the SDF on every ``stride``-th node bounds where the band can be, so only
    nodes of coarse cells that can reach the band are evaluated exactly.
    """
    h = lattice_spacing(resolution)
    n_coarse = (resolution - 1) // stride + 2
    axis = np.arange(n_coarse) * stride
    coarse = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    sdf_coarse = signed_distance(vertices, faces, coarse * h - 1.0)
    reach = half_width + stride * h * np.sqrt(3) / 2
    near = coarse[np.abs(sdf_coarse) <= reach]
    offsets = np.arange(-(stride // 2), stride - stride // 2)
    cube = np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij"), axis=-1).reshape(-1, 3)
    ijk = (near[:, None, :] + cube[None]).reshape(-1, 3)
    ijk = ijk[np.all((ijk >= 0) & (ijk < resolution), axis=1)]
    index = np.ravel_multi_index(ijk.T, (resolution,) * 3)
    sdf = signed_distance(vertices, faces, lattice_points(index, resolution))
    keep = np.abs(sdf) <= half_width
    order = np.argsort(index[keep])
    return LatticeBand(index=index[keep][order], sdf=sdf[keep][order])


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` points uniformly distributed by area on the surface; float64 (count, 3)."""
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    face = rng.choice(len(faces), size=count, p=area / area.sum())
    u, v = rng.random(count), rng.random(count)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[face]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


@dataclass
class ShapeSamples:
    """Training samples of one shape in normalised coordinates (see module docstring)."""

    band_index: np.ndarray  #: (k,) int64 linear lattice indices at SampleConfig.grid_resolution
    band_sdf: np.ndarray  #: (k,) float32
    points: np.ndarray  #: (p, 3) float32: narrow jitter, then wide jitter, then uniform
    points_sdf: np.ndarray  #: (p,) float32
    near_count: int  #: the first near_count points are the narrow-jitter ones


def sample_shape(normalized: Mesh, config: SampleConfig, seed: int = 0) -> ShapeSamples:
    """Draw the band set and the point set of one normalised mesh."""
    rng = np.random.default_rng(seed)
    V, F = normalized.vertices, normalized.faces
    h = lattice_spacing(config.grid_resolution)
    band = band_lattice(V, F, config.grid_resolution, config.band_cells * h)
    near = sample_surface(V, F, config.surface_points, rng) + rng.normal(0, config.near_sigma_cells * h, (config.surface_points, 3))
    wide = sample_surface(V, F, config.wide_points, rng) + rng.normal(0, config.wide_sigma, (config.wide_points, 3))
    uniform = rng.uniform(-1, 1, (config.uniform_points, 3))
    points = np.clip(np.concatenate([near, wide, uniform]), -1, 1).astype(np.float32)
    return ShapeSamples(band.index, band.sdf, points, signed_distance(V, F, points), len(near))


def cached_samples(normalized: Mesh, config: SampleConfig, cache_dir: Path | None, seed: int = 0) -> ShapeSamples:
    """sample_shape, memoised on disk by mesh content hash, config and seed (plain .npz, no pickle)."""
    if cache_dir is None:
        return sample_shape(normalized, config, seed)
    path = Path(cache_dir) / f"{normalized.content_hash()[:24]}-{config.key()}-{seed}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                return ShapeSamples(
                    data["band_index"], data["band_sdf"], data["points"], data["points_sdf"], int(data["near_count"])
                )
        except (OSError, KeyError, ValueError):
            path.unlink(missing_ok=True)  # a corrupt cache entry is resampled, never trusted
    samples = sample_shape(normalized, config, seed)
    arrays = asdict(samples)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a handle: np.savez would add ".npz" to a temporary file's name
            np.savez(handle, **arrays)

    # Atomic, under a name of its own per process (two processes may sample one mesh); a failed
    # write (a full disk) removes its temporary file.
    atomic_write(path, write)
    return samples


def default_workers(shapes: int) -> int:
    """Sampling processes for ``shapes`` shapes: one per core this process may use (shared with the
    other processes of a torchrun job on this node), at most one per shape."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(shapes, cores // max(1, per_node)))


def _sample_one(job: tuple[int, Mesh, SampleConfig, Path | None, int]) -> tuple[int, ShapeSamples]:
    index, mesh, config, cache_dir, seed = job
    return index, cached_samples(mesh, config, cache_dir, seed)


def sample_shapes(meshes: list[Mesh], config: SampleConfig, cache_dir: Path | None, seed: int = 0, *,
                  workers: int | None = None, reporter: Reporter | None = None,
                  names: list[str] | None = None) -> list[ShapeSamples]:
    """``cached_samples`` of every normalised mesh, on ``workers`` processes (default: one per core).

    Each shape's samples depend only on its mesh, ``config`` and ``seed``, so the result is the
    same bit for bit whatever the number of workers. ``reporter`` gets a report as each shape
    finishes and can cancel (the pool is terminated at once).
    """
    names = names or [f"shape {i + 1}" for i in range(len(meshes))]
    jobs = [(i, m, config, cache_dir, seed) for i, m in enumerate(meshes)]
    return _in_processes(_sample_one, jobs, workers, reporter or Reporter(), "sampling", names)


@dataclass
class BlendSet:
    """Points of the shapes' point sets with the exact distance of *every* shape of the collection
    there, so the coarse branch can be taught blends of two shapes against their two true fields."""

    points: list[np.ndarray]  #: per sample set, (k, 3) float32
    sdf: list[np.ndarray]  #: per sample set, (k, shapes) float32: column j = distance to shape j


#: Most (points x shapes) distances a BlendSet holds (64 MiB): beyond it fewer points per shape.
BLEND_TABLE_CAP = 1 << 24


def _distances_to(job: tuple[int, Mesh, np.ndarray]) -> tuple[int, np.ndarray]:
    index, mesh, points = job
    return index, signed_distance(mesh.vertices, mesh.faces, points)


def blend_set(samples: list[ShapeSamples], meshes: list[Mesh], per_shape: int, seed: int = 0, *,
              workers: int | None = None, reporter: Reporter | None = None,
              names: list[str] | None = None) -> BlendSet:
    """A BlendSet of up to ``per_shape`` random points of each sample set, with the distance to each
    of ``meshes`` (the whole collection, normalised; a sample set's own shape among them), fewer
    points when the table would pass BLEND_TABLE_CAP. Computed on ``workers`` processes, one job per
    mesh; the result depends only on the inputs and ``seed``."""
    per_shape = max(1, min(per_shape, BLEND_TABLE_CAP // (len(samples) * len(meshes))))
    rng = np.random.default_rng(seed)
    picks = [rng.choice(len(s.points), min(per_shape, len(s.points)), replace=False) for s in samples]
    points = [s.points[p] for s, p in zip(samples, picks)]
    names = names or [f"shape {j + 1}" for j in range(len(meshes))]
    flat = np.concatenate(points)
    jobs = [(j, m, flat) for j, m in enumerate(meshes)]
    columns = np.stack(_in_processes(_distances_to, jobs, workers, reporter or Reporter(), "blend targets", names), 1)
    return BlendSet(points, np.split(columns, np.cumsum([len(p) for p in points])[:-1]))


def _in_processes(work: Callable[[tuple], tuple[int, object]], jobs: list[tuple], workers: int | None,
                  reporter: Reporter, stage: str, names: list[str]) -> list:
    """``work(job)`` -> (index, result) for every job (job[0] is its index), on ``workers`` spawned
    processes (default one per core); results in job order. ``reporter`` hears of each finished
    job and can cancel: the pool is terminated at once, not when the running jobs end."""
    workers = default_workers(len(jobs)) if workers is None else max(1, min(workers, len(jobs)))
    out: list = [None] * len(jobs)
    if workers == 1:
        for job in jobs:
            reporter.report(stage, job[0], len(jobs), message=f"{stage}: {names[job[0]]}")
            out[job[0]] = work(job)[1]
        return out
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    reporter.report(stage, 0, len(jobs), message=f"{stage}: {len(jobs)} shapes on {workers} processes")
    # A worker whose parent is killed (kill -9, a crash, Blender killed under the worker) ends too.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=exit_with_parent)
    try:
        pending = {pool.submit(work, job) for job in jobs}
        while pending:
            reporter.check()
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            for future in done:
                index, result = future.result()
                out[index] = result
                reporter.report(stage, len(jobs) - len(pending), len(jobs), message=f"{stage}: {names[index]} done")
    except BaseException as exc:  # cancelled or failed: stop the other shapes now, not when they finish
        for process in list((getattr(pool, "_processes", None) or {}).values()):  # Python 3.14: terminate_workers()
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        if isinstance(exc, BrokenProcessPool):
            raise BadMeshError(f"a {stage} process died (out of memory on a very large mesh?); "
                               "try --sampling-workers 1 or simplify the mesh") from exc
        raise
    pool.shutdown(wait=True)
    return out
