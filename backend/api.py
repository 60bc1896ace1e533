"""The engine's public API on NumPy arrays: encode, add, remove, rename, replace, decode, interpolate.

Everything the CLI, the Blender worker and the benchmarks do goes through these functions. Every
function that changes a library returns a new Library and leaves its argument untouched.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .config import DecodeConfig, Preset, get_preset, with_training
from .decode import DecodedMesh, blend_codes, blend_volume, coarse_lattice, marching_cubes, shape_volume
from .device import pick_device
from .errors import BadInputError, BadMeshError, Cancelled, LibraryError
from .library import Library, ShapeEntry, history_entry
from .meshes import Mesh, Normalization, normalization, validate_mesh
from .model import CompactSdf
from .names import validate_shape_name
from .progress import Progress, ProgressCallback, Reporter, StopCallback
from .sampling import ShapeSamples, cached_samples
from .storage import round_trip
from .train import fit_code, stored_band, train_coarse, train_detail

__all__ = ["Progress", "Library", "DecodedMesh", "encode", "remove", "rename", "replace", "decode", "interpolate",
           "invert", "code_of", "Cancelled"]

DecodeTarget = str | Mapping[str, float] | np.ndarray
_DECODE = DecodeConfig()


def _prepare(shapes: Mapping[str, Mesh], existing: Sequence[str] = ()) -> list[tuple[str, Mesh, Normalization, Mesh]]:
    """Validate names and meshes; (name, mesh, transform, normalised mesh) per shape."""
    if not shapes:
        raise BadMeshError("no shapes to encode")
    prepared = []
    for name, mesh in shapes.items():
        validate_shape_name(name)
        if name in existing:
            raise BadMeshError(f"a shape named {name!r} is already in the library; pick another name, or replace it")
        clean = validate_mesh(mesh, name)
        transform = normalization(clean.vertices)
        prepared.append((name, clean, transform, Mesh(transform.apply(clean.vertices), clean.faces)))
    return prepared


def _fit_errors(model: CompactSdf, shape: int, code: torch.Tensor, samples: ShapeSamples) -> dict:
    """Mean absolute SDF error near the surface and in the far field (normalised units)."""
    with torch.no_grad():
        x = torch.as_tensor(samples.points, device=code.device)
        _, fused = model(shape, code.expand(len(x), -1), x)
        err = (fused.cpu() - torch.as_tensor(samples.points_sdf)).abs().numpy()
    n = samples.near_count
    return {"near_surface_error": float(err[:n].mean()), "far_field_error": float(err[n:].mean())}


def encode(
    shapes: Mapping[str, Mesh],
    *,
    preset: str | Preset = "fast",
    size: str | None = None,
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

    ``preset`` is a preset name or a Preset, ``size`` one of ``config.SIZES``; ``steps`` or
    ``time_budget_s`` override the training length (by default it grows with the collection).

    Adding keeps every shared weight and every old shape exactly as it was: each new shape gets a
    code fitted through the frozen coarse branch and its own detail grid. Raises BadMeshError for
    unusable input and Cancelled when ``should_stop()`` turns true; nothing is written either way.
    """
    reporter = Reporter(on_progress, should_stop)
    torch.manual_seed(seed)
    dev = pick_device(device)
    if library is None:
        spec = preset if isinstance(preset, Preset) else get_preset(preset, size)
        spec = with_training(spec, steps=steps, time_budget_s=time_budget_s)
        base = Library(spec, CompactSdf(spec.model), torch.zeros(0, spec.model.code_size), [])
    else:  # the library's own sizes and sampling; only the training length may change
        base = library.copy()
        spec = base.preset = with_training(base.preset, steps=steps, time_budget_s=time_budget_s)
    prepared = _prepare(shapes, base.names)
    samples = []
    for i, (name, _, _, normalized) in enumerate(prepared):
        reporter.report("sampling", i, len(prepared), message=f"sampling {name}")
        samples.append(cached_samples(normalized, spec.sample, Path(cache_dir) if cache_dir else None, seed))
    start = time.perf_counter()
    model, gen = base.model.to(dev), torch.Generator(device=dev).manual_seed(seed)
    model.train()
    new_codes, coarse_steps, coarse_loss = _fit_codes(model, base.codes.to(dev), samples, spec, library is not None,
                                                      gen, reporter)
    grids = list(range(len(base.shapes), len(base.shapes) + len(prepared)))
    detail_steps, fused_loss = 0, coarse_loss
    if model.detail is not None:
        detail_steps, fused_loss = _fit_grids(model, new_codes, samples, grids, spec, library is None, gen, reporter)
    model.eval()
    codes = torch.cat([base.codes.to(dev), new_codes])
    entries = list(base.shapes)
    for grid, (name, clean, transform, _), s in zip(grids, prepared, samples):
        entries.append(ShapeEntry(name, transform, clean.content_hash(), _fit_errors(model, grid, codes[grid : grid + 1], s)))
    kind = "add" if library is not None else "encode"
    history = base.history + [history_entry(kind, [p[0] for p in prepared], {
        "coarse_steps": coarse_steps, "detail_steps": detail_steps, "seconds": round(time.perf_counter() - start, 2),
        "coarse_loss": coarse_loss, "fused_loss": fused_loss, "device": str(dev)})]
    return Library(spec, model, codes.detach(), entries, history)


