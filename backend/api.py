"""The engine's public API on NumPy arrays: encode, add, remove, rename, replace, decode, interpolate, explore.

Everything the CLI, the Blender worker and the benchmarks do goes through these functions. Every
function that changes a library returns a new Library and leaves its argument untouched.
"""

from __future__ import annotations

import dataclasses
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .field.checkpoint import Checkpointer, fingerprint
from .config import (DEFAULT_CHECKPOINT_MINUTES, DEFAULT_DEVICE, DEFAULT_PRESET, DEFAULT_SPREAD, FRAMES, PACES, DecodeConfig,
                     EncodeConfig, ExploreConfig, Preset, get_preset, setting, with_training)
from .field.blend_modes import blend_mode
from .field.decode import DecodedMesh, blend_volume, check_memory, coarse_lattice, marching_cubes, shape_volume
from .field.device import pick_device
from .field.distributed import SINGLE, Cluster, broadcast_, check_shape_count, gather_to_root, join, leave
from .errors import BadInputError, BadMeshError, Cancelled, CheckpointError, LibraryError
from .store.library import Library, ShapeEntry, history_entry
from .geometry.correspondence import handles
from .geometry.frames import PER_SHAPE, SHARED, FrameChoice, choose_frame
from .geometry.meshes import Mesh, Normalization, normalization, validate_mesh, vertex_normals
from .field.model import CompactSdf
from .names import validate_shape_name
from .latent.explore import code_space, nearest_shapes, random_code, vary
from .latent.morph import MorphPath, along, handle_mismatch, morph_path
from .latent.pacing import even_positions
from .latent.recipes import normalized_weights, path_weights
from .progress import Progress, ProgressCallback, Reporter, StopCallback
from .geometry.sampling import BlendSet, ShapeSamples, blend_set, sample_shapes
from .field.codec import DetailCodec
from .field.train import TrainingRun, fit_code, stored_band, train_coarse, train_detail

__all__ = ["Progress", "Library", "DecodedMesh", "encode", "encode_on_cluster", "remove", "rename", "replace", "decode", "interpolate",
           "explore", "Exploration", "invert", "code_of", "Cancelled", "carry", "correspond", "Carried"]

DecodeTarget = str | Mapping[str, float] | np.ndarray
_DECODE, _EXPLORE, _ENCODE = DecodeConfig(), ExploreConfig(), EncodeConfig()
_RESOLUTION, _DETAIL = setting(DecodeConfig, "resolution"), setting(DecodeConfig, "detail")


def _prepare(shapes: Mapping[str, Mesh], existing: Sequence[str] = (), frame: str = _ENCODE.frame,
             library_frame: Normalization | None = None) -> tuple[list[tuple[str, Mesh, Normalization, Mesh]], FrameChoice]:
    """Validate names and meshes and choose their frame (``geometry.frames``): (name, mesh,
    transform, normalised mesh) per shape, and the frame chosen."""
    if not shapes:
        raise BadMeshError("no shapes to encode")
    if frame not in FRAMES:
        raise BadInputError(f"frame must be one of {', '.join(FRAMES)}, got {frame!r}")
    cleaned = {}
    for name, mesh in shapes.items():
        validate_shape_name(name)
        if name in existing:
            raise BadMeshError(f"a shape named {name!r} is already in the library; pick another name, or replace it")
        cleaned[name] = validate_mesh(mesh, name)
    choice = choose_frame(frame, cleaned, library_frame)
    prepared = []
    for name, clean in cleaned.items():
        transform = choice.transform or normalization(clean.vertices, name)
        prepared.append((name, clean, transform, Mesh(transform.apply(clean.vertices), clean.faces)))
    return prepared, choice


def _fit_errors(model: CompactSdf, shape: int, code: torch.Tensor, samples: ShapeSamples) -> dict:
    """Mean absolute SDF error near the surface and in the far field (normalised units)."""
    with torch.no_grad():
        x = torch.as_tensor(samples.points, device=code.device)
        _, fused = model(shape, code.expand(len(x), -1), x)
        err = (fused.cpu() - torch.as_tensor(samples.points_sdf)).abs().numpy()
    n = samples.near_count
    return {"near_surface_error": float(err[:n].mean()), "far_field_error": float(err[n:].mean())}


