"""The engine's public API on NumPy arrays: encode, decode, interpolate, invert.

Everything the CLI, the Blender worker and the benchmarks do goes through these functions.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .config import Preset, get_preset, with_training
from .decode import DecodedMesh, blend_codes, marching_cubes, sdf_volume
from .device import pick_device
from .errors import BadMeshError, Cancelled, LibraryError
from .library import Library, ShapeEntry, history_entry
from .meshes import Mesh, Normalization, normalization, validate_mesh
from .model import CompactSdf
from .progress import Progress, ProgressCallback, Reporter, StopCallback
from .sampling import ShapeSamples, cached_samples, lattice_points, lattice_spacing
from .train import fit_code, train

__all__ = ["Progress", "Library", "DecodedMesh", "encode", "decode", "interpolate", "invert", "Cancelled"]

DecodeTarget = str | Mapping[str, float] | np.ndarray


def _prepare(shapes: Mapping[str, Mesh], existing: Sequence[str] = ()) -> list[tuple[str, Mesh, Normalization, Mesh]]:
    """Validate names and meshes; (name, mesh, transform, normalised mesh) per shape."""
    if not shapes:
        raise BadMeshError("no shapes to encode")
    prepared = []
    for name, mesh in shapes.items():
        if not isinstance(name, str) or not name.strip():
            raise BadMeshError(f"shape names must be non-empty strings, got {name!r}")
        if name in existing:
            raise BadMeshError(f"a shape named {name!r} is already in the library; pick another name")
        clean = validate_mesh(mesh, name)
        transform = normalization(clean.vertices)
        prepared.append((name, clean, transform, Mesh(transform.apply(clean.vertices), clean.faces)))
    return prepared


def _fit_errors(model: CompactSdf, code: torch.Tensor, samples: ShapeSamples) -> dict:
    """Mean absolute SDF error near the surface and in the far field (normalised units)."""
    with torch.no_grad():
        x = torch.as_tensor(samples.points, device=code.device)
        _, fused = model(code.expand(len(x), -1), x)
        err = (fused.cpu() - torch.as_tensor(samples.points_sdf)).abs().numpy()
    n = samples.near_count
    return {"near_surface_error": float(err[:n].mean()), "far_field_error": float(err[n:].mean())}


def _replay_samples(teacher: Library, row: int, keys: np.ndarray, reporter: Reporter) -> ShapeSamples:
    """Pseudo ground truth for a shape already in a library, from the library itself.

    Used when shapes are added, so the shared networks keep reproducing the old shapes without
    needing their source meshes: the nodes of ``keys`` (the grid after adding, so new nodes near
    an old surface are taught too) near the shape's coarse surface plus uniform points, labelled
    with the unchanged ``teacher``'s fused prediction.
    """
    model, code = teacher.model, teacher.codes[row : row + 1]
    cfg = teacher.preset.sample
    h = lattice_spacing(cfg.grid_resolution)
    rng = np.random.default_rng(row)

    def predict(points: np.ndarray, branch: int) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor(points, device=code.device)
            return torch.cat([model(code.expand(len(c), -1), c)[branch] for c in x.split(65536)]).cpu().numpy() if len(x) else np.zeros(0, np.float32)

    reporter.check()
    band = keys[np.abs(predict(lattice_points(keys, cfg.grid_resolution), 0)) <= cfg.band_cells * h]
    near = lattice_points(band, cfg.grid_resolution)
    near = near[rng.choice(len(near), min(len(near), cfg.surface_points), replace=False)]
    near = np.clip(near + rng.normal(0, h / 2, near.shape), -1, 1).astype(np.float32)
    points = np.concatenate([near, rng.uniform(-1, 1, (cfg.uniform_points, 3)).astype(np.float32)])
    band_points = lattice_points(band, cfg.grid_resolution)
    return ShapeSamples(band, predict(band_points, 1), points, predict(points, 1), len(near))


def encode(
    shapes: Mapping[str, Mesh],
    *,
    preset: str | Preset = "fast",
    steps: int | None = None,
    time_budget_s: float | None = None,
    library: Library | None = None,
    seed: int = 0,
    device: str = "auto",
    on_progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
    cache_dir: str | Path | None = None,
) -> Library:
    """Encode meshes into a new library, or add them to ``library`` (returned as a new object).

    ``preset`` is a preset name or a Preset; ``steps`` or ``time_budget_s`` override its length.

    In add mode the existing shapes keep their codes; the shared networks keep reproducing them
    by training on replayed samples of their current decodes. Raises BadMeshError for unusable
    input and Cancelled when ``should_stop()`` turns true; nothing is written either way.
    """
    reporter = Reporter(on_progress, should_stop)
    torch.manual_seed(seed)
    dev = pick_device(device)
    if library is None:
        spec = with_training(preset if isinstance(preset, Preset) else get_preset(preset), steps=steps, time_budget_s=time_budget_s)
        base = Library(spec, CompactSdf(spec.model), torch.zeros(0, spec.model.code_size), [])
    else:  # the library's own sizes and sampling; only the training length may change
        base = library.copy()
        spec = base.preset = with_training(base.preset, steps=steps, time_budget_s=time_budget_s)
    prepared = _prepare(shapes, base.names)
    samples = []
    for i, (name, _, _, normalized) in enumerate(prepared):
        reporter.report("sampling", i, len(prepared), message=f"sampling {name}")
        samples.append(cached_samples(normalized, spec.sample, Path(cache_dir) if cache_dir else None, seed))
    old_rows = list(range(len(base.shapes)))
    model = base.model
    keys = np.zeros(0, np.int64)
    if model.detail is not None:
        model.detail.grid.add_nodes(np.unique(np.concatenate([s.band_index for s in samples])))
        keys = model.detail.grid.keys.numpy()
    replay = [_replay_samples(library, row, keys, reporter) for row in old_rows] if library is not None else []
    d = spec.model.code_size
    new_codes = torch.randn(len(prepared), d, generator=torch.Generator().manual_seed(seed)) / d**0.5
    codes = torch.nn.Parameter(torch.cat([base.codes.detach().cpu(), new_codes]).to(dev))
    model.to(dev).train()
    new_rows = list(range(len(old_rows), len(old_rows) + len(prepared)))
    stats = train(model, codes, samples + replay, spec.train, shape_rows=new_rows + old_rows, trainable_rows=new_rows,
                  seed=seed, reporter=reporter)
    model.eval()
    entries = list(base.shapes)
    for row, (name, clean, transform, _), s in zip(new_rows, prepared, samples):
        fit = _fit_errors(model, codes[row : row + 1].detach(), s)
        entries.append(ShapeEntry(name, transform, clean.content_hash(), fit))
    kind = "add" if library is not None else "encode"
    history = base.history + [history_entry(kind, [p[0] for p in prepared], {"coarse_steps": stats.coarse_steps,
                              "detail_steps": stats.detail_steps,
                              "seconds": round(stats.seconds, 2), "coarse_loss": stats.coarse_loss,
                              "fused_loss": stats.fused_loss, "device": str(dev)})]
    return Library(spec, model, codes.detach(), entries, history)


def invert(
    library: Library,
    mesh: Mesh,
    name: str,
    *,
    steps: int | None = None,
    seed: int = 0,
    device: str = "auto",
    on_progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
    cache_dir: str | Path | None = None,
) -> Library:
    """Fit a code for an unseen shape with everything shared frozen; returns a new library."""
    reporter = Reporter(on_progress, should_stop)
    dev = pick_device(device)
    (_, clean, transform, normalized), = _prepare({name: mesh}, library.names)
    lib = library.copy()
    samples = cached_samples(normalized, lib.preset.sample, Path(cache_dir) if cache_dir else None, seed)
    if lib.model.detail is not None:  # nodes outside the shared grid cannot be added: it is frozen
        samples.band_index, samples.band_sdf = _known_nodes(lib.model, samples)
    lib.model.to(dev)
    lib.codes = lib.codes.to(dev)
    # Start from the mean of the known codes: a plausible shape rather than noise.
    start_time = time.perf_counter()
    steps = steps or lib.preset.train.invert_steps
    code = fit_code(lib.model, samples, lib.preset.train, lib.codes.mean(0, keepdim=True), steps=steps, seed=seed, reporter=reporter)
    lib.codes = torch.cat([lib.codes, code])
    lib.shapes.append(ShapeEntry(name, transform, clean.content_hash(), _fit_errors(lib.model, code, samples)))
    lib.history.append(history_entry("invert", [name], {"steps": steps, "seconds": round(time.perf_counter() - start_time, 2)}))
    return lib


def _known_nodes(model: CompactSdf, samples: ShapeSamples) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isin(samples.band_index, model.detail.grid.keys.numpy())
    return samples.band_index[keep], samples.band_sdf[keep]


def resolve_code(library: Library, target: DecodeTarget, mode: str = "slerp") -> tuple[torch.Tensor, Normalization]:
    """The code and output transform for a shape name, a {name: weight} blend, or a raw code."""
    if isinstance(target, str):
        row = library.index(target)
        return library.codes[row], library.shapes[row].transform
    if isinstance(target, Mapping):
        if not target:
            raise LibraryError("a blend needs at least one shape")
        rows = [library.index(n) for n in target]
        w = np.asarray(list(target.values()), dtype=np.float64)
        if not np.all(np.isfinite(w)) or w.sum() <= 0 or np.any(w < 0):
            raise ValueError(f"blend weights must be non-negative and sum to more than 0, got {list(w)}")
        w = w / w.sum()
        code = blend_codes(library.codes[rows], w, mode)
        transforms = [library.shapes[r].transform for r in rows]
        center = tuple(float(c) for c in np.einsum("k,kd->d", w, np.array([t.center for t in transforms])))
        scale = float(np.exp(np.dot(w, np.log([t.scale for t in transforms]))))
        return code, Normalization(center, scale)  # type: ignore[arg-type]
    code = torch.as_tensor(np.asarray(target, dtype=np.float32))
    if code.shape != (library.preset.model.code_size,) or not torch.isfinite(code).all():
        raise ValueError(f"a raw code must be {library.preset.model.code_size} finite numbers")
    return code.to(library.codes.device), Normalization((0.0, 0.0, 0.0), 1.0)


def decode(
    library: Library,
    target: DecodeTarget,
    *,
    resolution: int = 256,
    band: float = 3.0,
    mode: str = "slerp",
    device: str | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
) -> DecodedMesh:
    """Decode a shape, a weighted blend of shapes, or a raw code into a mesh.

    Shapes and blends come back in their sources' original units; a raw code in normalised units.
    """
    if not 16 <= resolution <= 1024:
        raise ValueError(f"resolution must be between 16 and 1024, got {resolution}")
    reporter = Reporter(on_progress, should_stop)
    start = time.perf_counter()
    if device is not None:
        library.model.to(pick_device(device))
        library.codes = library.codes.to(pick_device(device))
    code, transform = resolve_code(library, target, mode)
    volume, stats = sdf_volume(library.model, code, resolution, band, reporter=reporter)
    reporter.report("decoding", 3, 3, message="marching cubes")
    V, F, N = marching_cubes(volume)
    stats["seconds"] = round(time.perf_counter() - start, 3)
    return DecodedMesh(transform.invert(V).astype(np.float32), F, N, stats)


def interpolate(
    library: Library,
    names: Sequence[str],
    count: int,
    *,
    mode: str = "slerp",
    resolution: int = 256,
    band: float = 3.0,
    device: str | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
) -> list[DecodedMesh]:
    """``count`` meshes evenly spaced along the path through ``names`` (endpoints included)."""
    if len(names) < 2:
        raise ValueError("interpolation needs at least two shapes")
    if count < 2:
        raise ValueError("count must be at least 2 (the two endpoints)")
    reporter = Reporter(on_progress, should_stop)
    results = []
    for i, t in enumerate(np.linspace(0, len(names) - 1, count)):
        reporter.report("interpolating", i, count, message=f"variant {i + 1} of {count}")
        seg = min(int(t), len(names) - 2)
        f = float(t - seg)
        weights = {names[seg]: 1 - f, names[seg + 1]: f} if names[seg] != names[seg + 1] else {names[seg]: 1.0}
        results.append(decode(library, weights, resolution=resolution, band=band, mode=mode, device=device,
                              should_stop=should_stop))
    return results


# -- Library editing (issue 10): remove, rename, replace. Thin on purpose: the library format ------
# -- rewrite (collection-scale issue) replaces these bodies; keep the signatures. ---------------------


def remove(library: Library, names: Sequence[str]) -> Library:
    """A new library without the shapes ``names`` (the shared networks and grid are kept as they are)."""
    drop = set(names)
    for name in drop:
        library.index(name)  # LibraryError naming the shapes there are
    keep = [row for row, shape in enumerate(library.shapes) if shape.name not in drop]
    lib = library.copy()
    lib.codes = lib.codes[keep]
    lib.shapes = [lib.shapes[row] for row in keep]
    lib.history.append(history_entry("remove", sorted(drop), {}))
    return lib


def rename(library: Library, old: str, new: str) -> Library:
    """A new library in which shape ``old`` is called ``new``."""
    row = library.index(old)
    if not new.strip():
        raise BadMeshError("a shape name must not be empty")
    if new != old and new in library.names:
        raise BadMeshError(f"a shape named {new!r} is already in the library; pick another name")
    lib = library.copy()
    lib.shapes[row].name = new
    lib.history.append(history_entry("rename", [old, new], {}))
    return lib


def replace(library: Library, name: str, mesh: Mesh, **encode_kwargs) -> Library:
    """A new library in which shape ``name`` is re-encoded from ``mesh`` (the others keep their codes)."""
    return encode({name: mesh}, library=remove(library, [name]), **encode_kwargs)