def _fit_codes(model: CompactSdf, old_codes: torch.Tensor, samples: list[ShapeSamples], spec: Preset, adding: bool,
               gen: torch.Generator, reporter: Reporter) -> tuple[torch.Tensor, int, float]:
    """Codes of the new shapes: trained with the coarse branch (new library) or through it, frozen (add)."""
    cfg, d, dev = spec.train, spec.model.code_size, old_codes.device
    if not adding:
        steps = cfg.coarse_steps_for(len(samples))
        init = torch.Generator().manual_seed(gen.initial_seed())
        codes = torch.nn.Parameter((torch.randn(len(samples), d, generator=init) / d**0.5).to(dev))
        budget = None if cfg.time_budget_s is None else cfg.time_budget_s / 2
        done, loss = train_coarse(model, codes, samples, cfg, steps=steps, budget_s=budget, gen=gen, reporter=reporter,
                                  progress=(0, 2 * steps))
        return codes.detach(), done, loss
    init = old_codes.mean(0, keepdim=True) if len(old_codes) else torch.zeros(1, d, device=dev)
    fitted = [fit_code(model, s, cfg, init, steps=cfg.invert_steps, gen=gen, reporter=reporter) for s in samples]
    return torch.cat([c for c, _ in fitted]), cfg.invert_steps * len(samples), float(np.mean([loss for _, loss in fitted]))


def _fit_grids(model: CompactSdf, codes: torch.Tensor, samples: list[ShapeSamples], grids: list[int], spec: Preset,
               train_mlp: bool, gen: torch.Generator, reporter: Reporter) -> tuple[int, float]:
    """Give each new shape its own grid over its stored band, train it, and round it as it will be stored."""
    grid, storage = model.detail.grid, spec.storage
    keys, features = grid.all_shapes()
    keys += [stored_band(s, spec.model.grid_resolution, storage.band_cells)[0] for s in samples]
    grid.set_shapes(keys, features + [None] * len(samples))
    cfg = spec.train
    budget = None if cfg.time_budget_s is None else cfg.time_budget_s / 2
    total = cfg.coarse_steps_for(len(samples))
    done, loss = train_detail(model, codes, samples, grids, cfg, band_cells=storage.band_cells,
                              feature_bits=storage.feature_bits, train_mlp=train_mlp, budget_s=budget, gen=gen,
                              reporter=reporter, progress=(total, 2 * total))
    with torch.no_grad():
        for g in grids:
            rows = grid.shape_features(g)
            rows.copy_(round_trip(rows, storage.feature_bits).to(rows.device))
    return done, loss