DEFAULT_CHECKPOINT_EVERY_S = DEFAULT_CHECKPOINT_MINUTES * 60


def encode(
    shapes: Mapping[str, Mesh],
    *,
    preset: str | Preset = DEFAULT_PRESET,
    size: str | None = None,
    steps: int | None = None,
    time_budget_s: float | None = None,
    library: Library | None = None,
    seed: int = _ENCODE.seed,
    device: str = DEFAULT_DEVICE,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
    cache_dir: str | Path | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every_s: float = DEFAULT_CHECKPOINT_EVERY_S,
    resume: bool = False,
    sampling_workers: int | None = None,
    frame: str = _ENCODE.frame,
) -> Library:
    """Encode meshes into a new library, or add them to ``library`` (returned as a new object).

    ``preset`` is a preset name or a Preset, ``size`` one of ``config.SIZES``; ``steps`` or
    ``time_budget_s`` override the training length (by default it grows with the collection).
    Shapes are sampled, and every shape's distances at the others' points computed for blend
    training (``sampling.blend_set``), on ``sampling_workers`` processes (default one per core).

    With ``checkpoint`` (a directory, see ``checkpoint.checkpoint_path``) the training state is
    saved there every ``checkpoint_every_s`` seconds, and ``resume=True`` continues from it; the
    caller deletes it (``checkpoint.remove_checkpoint``) once the library is saved.

    ``frame`` (``config.FRAMES``) places the new shapes in the working cube: ``per-shape`` each
    in its own bounding box, ``shared`` all in one (their common box, or the library's shared frame
    on an add: BadMeshError if a new shape does not fit it), so in-betweens of shapes of one
    coordinate system stay in place and at scale; ``auto`` picks (``geometry.frames``). Each
    shape's entry records its frame, the history why.

    Adding keeps every shared weight and every old shape exactly as it was: each new shape gets a
    code fitted through the frozen coarse branch and its own detail grid. Raises BadMeshError for
    unusable input and Cancelled when ``should_stop()`` turns true; nothing is written either way.
    """
    result = _encode(shapes, SINGLE, pick_device(device), preset=preset, size=size, steps=steps,
                     time_budget_s=time_budget_s, library=library, seed=seed, on_progress=on_progress,
                     should_stop=should_stop, cache_dir=cache_dir, checkpoint=checkpoint,
                     checkpoint_every_s=checkpoint_every_s, resume=resume, sampling_workers=sampling_workers,
                     frame=frame)
    assert result is not None  # a single process is rank 0
    return result


def encode_on_cluster(shapes: Mapping[str, Mesh], *, device: str = DEFAULT_DEVICE, **options: object) -> Library | None:
    """``encode`` as one process of a ``torchrun`` job (the same as ``encode`` outside one).

    Each process samples and trains its share of the shapes (see ``distributed``); the finished
    library is returned on rank 0 and None on every other rank. Adding to a library and time
    budgets run in one process only.
    """
    cluster, dev = join(pick_device(device))
    try:
        return _encode(shapes, cluster, dev, **options)  # type: ignore[arg-type]
    finally:
        leave()


