"""Command line: ``python -m backend {encode,decode,interpolate,invert,remove,rename,replace,explore,upgrade,info,eval,make-collection}``.

Thin over ``backend.api``. Exit codes: 0 success, 1 a clear error (bad mesh, bad library, an
unwritable output, ...), 2 bad usage, 130 cancelled with Ctrl-C (existing files untouched).
Commands that write a library hold its cross-process lock (``atomic_io.file_lock``) from reading
to saving, so concurrent runs on one library serialise instead of losing each other's shapes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..atomic_io import file_lock, resolve_target
from ..errors import BadInputError, Cancelled, CompactSdfError, LibraryError
from ..names import safe_file_stem, validate_shape_name

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


class _Console:
    """A one-line progress bar on stderr and a Ctrl-C flag that jobs poll."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.stop = threading.Event()
        self._last = 0.0

    def should_stop(self) -> bool:
        return self.stop.is_set()

    def progress(self, p) -> None:
        now = time.monotonic()
        if self.quiet or (now - self._last < 0.2 and p.step < p.total):
            return
        self._last = now
        frac = p.step / max(1, p.total)
        bar = "#" * int(frac * 24)
        loss = f" loss {p.loss:.5f}" if p.loss is not None else ""
        eta = f" ETA {p.eta_s:4.0f}s" if p.eta_s is not None else ""
        print(f"\r{p.stage:<13} [{bar:<24}] {p.step}/{p.total}{loss}{eta} {p.message[:30]:<30}", end="", file=sys.stderr, flush=True)
        if p.step >= p.total:
            print(file=sys.stderr)

    def done(self) -> None:
        if not self.quiet:
            print("\r" + " " * 100 + "\r", end="", file=sys.stderr, flush=True)


def _shape_names(paths: list[Path]) -> dict[str, Path]:
    names: dict[str, Path] = {}
    for path in paths:
        if path.stem in names:
            raise CompactSdfError(f"two inputs are named {path.stem!r} ({names[path.stem]} and {path}); rename one")
        names[path.stem] = path
    return names