def invert(library: Library, mesh: Mesh, name: str, **kwargs: object) -> Library:
    """Add one unseen mesh with everything shared frozen (the same as ``encode(..., library=library)``)."""
    return encode({name: mesh}, library=library, **kwargs)  # type: ignore[arg-type]


def remove(library: Library, names: Sequence[str]) -> Library:
    """A new library without ``names``; their codes and detail grids are dropped."""
    rows = [library.index(n) for n in names]
    keep = [i for i in range(len(library.shapes)) if i not in rows]
    lib = library.copy()
    if lib.model.detail is not None:
        keys, features = lib.model.detail.grid.all_shapes()
        lib.model.detail.grid.set_shapes([keys[i] for i in keep], [features[i] for i in keep])
    lib.codes = lib.codes[keep]
    lib.shapes = [lib.shapes[i] for i in keep]
    lib.history.append(history_entry("remove", list(names), {}))
    return lib


def rename(library: Library, old: str, new: str) -> Library:
    """A new library in which shape ``old`` is called ``new``."""
    row = library.index(old)
    validate_shape_name(new)
    if new != old and new in library.names:
        raise BadInputError(f"a shape named {new!r} is already in the library; pick another name")
    lib = library.copy()
    lib.shapes[row].name = new
    lib.history.append(history_entry("rename", [old, new], {}))
    return lib


def replace(library: Library, name: str, mesh: Mesh, **kwargs: object) -> Library:
    """Re-encode shape ``name`` from an edited mesh (it keeps its name; the others do not change)."""
    return encode({name: mesh}, library=remove(library, [name]), **kwargs)  # type: ignore[arg-type]


def _blend(library: Library, target: Mapping[str, float], mode: str) -> tuple[torch.Tensor, Normalization, dict[int, float]]:
    """The blended code, transform and normalised weight of each shape of a {name: weight} blend."""
    if not target:
        raise LibraryError("a blend needs at least one shape")
    rows = [library.index(n) for n in target]
    w = np.asarray(list(target.values()), dtype=np.float64)
    with np.errstate(over="ignore"):
        total = w.sum()
    if not np.all(np.isfinite(w)) or not 0 < total < np.inf or np.any(w < 0):
        raise BadInputError(f"blend weights must be finite, non-negative and sum to a finite number above 0, got {list(w)}")
    w = w / total
    code = blend_codes(library.codes[rows], w, mode)
    transforms = [library.shapes[r].transform for r in rows]
    center = tuple(float(c) for c in np.einsum("k,kd->d", w, np.array([t.center for t in transforms])))
    scale = float(np.exp(np.dot(w, np.log([t.scale for t in transforms]))))
    return code, Normalization(center, scale), dict(zip(rows, w.tolist()))  # type: ignore[arg-type]


def code_of(library: Library, target: str | Mapping[str, float], mode: str = _DECODE.mode) -> np.ndarray:
    """The code (D,) of a shape or of a {name: weight} blend, as a raw code for ``decode`` or ``explore``."""
    return _blend(library, {target: 1.0} if isinstance(target, str) else target, mode)[0].detach().cpu().numpy()


def detail_strength(weight: float, dial: float) -> float:
    """How much of a blended shape's own detail an in-between keeps: all at its own code, none
    from halfway to another shape on (detail learned at one code does not fit another's surface)."""
    return dial * float(np.clip(2 * weight - 1, 0, 1))


def _field_blend(library: Library, weights: Mapping[int, float], detail: float, resolution: int,
                 reporter: Reporter) -> tuple[np.ndarray, dict]:
    """Σ w_i · field_i: each shape's own field (its exact band, flood-filled signs, distances to the
    band outside), mixed with its coarse field by the detail dial. Clean fields in, clean blends out."""
    volume, stats = 0.0, {"resolution": resolution, "detail_evaluations": 0}
    for row, w in weights.items():
        exact, s = shape_volume(library.model, library.codes[row], row, resolution, distances=True, reporter=reporter)
        if detail < 1:
            coarse = coarse_lattice(library.model, library.codes[row], resolution, reporter=reporter)[2].cpu().numpy()
            exact = detail * exact + (1 - detail) * coarse
        volume = volume + w * exact
        stats["detail_evaluations"] += s["detail_evaluations"]
    stats["detail_fraction"] = stats["detail_evaluations"] / resolution**3
    return np.asarray(volume, dtype=np.float32), stats