def _encode(shapes: Mapping[str, Mesh], cluster: Cluster, dev: torch.device, *, preset: str | Preset = "fast",
            size: str | None = None, steps: int | None = None, time_budget_s: float | None = None,
            library: Library | None = None, seed: int = 0, on_progress: ProgressCallback | None = None,
            should_stop: StopCallback | None = None, cache_dir: str | Path | None = None,
            checkpoint: str | Path | None = None, checkpoint_every_s: float = DEFAULT_CHECKPOINT_EVERY_S,
            resume: bool = False, sampling_workers: int | None = None, frame: str = _ENCODE.frame) -> Library | None:
    reporter = Reporter(on_progress, should_stop)
    torch.manual_seed(seed)
    if library is None:
        spec = preset if isinstance(preset, Preset) else get_preset(preset, size)
        spec = with_training(spec, steps=steps, time_budget_s=time_budget_s)
        base = Library(spec, CompactSdf(spec.model), torch.zeros(0, spec.model.code_size), [])
    else:  # the library's own sizes and sampling; only the training length may change
        base = library.copy()
        spec = base.preset = with_training(base.preset, steps=steps, time_budget_s=time_budget_s)
    if cluster.distributed and (library is not None or spec.train.time_budget_s is not None):
        raise BadInputError("adding shapes and time budgets (--minutes) run in one process: run this without torchrun")
    prepared, choice = _prepare(shapes, base.names, frame, base.shared_frame())
    check_shape_count(cluster, len(prepared))
    owned = cluster.owned(len(prepared))
    run = TrainingRun(cluster)
    if checkpoint is not None:
        shared = {"frame": choice.transform.to_dict()} if choice.transform is not None else {}  # per-shape: as before
        run_id = fingerprint(shapes=[(p[0], p[1].content_hash()) for p in prepared], preset=dataclasses.asdict(spec),
                             seed=seed, base=[(e.name, e.source_sha256) for e in base.shapes], **shared)
        run.checkpoints = Checkpointer(Path(checkpoint), checkpoint_every_s, run_id, cluster)
        if resume:
            run.resumed = run.checkpoints.load()
        elif run.checkpoints.exists():
            raise CheckpointError(f"an interrupted run left a checkpoint in {checkpoint}: resume it (--resume) or "
                                  "delete it to start over")
    samples = sample_shapes([prepared[i][3] for i in owned], spec.sample, Path(cache_dir) if cache_dir else None, seed,
                            workers=sampling_workers, reporter=reporter, names=[prepared[i][0] for i in owned])
    blend = None
    resumed_detail = run.resumed is not None and run.resumed.phase == "detail"
    if library is None and spec.train.blend_fraction > 0 and len(prepared) > 1 and not resumed_detail:
        blend = blend_set(samples, [p[3] for p in prepared], spec.train.blend_points, seed,
                          workers=sampling_workers, reporter=reporter, names=[p[0] for p in prepared])
    start = time.perf_counter()
    model = base.model.to(dev)
    gen = torch.Generator(device=dev).manual_seed(seed + _RANK_SEED_STRIDE * cluster.rank)
    broadcast_(model.parameters(), cluster)
    model.train()
    new_codes, coarse_steps, coarse_loss = _fit_codes(model, base.codes.to(dev), samples, owned, len(prepared), spec,
                                                      library is not None, blend, seed, gen, reporter, run)
    coarse_seconds = time.perf_counter() - start
    codes = torch.cat([base.codes.to(dev), new_codes])
    grids = list(range(len(base.shapes), len(base.shapes) + len(samples)))  # this rank's new grids, in order
    detail_steps, fused_loss = 0, coarse_loss
    if model.detail is not None:
        run.codes = codes
        detail_steps, fused_loss = _fit_grids(model, new_codes[owned], samples, grids, spec, library is None, gen,
                                              reporter, run)
    model.eval()
    errors = {}
    for i, g, s in zip(owned, grids, samples):
        fit = _fit_errors(model, g, codes[len(base.shapes) + i : len(base.shapes) + i + 1], s)
        errors[i] = torch.tensor([[fit["near_surface_error"], fit["far_field_error"]]], dtype=torch.float64)
    stats = gather_to_root(errors, len(prepared), cluster, dtype=torch.float64, width=2)
    if model.detail is not None and cluster.distributed:
        _gather_grids(model, owned, grids, len(prepared), cluster)
    if not cluster.is_root:
        return None
    entries = list(base.shapes)
    for i, (name, clean, transform, _) in enumerate(prepared):
        near, far = stats[i][0].tolist()
        entries.append(ShapeEntry(name, transform, clean.content_hash(), {"near_surface_error": near, "far_field_error": far},
                                  frame=choice.frame))
    kind = "add" if library is not None else "encode"
    history = base.history + [history_entry(kind, [p[0] for p in prepared], {
        "coarse_steps": coarse_steps, "detail_steps": detail_steps, "seconds": round(time.perf_counter() - start, 2),
        "coarse_seconds": round(coarse_seconds, 2),
        "coarse_loss": coarse_loss, "fused_loss": fused_loss, "device": str(dev), "world_size": cluster.world_size,
        "frame": choice.frame, "frame_reason": choice.reason})]
    return Library(spec, model, codes.detach(), entries, history)


