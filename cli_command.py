"""Headless batch: ``blender -b [file.blend] --command compact_sdf <subcommand> ...``.

Subcommands run the same operators as the panel (synchronously in background mode)::

    encode       objects of the open .blend and/or mesh files → library [→ reconstructions]
    reconstruct  library shapes → objects (.blend / .obj outputs)
    interpolate  in-betweens or a weighted blend → objects
    explore      principal-direction variations, seeded random variants → objects with their recipes
    info         list a library's shapes (no backend needed)
    check        start the backend and report Python, torch, CUDA and device
    setup        create the backend environment in the extension's user folder (downloads)

Exit codes: 0 success, 1 the job failed (message on stderr), 2 bad arguments or input,
3 backend not available, 4 cancelled.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import bpy

from .backend.config import (DEFAULT_FRAME, DEFAULT_PRESET, DEFAULT_SIZE, DEFAULT_SPREAD, DEVICES, FRAMES, PACES, PRESETS,
                             SIZES, DecodeConfig, EncodeConfig, ExploreConfig, TrainConfig, setting)
from .backend.field.blend_modes import BLEND_MODES
from .backend.latent.recipes import MAX_VARIATIONS
from .operators.scene_library import read_meta
from .operators.session import UserError
from .preferences import get_prefs

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BACKEND, EXIT_CANCELLED = 0, 1, 2, 3, 4

IMPORTERS: dict[str, Callable[..., set[str]]] = {
    ".obj": lambda path: bpy.ops.wm.obj_import(filepath=path),
    ".ply": lambda path: bpy.ops.wm.ply_import(filepath=path),
    ".stl": lambda path: bpy.ops.wm.stl_import(filepath=path),
}


def import_mesh_file(context: bpy.types.Context, path: Path) -> list[bpy.types.Object]:
    """Import a mesh file with Blender's importer; objects are named after the file (``stem``,
    or ``stem_<object>`` when the file holds several)."""
    before = set(context.scene.objects.keys())
    IMPORTERS[path.suffix.lower()](str(path.resolve()))
    created = [obj for obj in context.scene.objects if obj.name not in before]
    for obj in created:
        obj.name = path.stem if len(created) == 1 else f"{path.stem}_{obj.name}"
    return created


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that raises instead of exiting Blender."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if message:
            print(message, file=sys.stderr)
        raise _Exit(status)


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="blender -b [file.blend] --command compact_sdf", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser, *, outputs: bool = True) -> None:
        p.add_argument("--blend", help="open this .blend file first")
        p.add_argument("--python", help="backend Python for this run (default: the preference)")
        p.add_argument("--device", choices=list(DEVICES), help="compute device for this run (default: the preference)")
        if outputs:
            p.add_argument("--save-blend", metavar="FILE", help="save the resulting scene to this .blend")
            p.add_argument("--export-dir", metavar="DIR", help="write each created object as DIR/<name>.obj")
            p.add_argument("--resolution", type=int, default=DecodeConfig().interactive_resolution,
                           help="decoding grid resolution (default %(default)s, as in the panel)")
            p.add_argument("--heatmap", action="store_true", help="add the fidelity heatmap colour attribute")

    p = sub.add_parser("encode", help="encode mesh objects and/or mesh files into a library")
    p.add_argument("--library", required=True, help="library file (.csdf) to create or add to")
    p.add_argument("--objects", nargs="+", default=[], metavar="NAME", help="mesh objects (default: all)")
    p.add_argument("--meshes", nargs="+", default=[], metavar="FILE", help="mesh files (.obj, .ply, .stl); shapes are named after the files")
    p.add_argument("--mode", choices=("auto", "new", "add"), default="auto", help="new library or add to it")
    p.add_argument("--preset", choices=list(PRESETS), default=DEFAULT_PRESET)
    p.add_argument("--size", choices=list(SIZES), default=DEFAULT_SIZE, help="bytes each shape's detail may use")
    p.add_argument("--frame", choices=list(FRAMES), default=DEFAULT_FRAME,
                   help="shared: one frame for all (poses, variants: in-betweens stay in place and at scale); "
                        "per-shape: each its own box; auto: chosen from the meshes")
    p.add_argument("--steps", type=int, default=0, help="training steps (0: the preset's)")
    p.add_argument("--seed", type=int, default=EncodeConfig().seed)
    p.add_argument("--reconstruct", action="store_true", help="then decode every encoded shape")
    common(p)

    p = sub.add_parser("reconstruct", help="decode library shapes into objects")
    p.add_argument("--library", required=True)
    p.add_argument("--shapes", nargs="+", default=[], metavar="NAME", help="shapes (default: all)")
    common(p)

    p = sub.add_parser("interpolate", help="decode in-betweens or a weighted blend")
    p.add_argument("--library", required=True)
    p.add_argument("--shapes", nargs="+", required=True, metavar="NAME", help="two or more shapes, in order")
    p.add_argument("--count", type=int, default=DecodeConfig().count, help="shapes along the path, endpoints included")
    p.add_argument("--weights", nargs="+", type=float, metavar="W", help="one blend with these weights instead")
    p.add_argument("--mode", choices=list(BLEND_MODES), default=DecodeConfig().mode)
    p.add_argument("--detail", type=float, default=DecodeConfig().detail,
                   help="detail dial of blends: 0 coarse shape only, 1 full detail (default %(default)s)")
    p.add_argument("--shape-keys", action="store_true",
                   help="morph --object (the first shape's own mesh) along the path into shape keys instead "
                        "(--mode morph), played by its Blend property")
    p.add_argument("--object", metavar="NAME", help="the mesh object --shape-keys morphs")
    p.add_argument("--pace", choices=PACES, default=DecodeConfig().pace,
                   help="uniform: evenly spaced weights; even: each step changes the shape about as much")
    common(p)

    p = sub.add_parser("explore", help="variations along principal directions, seeded random variants")
    p.add_argument("--library", required=True)
    p.add_argument("--base", nargs="+", default=[], metavar="NAME[=WEIGHT]",
                   help="start from this shape or blend (default: the library's mean code)")
    p.add_argument("--vary", nargs="+", type=float, default=[], metavar="SIGMAS",
                   help=f"standard deviations along principal directions 1, 2, … (at most {MAX_VARIATIONS})")
    p.add_argument("--random", nargs="+", type=int, default=[], metavar="SEED", help="one seeded random variant per seed")
    p.add_argument("--spread", type=float, default=DEFAULT_SPREAD,
                   help="how far random variants move from their blend of library shapes, in standard deviations")
    p.add_argument("--detail", type=float, default=DecodeConfig().detail, help="detail dial of an unmoved blend")
    p.add_argument("--nearest", type=int, default=ExploreConfig().nearest, help="how many nearest shapes to report")
    p.add_argument("--mode", choices=list(BLEND_MODES), default=DecodeConfig().mode)
    common(p)

    p = sub.add_parser("info", help="list a library's shapes")
    p.add_argument("--library", required=True)
    p.add_argument("--json", action="store_true", help="print the metadata as JSON")

    p = sub.add_parser("check", help="report the backend's Python, torch, CUDA and device")
    common(p, outputs=False)

    sub.add_parser("setup", help="create the backend environment (downloads torch)")
    return parser


def run(argv: list[str]) -> int:
    """Entry point registered with ``bpy.utils.register_cli_command``."""
    try:
        args = build_parser().parse_args(argv)
    except UserError as exc:
        print(f"compact_sdf: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _Exit as exc:
        return exc.code
    context = bpy.context
    prefs = get_prefs(context)
    saved = (prefs.python_path, prefs.device)
    try:
        if getattr(args, "blend", None):
            bpy.ops.wm.open_mainfile(filepath=str(Path(args.blend).resolve()))
            context = bpy.context
        if getattr(args, "python", None):
            prefs.python_path = args.python
        if getattr(args, "device", None):
            prefs.device = args.device
        return COMMANDS[args.command](context, args)
    except UserError as exc:
        print(f"compact_sdf: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        prefs.python_path, prefs.device = saved


def _call(context: bpy.types.Context, operator: Callable[..., set[str]], **kwargs: object) -> int:
    """Run an operator; print its outcome; map it to an exit code."""
    backend = context.window_manager.csdf_backend
    job = context.window_manager.csdf_job
    job.last_result = ""
    try:
        result = operator(**kwargs)
    except RuntimeError as exc:
        message = str(exc).strip().removeprefix("Error: ").strip()
        print(f"compact_sdf: {message}", file=sys.stderr)
        if backend.state in {"MISSING", "ERROR"}:
            return EXIT_BACKEND
        return EXIT_USAGE if not job.last_result else EXIT_FAILED
    if job.last_result:
        print(f"compact_sdf: {job.last_result}")
    return EXIT_OK if "FINISHED" in result else EXIT_CANCELLED


def _select(context: bpy.types.Context, objects: list[bpy.types.Object]) -> None:
    for obj in context.scene.objects:
        obj.select_set(obj in objects)


def _configure(context: bpy.types.Context, args: argparse.Namespace) -> None:
    settings = context.scene.csdf
    settings.library_path = str(Path(args.library).resolve())
    _check_range("--resolution", args.resolution, DecodeConfig, "interactive_resolution")
    settings.resolution = args.resolution
    settings.heatmap = args.heatmap
    if Path(settings.library_path).is_file():
        from .operators.shape_list import refresh_shapes

        refresh_shapes(settings, read_meta(Path(settings.library_path)))


def _use(context: bpy.types.Context, names: list[str]) -> None:
    settings = context.scene.csdf
    known = {item.name for item in settings.shapes}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UserError(f"not in {Path(settings.library_path).name}: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    for item in settings.shapes:
        item.use = not names or item.name in names


def _outputs(context: bpy.types.Context, args: argparse.Namespace, before: set[str]) -> None:
    """Write the objects created since ``before`` as .obj files and/or save the .blend."""
    created = [obj for obj in context.scene.objects if obj.name not in before and obj.type == "MESH"]
    if args.export_dir:
        folder = Path(args.export_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for obj in created:
            _select(context, [obj])
            context.view_layer.objects.active = obj
            path = folder / f"{bpy.path.clean_name(obj.name)}.obj"
            bpy.ops.wm.obj_export(filepath=str(path), export_selected_objects=True, export_materials=False)
            print(f"compact_sdf: wrote {path}")
    if args.save_blend:
        bpy.ops.wm.save_as_mainfile(filepath=str(Path(args.save_blend).resolve()))
        print(f"compact_sdf: saved {args.save_blend}")


def cmd_encode(context: bpy.types.Context, args: argparse.Namespace) -> int:
    settings = context.scene.csdf
    settings.library_path = str(Path(args.library).resolve())
    settings.encode_mode = args.mode.upper()
    if args.steps:  # 0: the preset's
        _check_range("--steps", args.steps, TrainConfig, "steps")
    _check_range("--seed", args.seed, EncodeConfig, "seed")
    settings.preset, settings.size, settings.steps, settings.seed = args.preset, args.size, args.steps, args.seed
    settings.frame = args.frame
    objects = []
    for name in args.objects:
        obj = context.scene.objects.get(name)
        if obj is None:
            raise UserError(f"no object named '{name}' in the scene")
        objects.append(obj)
    for path in args.meshes:
        suffix = Path(path).suffix.lower()
        if suffix not in IMPORTERS or not Path(path).is_file():
            raise UserError(f"{path}: not a readable {'/'.join(IMPORTERS)} file")
        objects += import_mesh_file(context, Path(path))
    if not args.objects and not args.meshes:
        objects = [obj for obj in context.scene.objects if obj.type == "MESH"]
    _select(context, objects)
    before = set(context.scene.objects.keys())
    code = _call(context, bpy.ops.csdf.encode_selected)
    if code != EXIT_OK or not args.reconstruct:
        if code == EXIT_OK:
            _outputs(context, args, before)
        return code
    _configure(context, args)
    _use(context, [obj.name for obj in objects if obj.type == "MESH"])
    code = _call(context, bpy.ops.csdf.reconstruct)
    if code == EXIT_OK:
        _outputs(context, args, before)
    return code


def cmd_reconstruct(context: bpy.types.Context, args: argparse.Namespace) -> int:
    _configure(context, args)
    _use(context, args.shapes)
    before = set(context.scene.objects.keys())
    code = _call(context, bpy.ops.csdf.reconstruct)
    if code == EXIT_OK:
        _outputs(context, args, before)
    return code


def cmd_interpolate(context: bpy.types.Context, args: argparse.Namespace) -> int:
    if len(args.shapes) < 2 and not args.weights:
        raise UserError("interpolate needs two or more --shapes")
    _configure(context, args)
    _use(context, args.shapes)
    settings = context.scene.csdf
    _check_range("--detail", args.detail, DecodeConfig, "detail")
    _check_range("--count", args.count, DecodeConfig, "count")
    settings.interp_count, settings.blend_mode, settings.detail = args.count, args.mode, args.detail
    settings.interp_pace = args.pace
    if args.weights:
        if len(args.weights) != len(args.shapes):
            raise UserError(f"{len(args.weights)} --weights for {len(args.shapes)} --shapes")
        for name, weight in zip(args.shapes, args.weights):
            settings.shapes[name].weight = weight
    settings.interp_shape_keys = args.shape_keys
    if args.shape_keys:
        if args.weights or args.mode != "morph":
            raise UserError("--shape-keys morphs a path: use it with --mode morph and without --weights")
        obj = bpy.data.objects.get(args.object or "")
        if obj is None or obj.type != "MESH":
            raise UserError(f"--shape-keys needs --object naming a mesh object, got {args.object!r}")
        _select(context, [obj])
        context.view_layer.objects.active = obj
    before = set(context.scene.objects.keys())
    code = _call(context, bpy.ops.csdf.interpolate, mode="WEIGHTS" if args.weights else "PATH")
    if code == EXIT_OK:
        _outputs(context, args, before)
    return code


def _check_range(option: str, value: float, settings: type, name: str) -> None:
    """UserError unless ``value`` lies in the range of the config setting ``settings.name``."""
    allowed = setting(settings, name)
    if not allowed.contains(value):
        raise UserError(f"{option} must be between {allowed.low} and {allowed.high}, got {value}")


def cmd_explore(context: bpy.types.Context, args: argparse.Namespace) -> int:
    _check_range("--detail", args.detail, DecodeConfig, "detail")
    if len(args.vary) > MAX_VARIATIONS:
        raise UserError(f"--vary takes at most {MAX_VARIATIONS} amounts (use `python -m backend explore` for more)")
    for amount in args.vary:
        _check_range("--vary", amount, ExploreConfig, "amount")
    for seed in args.random:
        _check_range("--random", seed, ExploreConfig, "seed")
    _check_range("--spread", args.spread, ExploreConfig, "spread")
    _check_range("--nearest", args.nearest, ExploreConfig, "nearest")
    settings = context.scene.csdf
    live = settings.live_preview
    settings.live_preview = False  # no preview timers: each variant is decoded once, at --resolution
    try:
        return _explore(context, args)
    finally:
        settings.live_preview = live


def _explore(context: bpy.types.Context, args: argparse.Namespace) -> int:
    _configure(context, args)
    settings = context.scene.csdf
    base = {}
    for entry in args.base:
        name, _, weight = entry.partition("=")
        try:
            base[name] = float(weight) if weight else 1.0
        except ValueError:
            raise UserError(f"--base {entry}: the weight is not a number") from None
    _use(context, list(base) or [item.name for item in settings.shapes])
    if len(base) == 1:
        settings.active_shape = settings.shapes.find(next(iter(base)))
    for name, weight in base.items():
        settings.shapes[name].weight = weight
    settings.detail, settings.blend_mode = args.detail, args.mode
    settings.explore_spread, settings.nearest_count = args.spread, args.nearest
    settings.variation = [*args.vary, *[0.0] * (MAX_VARIATIONS - len(args.vary))]
    before = set(context.scene.objects.keys())
    if args.random:
        if base:  # the units of the variants
            settings.active_shape = settings.shapes.find(next(iter(base)))
        for seed in args.random:
            settings.explore_source, settings.explore_seed = "RANDOM", seed
            code = _call(context, bpy.ops.csdf.explore_decode)
            if code != EXIT_OK:
                return code
    else:
        settings.explore_source = "SHAPE" if len(base) == 1 else "WEIGHTS" if base else "MEAN"
        code = _call(context, bpy.ops.csdf.explore_decode)
        if code != EXIT_OK:
            return code
    _outputs(context, args, before)
    return EXIT_OK


def cmd_info(context: bpy.types.Context, args: argparse.Namespace) -> int:
    meta = read_meta(Path(args.library))
    if args.json:
        print(json.dumps(meta, indent=1))
        return EXIT_OK
    from .backend.store.library_meta import shape_frame
    from .operators.shape_list import encode_errors

    shapes = meta.get("shapes", [])
    print(f"{args.library}: {len(shapes)} shapes, preset {meta.get('preset')}, format {meta.get('format_version')}")
    for shape in shapes:
        near, far = encode_errors(shape.get("stats") or {})
        quality = f"SDF error near surface {near:.3g}, far {far:.3g}" if near >= 0 else "fidelity not measured"
        print(f"  {shape['name']:<24} code {shape.get('code_size')}  frame {shape_frame(shape):<9}  {quality}")
    return EXIT_OK


def cmd_check(context: bpy.types.Context, args: argparse.Namespace) -> int:
    code = _call(context, bpy.ops.csdf.check_backend)
    return EXIT_BACKEND if code != EXIT_OK else code


def cmd_setup(context: bpy.types.Context, args: argparse.Namespace) -> int:
    code = _call(context, bpy.ops.csdf.setup_backend)
    if code == EXIT_OK:
        print(f"compact_sdf: {context.window_manager.csdf_backend.setup_message}")
    return EXIT_BACKEND if code != EXIT_OK else code


COMMANDS: dict[str, Callable[[bpy.types.Context, argparse.Namespace], int]] = {
    "encode": cmd_encode,
    "reconstruct": cmd_reconstruct,
    "interpolate": cmd_interpolate,
    "explore": cmd_explore,
    "info": cmd_info,
    "check": cmd_check,
    "setup": cmd_setup,
}