def check_writable(path: Path) -> None:
    """BadInputError unless a file can be written at ``path`` (checked before any long job starts).

    ``path`` must not be a directory, and its directory must exist (or be creatable: its nearest
    existing ancestor is a writable directory) and be writable, since saves rename a temporary
    file into place there.
    """
    target = resolve_target(path)
    if target.is_dir():
        raise BadInputError(f"{path} is a directory; name a library file in it, e.g. {path / 'shapes.csdf'}")
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise BadInputError(f"cannot create {path}: {parent} is a file, not a directory; choose another output path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInputError(f"cannot write {path}: no write permission in {parent}; choose another output path")


def _save(library, path: Path) -> None:
    """Save a library; a file-system failure becomes a clear error (the old file stays as it was)."""
    from safetensors import SafetensorError  # raised for I/O failures inside its writer

    try:
        library.save(path)
    except (OSError, SafetensorError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BadInputError(f"could not write {path}: {reason}; free some space or choose another output "
                            "path (any previous file there is unchanged)") from exc


def _waiting(path: Path) -> Callable[[], None]:
    return lambda: print(f"waiting for another Compact SDF process to finish with {path} ...", file=sys.stderr, flush=True)


def _cmd_encode(args: argparse.Namespace, console: _Console) -> int:
    """Encode (or, with --add, grow) a library.

    The whole run holds the library's cross-process lock, and --add reads the library only once
    it holds it: two concurrent adds to one library run one after the other and both land.
    Under torchrun (see ``distributed``) every process trains its share of the shapes and rank 0
    alone takes the lock and writes the library. Long runs leave a checkpoint beside the output
    (``<output>.ckpt``) until the library is saved; ``--resume`` continues from it.
    """
    from ..api import encode, encode_on_cluster
    from ..field.checkpoint import checkpoint_path, remove_checkpoint
    from ..field.distributed import launched_by_torchrun
    from ..store.library import Library
    from ..geometry.meshes import load_mesh

    check_writable(args.output)
    shapes = {name: load_mesh(path) for name, path in _shape_names(args.meshes).items()}
    ckpt = checkpoint_path(args.output)
    options = dict(preset=args.preset, size=args.size, steps=args.steps,
                   time_budget_s=args.minutes * 60 if args.minutes else None, seed=args.seed, device=args.device,
                   cache_dir=args.cache, checkpoint=ckpt if args.checkpoint_every > 0 or args.resume else None,
                   checkpoint_every_s=args.checkpoint_every * 60 if args.checkpoint_every > 0 else float("inf"),
                   resume=args.resume, sampling_workers=args.sampling_workers, frame=args.frame)
    start = time.perf_counter()
    if launched_by_torchrun():
        if args.add:
            raise BadInputError("--add runs in one process: run it without torchrun")
        if args.output.exists() and not args.overwrite:
            raise CompactSdfError(f"{args.output} exists; pass --overwrite to replace it")
        root = os.environ.get("RANK") == "0"
        library = encode_on_cluster(shapes, on_progress=console.progress if root else None,
                                    should_stop=console.should_stop, **options)
        if library is None:
            return EXIT_OK
        with file_lock(args.output, should_stop=console.should_stop, on_wait=_waiting(args.output)):
            _save(library, args.output)
    else:
        with file_lock(args.output, should_stop=console.should_stop, on_wait=_waiting(args.output)):
            existing = Library.load(args.output) if args.add else None
            if existing is None and args.output.exists() and not args.overwrite:
                raise CompactSdfError(f"{args.output} exists; pass --add to add shapes to it or --overwrite to replace it")
            try:
                library = encode(shapes, library=existing, on_progress=console.progress,
                                 should_stop=console.should_stop, **options)  # type: ignore[arg-type]
            except Cancelled:
                if ckpt.is_dir():
                    raise Cancelled(f"cancelled; {args.output} was not written; continue from the last checkpoint "
                                    "by running the same command with --resume") from None
                raise
            _save(library, args.output)
    remove_checkpoint(ckpt)
    console.done()
    size = args.output.stat().st_size
    run = library.history[-1]
    print(f"encoded {len(shapes)} shape(s) in {time.perf_counter() - start:.1f} s -> {args.output} "
          f"({len(library.names)} shapes, {size / 1e6:.2f} MB, {size / max(1, len(library.names)) / 1e3:.0f} KB per shape)")
    print(f"frame: {run.get('frame')} ({run.get('frame_reason')})")
    return EXIT_OK


def _output_dir(path: Path) -> Path:
    """``path`` created as a directory; BadInputError if it is a file."""
    if path.exists() and not path.is_dir():
        raise BadInputError(f"{path} is a file; -o names the directory the meshes are written to")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cmd_decode(args: argparse.Namespace, console: _Console) -> int:
    from ..api import decode
    from ..store.library import Library
    from ..geometry.meshes import save_mesh

    library = Library.load(args.library)
    names = library.names if args.all or not args.shape else args.shape
    output = _output_dir(args.output)
    stems: set[str] = set()
    for name in names:
        mesh = decode(library, name, resolution=args.resolution, band=args.band, device=args.device,
                      on_progress=console.progress, should_stop=console.should_stop)
        path = output / f"{_unique_stem(safe_file_stem(name), stems)}.{args.format}"
        save_mesh(path, mesh.vertices, mesh.faces, mesh.normals)
        console.done()
        print(f"{name}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces in {mesh.stats['seconds']:.1f} s "
              f"(detail on {mesh.stats['detail_evaluations']} nodes, {100 * mesh.stats['detail_fraction']:.1f} % of the lattice) -> {path}")
    return EXIT_OK


def _unique_stem(stem: str, taken: set[str]) -> str:
    """``stem``, or ``stem_2``, ``stem_3``... if two names map to one file name; recorded in ``taken``."""
    unique, n = stem, 1
    while unique.lower() in taken:
        n += 1
        unique = f"{stem}_{n}"
    taken.add(unique.lower())
    return unique


def _cmd_interpolate(args: argparse.Namespace, console: _Console) -> int:
    from ..api import interpolate
    from ..store.library import Library
    from ..geometry.meshes import save_mesh

    library = Library.load(args.library)
    meshes = interpolate(library, args.shapes, args.steps, mode=args.mode, resolution=args.resolution, detail=args.detail,
                         pace=args.pace, on_progress=console.progress, should_stop=console.should_stop)
    output = _output_dir(args.output)
    stem = safe_file_stem("-".join(args.shapes))
    for i, mesh in enumerate(meshes):
        save_mesh(output / f"{stem}_{i:02d}.{args.format}", mesh.vertices, mesh.faces, mesh.normals)
    console.done()
    print(f"wrote {len(meshes)} meshes {stem}_00..{len(meshes) - 1:02d}.{args.format} to {args.output}")
    print("path positions " + " ".join(f"{m.stats['path_position']:.3f}" for m in meshes))
    return EXIT_OK


def _cmd_correspond(args: argparse.Namespace, console: _Console) -> int:
    from ..api import carry
    from ..store.library import Library
    from ..geometry.meshes import load_mesh, save_mesh

    library = Library.load(args.library)
    mesh = load_mesh(args.mesh)
    carried = carry(library, args.shapes, mesh.vertices, args.steps, resolution=args.resolution,
                    on_progress=console.progress, should_stop=console.should_stop)
    console.done()
    if carried.failure is not None:
        print(f"error: {' and '.join(args.shapes)} cannot correspond: {carried.failure}", file=sys.stderr)
        return EXIT_ERROR
    output = _output_dir(args.output)
    stem = safe_file_stem(args.mesh.stem)
    for i, vertices in enumerate(carried.positions):
        save_mesh(output / f"{stem}_{i:02d}.{args.format}", vertices, mesh.faces)
    print(f"wrote {len(carried.positions)} meshes {stem}_00..{len(carried.positions) - 1:02d}.{args.format} to {args.output} "
          f"(one face list; the last on {args.shapes[-1]}'s surface)")
    return EXIT_OK


def _cmd_invert(args: argparse.Namespace, console: _Console) -> int:
    from ..api import invert
    from ..store.library import Library
    from ..geometry.meshes import load_mesh

    name = validate_shape_name(args.name or args.mesh.stem)
    output = args.output or args.library
    check_writable(output)
    mesh = load_mesh(args.mesh)
    with file_lock(output, should_stop=console.should_stop, on_wait=_waiting(output)):
        library = Library.load(args.library)
        updated = invert(library, mesh, name, steps=args.steps, device=args.device,
                         on_progress=console.progress, should_stop=console.should_stop, cache_dir=args.cache)
        _save(updated, output)
    console.done()
    print(f"inverted {name!r}: near-surface error {updated.shape_info(name)['stats']['near_surface_error']:.2e} -> {output}")
    return EXIT_OK


def _edit(args: argparse.Namespace, console: _Console, change: Callable[[object], object], done: str) -> int:
    """Apply ``change`` to the library under its lock and save it (to ``-o`` if given)."""
    from ..store.library import Library

    output = args.output or args.library
    check_writable(output)
    with file_lock(output, should_stop=console.should_stop, on_wait=_waiting(output)):
        updated = change(Library.load(args.library))
        _save(updated, output)
    console.done()
    print(f"{done} -> {output} ({len(updated.names)} shapes)")  # type: ignore[attr-defined]
    return EXIT_OK


def _cmd_remove(args: argparse.Namespace, console: _Console) -> int:
    from ..api import remove

    return _edit(args, console, lambda lib: remove(lib, args.shapes), f"removed {', '.join(args.shapes)}")


def _cmd_rename(args: argparse.Namespace, console: _Console) -> int:
    from ..api import rename

    new = validate_shape_name(args.new)
    return _edit(args, console, lambda lib: rename(lib, args.old, new), f"renamed {args.old!r} to {new!r}")


def _cmd_upgrade(args: argparse.Namespace, console: _Console) -> int:
    """Rewrite a library of an older readable format in the current one: same shapes, same decodes."""
    from ..store.library import Library, history_entry
    from ..store.library_meta import FORMAT_VERSION, read_library_meta

    was, before = read_library_meta(args.library)["format_version"], args.library.stat().st_size

    def upgraded(library: Library) -> Library:
        library.history.append(history_entry("upgrade", [], {"from_format": was, "to_format": FORMAT_VERSION}))
        return library

    if was == FORMAT_VERSION and not args.output:
        print(f"{args.library} is already format {FORMAT_VERSION}; nothing to do")
        return EXIT_OK
    status = _edit(args, console, upgraded, f"format {was} -> {FORMAT_VERSION}")
    print(f"  {before / 1e3:.0f} KB -> {(args.output or args.library).stat().st_size / 1e3:.0f} KB")
    return status


def _cmd_replace(args: argparse.Namespace, console: _Console) -> int:
    from ..api import replace
    from ..geometry.meshes import load_mesh

    mesh = load_mesh(args.mesh)
    return _edit(args, console, lambda lib: replace(lib, args.name, mesh, steps=args.steps, device=args.device,
                                                    on_progress=console.progress, should_stop=console.should_stop,
                                                    cache_dir=args.cache), f"re-encoded {args.name!r} from {args.mesh}")


def _cmd_explore(args: argparse.Namespace, console: _Console) -> int:
    """Variations along principal directions, seeded random variants, or the nearest shapes of a code."""
    from ..api import explore
    from ..store.library import Library
    from ..geometry.meshes import save_mesh

    library = Library.load(args.library)
    base = {n: float(w or 1) for n, w in (item.partition("=")[::2] for item in args.base)} if args.base else None
    points = [(f"variant_seed{seed}", {"seed": seed}) for seed in args.random] if args.random \
        else [("variation", {"amounts": args.vary or []})]
    output = _output_dir(args.output) if args.output else None
    for stem, point in points:
        result = explore(library, base, **point, spread=args.spread, nearest=args.nearest, decode_mesh=output is not None,
                         resolution=args.resolution, mode=args.mode, on_progress=console.progress,
                         should_stop=console.should_stop)
        near = ", ".join(f"{n} ({d:.3f})" for n, d in result.nearest)
        line = f"{stem}: nearest shapes {near}"
        if output is not None:
            mesh = result.mesh
            console.done()
            if len(mesh.faces) == 0:
                line += " -> no surface at this code (nothing written); try a smaller --spread"
            else:
                path = output / f"{stem}.{args.format}"
                save_mesh(path, mesh.vertices, mesh.faces, mesh.normals)
                line += f" -> {path}"
        print(line)
    return EXIT_OK


def _cmd_info(args: argparse.Namespace, console: _Console) -> int:
    from ..store.library_meta import read_library_meta

    meta = read_library_meta(args.library)
    if args.json:
        print(json.dumps(meta, indent=1))
        return EXIT_OK
    try:
        lines = _info_lines(args.library, meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise LibraryError(f"{args.library}: the library metadata is incomplete or malformed ({type(exc).__name__}: {exc}); "
                           "use `info --json` to see it, or re-encode the library") from exc
    print("\n".join(lines))
    return EXIT_OK


def _info_lines(path: Path, meta: dict) -> list[str]:
    """The human-readable summary of a library's metadata (KeyError/TypeError where it is malformed)."""
    from ..config import SHARED_FRAME
    from ..store.library_meta import shape_frame

    model = meta["model"]
    lines = [f"{path}: format {meta['format_version']}, preset {meta['preset']}, {len(meta['shapes'])} shapes, "
             f"{path.stat().st_size / 1e6:.2f} MB",
             f"  code {model['code_size']} floats ({meta['bytes']['per_shape_code']} B/shape), shared networks "
             f"{meta['bytes']['shared'] / 1e6:.2f} MB, detail grid {model['grid_resolution']}^3 x {model['grid_channels']} per shape"]
    frames = [shape_frame(shape) for shape in meta["shapes"]]
    shared = frames.count(SHARED_FRAME)
    lines.append(f"  frame: {shared} shape(s) in one shared frame (their in-betweens stay in place and at scale), "
                 f"{len(frames) - shared} each in its own" if shared else "  frame: each shape in its own (per-shape)")
    for shape, frame in zip(meta["shapes"], frames):
        err = shape.get("stats", {}).get("near_surface_error")
        detail = f", detail {shape['detail_bytes'] / 1e3:.0f} KB ({shape['nodes']} nodes)" if "detail_bytes" in shape else ""
        lines.append(f"  - {shape['name']:<24} {frame:<9}" + (f" near-surface error {err:.2e}" if err is not None else "")
                     + detail)
    return lines


def _cmd_eval(args: argparse.Namespace, console: _Console) -> int:
    from ..geometry.meshes import load_mesh
    from ..geometry.metrics import compare_meshes, fidelity_ratio, oracle_mesh

    gt, rec = load_mesh(args.gt), load_mesh(args.rec)
    result = compare_meshes(gt, rec, n_samples=args.samples, seed=args.seed).to_dict()
    if args.resolution:
        oracle = compare_meshes(gt, oracle_mesh(gt.vertices, gt.faces, args.resolution), n_samples=args.samples, seed=args.seed)
        result["oracle_cd_l1"] = oracle.cd_l1
        result["fidelity_ratio"] = fidelity_ratio(result["cd_l1"], oracle.cd_l1)
    print(json.dumps(result, indent=1) if args.json else "\n".join(f"{k:>20}: {v:.6g}" for k, v in result.items()))
    return EXIT_OK


def _cmd_make_collection(args: argparse.Namespace, console: _Console) -> int:
    """Write a procedural collection of closed meshes (superquadrics, tori, blobs) for tests and benchmarks."""
    from ..geometry.procedural import procedural_collection, write_collection

    output = _output_dir(args.output)
    start = time.perf_counter()
    meshes = procedural_collection(args.count, seed=args.seed, resolution=args.resolution,
                                   on_progress=console.progress, should_stop=console.should_stop)
    paths = write_collection(meshes, output, args.format)
    console.done()
    print(f"wrote {len(paths)} meshes in {time.perf_counter() - start:.1f} s -> {output}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every subcommand."""
    from ..config import (DEFAULT_CHECKPOINT_MINUTES, DEFAULT_DEVICE, DEFAULT_FRAME, DEFAULT_PRESET, DEFAULT_SIZE,
                         DEFAULT_SPREAD, DEVICES, FRAMES, PACES, PRESETS, SIZES, DecodeConfig, EncodeConfig, ExploreConfig)
    from ..field.blend_modes import BLEND_MODES

    defaults = DecodeConfig()

    parser = argparse.ArgumentParser(prog="python -m backend", description="Compact SDF: many meshes, one neural SDF, one small code each.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sub = parser.add_subparsers(dest="command", required=True)

    def job_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default=DEFAULT_DEVICE, choices=list(DEVICES))
        p.add_argument("--cache", type=Path, default=Path(".cache/samples"), help="ground-truth sample cache (default .cache/samples)")

    p = sub.add_parser("encode", help="encode meshes into a latent library")
    p.add_argument("meshes", nargs="+", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="library file (.csdf)")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS))
    p.add_argument("--size", default=DEFAULT_SIZE, choices=list(SIZES), help="bytes each shape's detail may use")
    p.add_argument("--steps", type=int, help="training steps per phase (default: grows with the collection)")
    p.add_argument("--minutes", type=float, help="train for this many minutes instead of a step count")
    p.add_argument("--add", action="store_true", help="add the meshes to an existing library")
    p.add_argument("--frame", default=DEFAULT_FRAME, choices=list(FRAMES),
                   help="shared: one frame for all the shapes (their common box; with --add the library's), so "
                        "in-betweens of poses or variants stay in place and at scale; per-shape: each its own box; "
                        "auto: shared when the meshes share one connectivity or overlapping boxes of similar size "
                        f"(default {DEFAULT_FRAME})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing library file")
    p.add_argument("--seed", type=int, default=EncodeConfig().seed)
    p.add_argument("--checkpoint-every", type=float, default=DEFAULT_CHECKPOINT_MINUTES, metavar="MINUTES",
                   help="save the training state to OUTPUT.ckpt this often (fractions allowed; 0: never; "
                        f"default {DEFAULT_CHECKPOINT_MINUTES:g}, so shorter runs write none)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from OUTPUT.ckpt")
    p.add_argument("--sampling-workers", type=int, help="processes that sample the meshes (default: one per core)")
    job_options(p)

    p = sub.add_parser("decode", help="decode shapes of a library into meshes")
    p.add_argument("library", type=Path)
    p.add_argument("--shape", action="append", help="shape name (repeatable; default all)")
    p.add_argument("--all", action="store_true", help="decode every shape")
    p.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    p.add_argument("--resolution", type=int, default=defaults.resolution)
    p.add_argument("--band", type=float, default=defaults.band, help="detail band half-width of blends, in voxels")
    p.add_argument("--format", default="obj", choices=["obj", "ply", "stl", "off"])
    p.add_argument("--device", default=DEFAULT_DEVICE, choices=list(DEVICES))

    p = sub.add_parser("interpolate", help="decode in-betweens along a path of shapes")
    p.add_argument("library", type=Path)
    p.add_argument("shapes", nargs="+", help="two or more shape names")
    p.add_argument("--steps", type=int, default=defaults.count, help="number of meshes, endpoints included")
    p.add_argument("--mode", default=defaults.mode, choices=BLEND_MODES)
    p.add_argument("--detail", type=float, default=defaults.detail, help="detail dial: 0 coarse shapes only, 1 full detail")
    p.add_argument("--pace", default=defaults.pace, choices=PACES,
                   help="uniform: evenly spaced blend weights; even: each step changes the shape about as much")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--resolution", type=int, default=defaults.resolution)
    p.add_argument("--format", default="obj", choices=["obj", "ply", "stl", "off"])

    p = sub.add_parser("correspond", help="carry a mesh of the first shape's surface along the morph path through "
                                          "shapes (its vertices mapped onto each; one face list)")
    p.add_argument("library", type=Path)
    p.add_argument("mesh", type=Path, help="a mesh lying on the first shape's surface, in its source's units")
    p.add_argument("shapes", nargs="+", help="two or more shape names, the mesh's own first")
    p.add_argument("--steps", type=int, default=2, help="meshes along the path, endpoints included (2: just the mapped one)")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--resolution", type=int, default=defaults.interactive_resolution, help="lattice the shapes are registered at")
    p.add_argument("--format", default="obj", choices=["obj", "ply", "stl", "off"])

    p = sub.add_parser("invert", help="fit a code for an unseen mesh (shared weights frozen)")
    p.add_argument("library", type=Path)
    p.add_argument("mesh", type=Path)
    p.add_argument("--name", help="shape name (default: file stem)")
    p.add_argument("--steps", type=int)
    p.add_argument("-o", "--output", type=Path, help="write here instead of updating the library")
    job_options(p)

    p = sub.add_parser("remove", help="remove shapes (and everything they store) from a library")
    p.add_argument("library", type=Path)
    p.add_argument("shapes", nargs="+")
    p.add_argument("-o", "--output", type=Path, help="write here instead of updating the library")

    p = sub.add_parser("rename", help="rename a shape")
    p.add_argument("library", type=Path)
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("-o", "--output", type=Path, help="write here instead of updating the library")

    p = sub.add_parser("replace", help="re-encode one shape from an edited mesh (the others do not change)")
    p.add_argument("library", type=Path)
    p.add_argument("name")
    p.add_argument("mesh", type=Path)
    p.add_argument("--steps", type=int)
    p.add_argument("-o", "--output", type=Path, help="write here instead of updating the library")
    job_options(p)

    p = sub.add_parser("explore", help="principal-direction variations, random variants, nearest shapes")
    p.add_argument("library", type=Path)
    p.add_argument("--base", nargs="*", metavar="NAME[=WEIGHT]", help="start from this shape or blend (default: the mean code)")
    p.add_argument("--vary", nargs="*", type=float, metavar="SIGMAS", help="standard deviations along directions 1, 2, ...")
    p.add_argument("--random", nargs="*", type=int, metavar="SEED", help="seeded random variants")
    p.add_argument("--spread", type=float, default=DEFAULT_SPREAD,
                   help="how far random variants move from their blend of library shapes, in standard deviations")
    p.add_argument("--nearest", type=int, default=ExploreConfig().nearest, help="how many nearest shapes to list")
    p.add_argument("--mode", default=defaults.mode, choices=BLEND_MODES)
    p.add_argument("-o", "--output", type=Path, help="decode the codes into this directory")
    p.add_argument("--resolution", type=int, default=defaults.resolution)
    p.add_argument("--format", default="obj", choices=["obj", "ply", "stl", "off"])

    p = sub.add_parser("upgrade", help="rewrite a library of an older format in the current one (same shapes and decodes)")
    p.add_argument("library", type=Path)
    p.add_argument("-o", "--output", type=Path, help="write here instead of updating the library")

    p = sub.add_parser("info", help="describe a library file")
    p.add_argument("library", type=Path)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("eval", help="fidelity metrics of a reconstruction (DESIGN §3)")
    p.add_argument("gt", type=Path)
    p.add_argument("rec", type=Path)
    p.add_argument("--resolution", type=int, help="also compute the oracle meshing limit at this resolution")
    p.add_argument("--samples", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("make-collection", help="write N procedural closed meshes (superquadrics, tori, blobs)")
    p.add_argument("count", type=int)
    p.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=int, default=48, help="marching-cubes lattice points per axis")
    p.add_argument("--format", default="obj", choices=["obj", "ply", "stl", "off"])
    return parser


_COMMANDS = {"encode": _cmd_encode, "decode": _cmd_decode, "interpolate": _cmd_interpolate, "correspond": _cmd_correspond,
             "invert": _cmd_invert,
             "remove": _cmd_remove, "rename": _cmd_rename, "replace": _cmd_replace, "explore": _cmd_explore,
             "upgrade": _cmd_upgrade, "info": _cmd_info, "eval": _cmd_eval, "make-collection": _cmd_make_collection}


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code."""
    args = build_parser().parse_args(argv)
    console = _Console(args.quiet)
    previous = signal.signal(signal.SIGINT, lambda *_: console.stop.set()) if threading.current_thread() is threading.main_thread() else None
    try:
        return _COMMANDS[args.command](args, console)
    except Cancelled:
        console.done()
        print("cancelled; existing files were left untouched", file=sys.stderr)
        return EXIT_CANCELLED
    except (CompactSdfError, ValueError) as exc:
        console.done()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # a file-system failure outside the paths checked above
        console.done()
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}; check the path, its permissions and free space", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