#: Rank r draws its batches from generator seed ``seed + r * stride`` (rank 0 uses the seed itself).
_RANK_SEED_STRIDE = 1_000_003


def _fit_codes(model: CompactSdf, old_codes: torch.Tensor, samples: list[ShapeSamples], owned: list[int], count: int,
               spec: Preset, adding: bool, blend: BlendSet | None, seed: int, gen: torch.Generator, reporter: Reporter,
               run: TrainingRun) -> tuple[torch.Tensor, int, float]:
    """Codes of the ``count`` new shapes: trained with the coarse branch (new library, taught
    ``blend`` too) or through it, frozen (add); taken from the checkpoint when the run resumes in
    its detail phase."""
    cfg, d, dev = spec.train, spec.model.code_size, old_codes.device
    resumed = run.resumed
    if resumed is not None and resumed.phase == "detail":
        return (resumed.codes.to(dev)[len(old_codes):], int(resumed.facts["coarse_steps"]),
                float(resumed.facts["coarse_loss"]))
    if not adding:
        steps = cfg.coarse_steps_for(count)
        init = torch.Generator().manual_seed(seed)
        codes = torch.nn.Parameter((torch.randn(count, d, generator=init) / d**0.5).to(dev))
        broadcast_([codes], run.cluster)
        budget = None if cfg.time_budget_s is None else cfg.time_budget_s / 2
        done, loss = train_coarse(model, codes, samples, cfg, steps=steps, budget_s=budget, gen=gen, reporter=reporter,
                                  progress=(0, 2 * steps), rows=owned, blend=blend, run=run)
        run.facts.update(coarse_steps=done, coarse_loss=loss)
        return codes.detach(), done, loss
    init = old_codes.mean(0, keepdim=True) if len(old_codes) else torch.zeros(1, d, device=dev)
    fitted = [fit_code(model, s, cfg, init, steps=cfg.invert_steps, gen=gen, reporter=reporter) for s in samples]
    steps, loss = cfg.invert_steps * len(samples), float(np.mean([loss for _, loss in fitted]))
    run.facts.update(coarse_steps=steps, coarse_loss=loss)
    return torch.cat([c for c, _ in fitted]), steps, loss


def _fit_grids(model: CompactSdf, codes: torch.Tensor, samples: list[ShapeSamples], grids: list[int], spec: Preset,
               train_mlp: bool, gen: torch.Generator, reporter: Reporter, run: TrainingRun) -> tuple[int, float]:
    """Give each of this process's new shapes its own grid over its stored band and train it
    (``train_detail`` leaves it rounded as it will be stored); ``codes`` holds their codes."""
    grid, storage = model.detail.grid, spec.storage
    keys, features = grid.all_shapes()
    keys += [stored_band(s, spec.model.grid_resolution, storage.band_cells)[0] for s in samples]
    grid.set_shapes(keys, features + [None] * len(samples))
    cfg = spec.train
    budget = None if cfg.time_budget_s is None else cfg.time_budget_s / 2
    total = cfg.coarse_steps_for(len(samples))
    done, loss = train_detail(model, codes, samples, grids, cfg, band_cells=storage.band_cells,
                              codec=DetailCodec.of(storage), train_mlp=train_mlp, budget_s=budget, gen=gen,
                              reporter=reporter, progress=(total, 2 * total), run=run)
    return done, loss


def _gather_grids(model: CompactSdf, owned: list[int], grids: list[int], count: int, cluster: Cluster) -> None:
    """Rank 0's grid := every shape's grid in shape order, from the ranks that trained them."""
    grid = model.detail.grid
    keys = gather_to_root({i: grid.keys[g][:, None] for i, g in zip(owned, grids)}, count, cluster,
                          dtype=torch.int64, width=1)
    features = gather_to_root({i: grid.shape_features(g) for i, g in zip(owned, grids)}, count, cluster,
                              dtype=torch.float32, width=grid.channels)
    if cluster.is_root:
        grid.set_shapes([keys[i][:, 0].numpy() for i in range(count)], [features[i] for i in range(count)])


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
    """Re-encode shape ``name`` from an edited mesh (it keeps its name; the others do not change).
    Unless ``frame`` is given, a shape of the shared frame stays in it where the edit still fits it
    (``auto``), and a per-shape one stays per-shape."""
    kwargs.setdefault("frame", "auto" if library.shapes[library.index(name)].frame == SHARED else PER_SHAPE)
    return encode({name: mesh}, library=remove(library, [name]), **kwargs)  # type: ignore[arg-type]