def decode(
    library: Library,
    target: DecodeTarget,
    *,
    resolution: int = _DECODE.resolution,
    band: float = _DECODE.band,
    mode: str = _DECODE.mode,
    detail: float = _DECODE.detail,
    normalized: bool = False,
    like: str | Mapping[str, float] | None = None,
    device: str | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
) -> DecodedMesh:
    """Decode a shape, a weighted blend of shapes, or a raw code into a mesh.

    A shape (or a blend that is all one shape) at full ``detail`` decodes exactly from its stored
    band; blends keep each shape's detail in proportion to ``detail`` (0: coarse shape only) and
    to how close the blend is to that shape. A raw code (see ``explore``) decodes its coarse shape.
    Shapes and blends come back in their sources' original units, a raw code in those of ``like``
    (a shape or blend) or else in the working cube, as everything does with ``normalized``.
    """
    if not 16 <= resolution <= 1024:
        raise ValueError(f"resolution must be between 16 and 1024, got {resolution}")
    if not 0 <= detail <= 1:
        raise ValueError(f"detail must be between 0 and 1, got {detail}")
    reporter = Reporter(on_progress, should_stop)
    start = time.perf_counter()
    if device is not None:
        library.model.to(pick_device(device))
        library.codes = library.codes.to(pick_device(device))
    weights: dict[int, float] = {}
    if isinstance(target, str):
        row = library.index(target)
        code, transform, weights = library.codes[row], library.shapes[row].transform, {row: 1.0}
    elif isinstance(target, Mapping):
        code, transform, weights = _blend(library, target, mode)
    else:
        code = torch.as_tensor(np.asarray(target, dtype=np.float32))
        if code.shape != (library.preset.model.code_size,) or not torch.isfinite(code).all():
            raise BadInputError(f"a raw code must be {library.preset.model.code_size} finite numbers")
        code = code.to(library.codes.device)
        transform = _blend(library, {like: 1.0} if isinstance(like, str) else like, mode)[1] if like else Normalization((0.0, 0.0, 0.0), 1.0)
    whole = [row for row, w in weights.items() if w >= 1.0]
    if whole and detail == 1.0 and library.model.detail is not None:
        volume, stats = shape_volume(library.model, library.codes[whole[0]], whole[0], resolution, reporter=reporter)
    elif mode == "distance" and weights and detail > 0 and library.model.detail is not None:
        volume, stats = _field_blend(library, weights, detail, resolution, reporter)
    else:
        details = [(row, library.codes[row], detail_strength(w, detail)) for row, w in weights.items()]
        details = [d for d in details if d[2] > 0]
        fields = [(library.codes[row], w) for row, w in weights.items()] if mode == "distance" and weights else [(code, 1.0)]
        volume, stats = blend_volume(library.model, fields, details, resolution, band, reporter=reporter)
    reporter.report("decoding", 3, 3, message="marching cubes")
    V, F, N = marching_cubes(volume)
    stats["seconds"] = round(time.perf_counter() - start, 3)
    return DecodedMesh((V if normalized else transform.invert(V)).astype(np.float32), F, N, stats)


def interpolate(
    library: Library,
    names: Sequence[str],
    count: int = _DECODE.count,
    *,
    mode: str = _DECODE.mode,
    resolution: int = _DECODE.resolution,
    band: float = _DECODE.band,
    detail: float = _DECODE.detail,
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
        results.append(decode(library, weights, resolution=resolution, band=band, mode=mode, detail=detail,
                              device=device, should_stop=should_stop))
    return results