def _blend(library: Library, target: Mapping[str, float], mode: str) -> tuple[torch.Tensor, Normalization, dict[int, float]]:
    """The blended code (as blend mode ``mode`` blends codes), transform and normalised weight of
    each shape of a {name: weight} blend."""
    blend = blend_mode(mode)
    if not target:
        raise LibraryError("a blend needs at least one shape")
    rows = [library.index(n) for n in target]
    w = np.asarray(list(normalized_weights(target).values()), dtype=np.float64)
    codes = library.codes[rows]
    code = blend.blend_codes(codes, torch.as_tensor(w.astype(np.float32), device=codes.device))
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
    ``mode`` names how blends blend (``field.blend_modes``; BadInputError for an unknown one).
    """
    if not _RESOLUTION.contains(resolution):
        raise ValueError(f"resolution must be between {_RESOLUTION.low} and {_RESOLUTION.high}, got {resolution}")
    if not _DETAIL.contains(detail):
        raise ValueError(f"detail must be between {_DETAIL.low} and {_DETAIL.high}, got {detail}")
    blend = blend_mode(mode)
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
    fallback = None
    if blend.moves_parts and len(weights) > 1 and not whole:
        morphed = _morph_decode(library, weights, transform, resolution=resolution, band=band, detail=detail,
                                normalized=normalized, should_stop=should_stop)
        if isinstance(morphed, DecodedMesh):
            morphed.stats["seconds"] = round(time.perf_counter() - start, 3)
            return morphed
        fallback, blend = morphed, blend_mode(blend.falls_back_to)
    if whole and detail == 1.0 and library.model.detail is not None:
        check_memory(resolution, "shape")
        volume, stats = shape_volume(library.model, library.codes[whole[0]], whole[0], resolution, reporter=reporter)
    elif blend.blends_fields and weights and detail > 0 and library.model.detail is not None:
        check_memory(resolution, "fields")
        volume, stats = _field_blend(library, weights, detail, resolution, reporter)
    else:
        check_memory(resolution, "codes")
        details = [(row, library.codes[row], detail_strength(w, detail)) for row, w in weights.items()]
        details = [d for d in details if d[2] > 0]
        fields = [(library.codes[row], w) for row, w in weights.items()] if blend.blends_fields and weights else [(code, 1.0)]
        volume, stats = blend_volume(library.model, fields, details, resolution, band, reporter=reporter)
    if not (np.isfinite(volume.min()) and np.isfinite(volume.max())):
        raise LibraryError(f"decoding {_describe(target)} gives NaN or infinite distances: the library's stored data "
                           "is corrupt (or the raw code is extreme)")
    reporter.report("decoding", 3, 3, message="marching cubes")
    V, F, N = marching_cubes(volume)
    # float64 in the source's units: float32 cannot hold a 1e12 offset or a 1e-30 scale to the mesh's size
    with np.errstate(over="ignore"):  # a corrupt transform overflows: refused just below
        V = V.astype(np.float64) if normalized else transform.invert(V)
    if not np.isfinite(V).all():
        raise LibraryError(f"decoding {_describe(target)} gives infinite coordinates: its transform (scale "
                           f"{transform.scale:.3g}) is corrupt")
    stats["seconds"] = round(time.perf_counter() - start, 3)
    if fallback is not None:
        stats["morph_fallback"] = fallback
    return DecodedMesh(V, F, N, stats)


def _shape_meshes(library: Library, rows: Sequence[int], **options: object) -> list[Mesh]:
    """Each shape of ``rows`` decoded on its own, in the working cube (its frame)."""
    return [Mesh(m.vertices, m.faces.astype(np.int64)) for m in
            (decode(library, library.shapes[row].name, normalized=True, **options) for row in rows)]


#: Lattice on which a shape's holes are counted before a morph (``geometry.correspondence.handles``).
_HANDLE_RESOLUTION = 64


def _handles(library: Library, rows: Sequence[int]) -> list[int]:
    """Holes through each shape of ``rows``, counted on its coarse field (``geometry.correspondence.handles``):
    smooth signed distances everywhere, where a stored band has values only near the surface."""
    return [handles(coarse_lattice(library.model, library.codes[row], _HANDLE_RESOLUTION)[2].cpu().numpy())
            for row in rows]


def _morphed(vertices: np.ndarray, faces: np.ndarray, transform: Normalization, normalized: bool, stats: dict) -> DecodedMesh:
    """A morphed mesh as ``decode`` returns meshes: in the working cube or the blend's units, with normals."""
    normals = vertex_normals(vertices, faces)
    out = vertices if normalized else transform.invert(vertices)
    return DecodedMesh(np.asarray(out, dtype=np.float64), faces.astype(np.int32), normals, stats)


def _morph_decode(library: Library, weights: Mapping[int, float], transform: Normalization, *, normalized: bool,
                  **options: object) -> DecodedMesh | str:
    """A weighted blend of shapes as a morph: the first shape's mesh carried onto each other shape and
    the copies blended with the weights (``latent.morph``); the reason instead where they cannot
    correspond. The first, not the heaviest: a slider moving across a pair keeps one registration."""
    rows = list(weights)
    source = library.shapes[rows[0]].name
    paths = []
    for row in rows[1:]:
        path = _morph_path(library, [source, library.shapes[row].name], Reporter(), **options)
        if path.failure is not None:
            return path.failure
        paths.append(path)
    vertices = weights[rows[0]] * paths[0].stations[0] + sum(weights[r] * p.stations[1] for r, p in zip(rows[1:], paths))
    stats = {"resolution": options["resolution"], "morph": {"source": source, "fits": [p.fits[0] for p in paths]}}
    return _morphed(vertices, paths[0].faces, transform, normalized, stats)


def _describe(target: DecodeTarget) -> str:
    """A decode target as a message names it."""
    if isinstance(target, str):
        return f"shape {target!r}"
    return "this blend" if isinstance(target, Mapping) else "this raw code"


def interpolate(
    library: Library,
    names: Sequence[str],
    count: int = _DECODE.count,
    *,
    mode: str = _DECODE.mode,
    resolution: int = _DECODE.resolution,
    band: float = _DECODE.band,
    detail: float = _DECODE.detail,
    pace: str = _DECODE.pace,
    normalized: bool = False,
    device: str | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
) -> list[DecodedMesh]:
    """``count`` meshes along the path through ``names`` (endpoints included): at evenly spaced
    blend weights (``pace="uniform"``), or placed so each step changes the shape by about as much
    (``pace="even"``: the path is probed first at ``_PACE_PROBES`` positions per step, at most
    ``_PACE_RESOLUTION``³, see ``pacing``; shapes between the two ends are passed through, not
    necessarily output). Each mesh's ``stats`` hold its ``weights`` and its ``path_position`` in [0, 1]."""
    if len(names) < 2:
        raise ValueError("interpolation needs at least two shapes")
    _check_count(count)
    if pace not in PACES:
        raise ValueError(f"pace must be one of {', '.join(PACES)}, got {pace!r}")
    reporter = Reporter(on_progress, should_stop)
    span = len(names) - 1
    positions = np.linspace(0, span, count)
    fallback = None
    if blend_mode(mode).moves_parts:  # BadInputError for an unknown mode before any decode
        path = _morph_path(library, names, reporter, resolution=resolution, band=band, detail=detail, device=device,
                           should_stop=should_stop)
        if path.failure is None:
            return _morph_interpolate(library, names, path, positions, pace, normalized)
        fallback, mode = path.failure, blend_mode(mode).falls_back_to
    if pace == "even":
        probe_at = np.linspace(0, span, _PACE_PROBES * (count - 1) + 1)
        probes = []
        for i, t in enumerate(probe_at):
            reporter.report("pacing", i, len(probe_at), message=f"probe {i + 1} of {len(probe_at)}")
            m = decode(library, path_weights(names, t), resolution=min(resolution, _PACE_RESOLUTION), band=band, mode=mode,
                       detail=detail, normalized=True, device=device, should_stop=should_stop)
            probes.append(Mesh(m.vertices, m.faces))
        positions = even_positions(probes, probe_at, count)
    results = []
    for i, t in enumerate(positions):
        reporter.report("interpolating", i, count, message=f"variant {i + 1} of {count}")
        weights = path_weights(names, t)
        mesh = decode(library, weights, resolution=resolution, band=band, mode=mode, detail=detail,
                      normalized=normalized, device=device, should_stop=should_stop)
        mesh.stats.update(weights=weights, path_position=float(t / span))
        if fallback is not None:
            mesh.stats["morph_fallback"] = fallback
        results.append(mesh)
    return results


def _check_count(count: int) -> None:
    """ValueError unless ``count`` (meshes along a path, endpoints included) is in config's range:
    each is a full decode or a carried copy, and a typo of 10**6 must not run for days."""
    allowed = setting(DecodeConfig, "count")
    if not allowed.contains(count):
        raise ValueError(f"count must be {allowed.low}..{allowed.high} (endpoints included), got {count}")


#: Morph paths built lately, per library and request: the live preview re-blends one pair on every
#: slider move, and must not register the shapes again each time.
_MORPH_PATHS: dict[int, tuple[weakref.ref, OrderedDict]] = {}
_MORPH_PATHS_KEPT = 8


def _morph_path(library: Library, names: Sequence[str], reporter: Reporter, *, resolution: int, band: float = _DECODE.band,
                detail: float = _DECODE.detail, device: str | None = None,
                should_stop: StopCallback | None = None) -> MorphPath:
    """The first shape's decoded mesh carried through the others (``latent.morph``), in the working
    cube; kept for the next request of the same path."""
    ref, kept = _MORPH_PATHS.get(id(library), (None, None))
    if ref is None or ref() is not library:
        kept = OrderedDict()
        _MORPH_PATHS[id(library)] = (weakref.ref(library, lambda _, key=id(library): _MORPH_PATHS.pop(key, None)), kept)
    key = (tuple(names), resolution, band, detail)
    if key in kept:
        kept.move_to_end(key)
        return kept[key]
    rows = [library.index(n) for n in names]
    mismatch = handle_mismatch(_handles(library, rows))
    if mismatch is not None:
        path = MorphPath(np.zeros((0, 3), np.int64), [], failure=mismatch)
    else:
        meshes = _shape_meshes(library, rows, resolution=resolution, band=band, detail=detail, device=device,
                               should_stop=should_stop)
        path = morph_path(meshes, on_step=lambda i, n: reporter.report("morphing", i, n,
                                                                       message=f"registering step {i + 1} of {n}"))
    kept[key] = path
    while len(kept) > _MORPH_PATHS_KEPT:
        kept.popitem(last=False)
    return path


def _morph_interpolate(library: Library, names: Sequence[str], path: MorphPath, positions: np.ndarray, pace: str,
                       normalized: bool) -> list[DecodedMesh]:
    """The meshes of a morph path at ``positions`` (re-spaced for ``pace="even"``): one face list throughout."""
    span = len(names) - 1
    if pace == "even":
        probe_at = np.linspace(0, span, _PACE_PROBES * (len(positions) - 1) + 1)
        positions = even_positions([Mesh(path.at(t), path.faces) for t in probe_at], probe_at, len(positions))
    results = []
    for t in positions:
        weights = path_weights(names, t)
        stats = {"weights": weights, "path_position": float(t / span), "morph": {"source": names[0], "fits": path.fits}}
        results.append(_morphed(path.at(t), path.faces, _blend(library, weights, "linear")[1], normalized, stats))
    return results


@dataclasses.dataclass
class Carried:
    """Points of a path's first shape carried along a morph path: ``positions`` (count, n, 3) at
    ``path_positions`` (count,), each in its blend's units (the first shape's, in a shared frame);
    ``failure`` says why the shapes cannot correspond (``positions`` is then None); ``fits`` holds
    each registration's measurements."""

    positions: np.ndarray | None
    path_positions: np.ndarray
    failure: str | None
    fits: list[dict]


def carry(
    library: Library,
    names: Sequence[str],
    points: np.ndarray,
    count: int = _DECODE.count,
    *,
    resolution: int = _DECODE.interactive_resolution,
    device: str | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
) -> Carried:
    """Carry ``points`` (n, 3) of ``names[0]``'s surface, in its source's units (an artist's mesh of
    that shape), along the morph path through ``names``: ``count`` evenly spaced positions, endpoints
    included; the last lies on the last shape's surface. Shapes are registered at ``resolution``³."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or not np.isfinite(points).all():
        raise BadInputError(f"points must be finite (n, 3) coordinates, got shape {points.shape}")
    if len(names) < 2:
        raise ValueError("carrying points needs at least two shapes")
    _check_count(count)
    span = len(names) - 1
    positions = np.linspace(0, span, count)
    path = _morph_path(library, names, Reporter(on_progress, should_stop), resolution=resolution, device=device,
                       should_stop=should_stop)
    if path.failure is not None:
        return Carried(None, positions / span, path.failure, path.fits)
    stations = path.carry(library.shapes[library.index(names[0])].transform.apply(points))
    out = np.stack([_blend(library, path_weights(names, t), "linear")[1].invert(along(stations, t)) for t in positions])
    return Carried(out, positions / span, None, path.fits)


def correspond(library: Library, source: str, target: str, points: np.ndarray, **options: object) -> Carried:
    """Map ``points`` of shape ``source``'s surface (its source's units) to their counterparts on
    ``target``'s surface (its units): ``positions[1]`` of a two-shape ``carry``."""
    return carry(library, [source, target], points, 2, **options)


#: Probe decodes per output step, and their largest lattice, of an evenly paced path.
_PACE_PROBES, _PACE_RESOLUTION = 4, 64


@dataclasses.dataclass
class Exploration:
    """A decoded point of the code space: its ``mesh`` (None when not decoded), its raw ``code``
    (D,), the ``nearest`` library shapes ``(name, distance)``, the library's number of principal
    ``directions``, and whether the base itself was decoded (``exact``) rather than a raw code."""

    mesh: DecodedMesh | None
    code: np.ndarray
    nearest: list[tuple[str, float]]
    directions: int
    exact: bool


def explore(
    library: Library,
    base: str | Mapping[str, float] | None = None,
    amounts: Sequence[float] = (),
    *,
    seed: int | None = None,
    spread: float = DEFAULT_SPREAD,
    code: np.ndarray | Sequence[float] | None = None,
    nearest: int = _EXPLORE.nearest,
    decode_mesh: bool = True,
    resolution: int = _DECODE.resolution,
    band: float = _DECODE.band,
    mode: str = _DECODE.mode,
    detail: float = _DECODE.detail,
    normalized: bool = False,
    device: str | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
) -> Exploration:
    """Decode one point of the library's code space (see ``latent.explore``).

    The point is ``code`` when given (a raw code kept from an earlier result), else the seeded
    random variant ``seed`` (``spread`` standard deviations wide), else ``base`` (a shape or a
    ``{name: weight}`` blend; None: the library's mean code), moved by ``amounts`` standard
    deviations along the principal directions 1, 2, … (trailing zeros are ignored). A base that is
    neither moved nor replaced decodes exactly as ``decode`` would, with the ``detail`` dial; raw
    codes decode their coarse shape, in the units of ``base`` (None: the working cube).
    ``decode_mesh=False`` only finds the code and its nearest shapes.
    """
    amounts = [float(a) for a in amounts]
    while amounts and amounts[-1] == 0:  # unused sliders, even beyond the library's directions
        amounts.pop()
    exact = code is None and seed is None and base is not None and not amounts
    if code is not None:
        point = np.asarray(code, dtype=np.float32)
    else:
        if seed is not None:
            start = random_code(library, seed, spread)
        elif base is not None:
            start = code_of(library, base, mode)
        else:
            start = code_space(library).mean.astype(np.float32)
        point = vary(library, start, amounts) if amounts else start
    near = nearest_shapes(library, point, nearest) if nearest else []
    mesh = None
    if decode_mesh:
        mesh = decode(library, base if exact else point, like=None if exact else base, resolution=resolution,
                      band=band, mode=mode, detail=detail, normalized=normalized, device=device,
                      on_progress=on_progress, should_stop=should_stop)
    return Exploration(mesh, point, near, len(code_space(library).stds), exact)

