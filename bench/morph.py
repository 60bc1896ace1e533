"""``python -m bench.morph FAMILY [--library LIB] ...``: how well in-betweens of two poses morph.

A pose family is a folder of meshes with one connectivity (vertex *i* is the same point of the body
in every pose), so the vertex blend ``(1 - t)·V_a + t·V_b`` is a reference in-between. For each pair
of poses and each in-between position ``t`` this prints (issue 20's definitions):

- **morph error** = CD-L1(in-between, reference) ÷ CD-L1(nearer end pose, reference), both in the
  reference's frame (DESIGN §3): 0 is the reference, 1 no better than snapping to the nearer pose;
- the same for the **exact blend** ``(1 - t)·d_a + t·d_b`` of the two poses' exact signed distances,
  marched on the same lattice in the family's common frame (what a perfect distance cross-fade gives);
- the **floor**: marching cubes of the reference's own exact SDF at that lattice (a perfect morph);
- pieces of each, against the floor's own count (thin parts break at the meshing limit).

With ``--library`` (a library encoded from the family, shape names = file stems) the engine's
in-betweens (``api.interpolate``) are measured too, in every ``--mode`` asked for. Everything but
that library is computed here, so a run needs no training.

``python -m bench.morph --collection LIB`` measures instead every pair of an encoded collection of
unrelated shapes (no reference in-between exists there): per ``--mode``, the share of in-betweens
that are one closed piece, the share of paths whose roughest in-between is within 1.1× the
rougher end, the pairs a morph fell back on (and why), and seconds per path.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from backend.geometry.meshes import MESH_SUFFIXES, Mesh, load_mesh, normalization
from backend.geometry.metrics import compare_meshes, component_count, oracle_mesh, sdf_lattice


@dataclass
class InBetween:
    """One in-between of one pair by one method."""

    pair: str
    method: str
    t: float
    morph_error: float
    cd_l1: float
    pieces: int
    floor_pieces: int


def load_family(folder: Path) -> dict[str, Mesh]:
    """The family's poses by file stem; SystemExit unless they share one face list."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in MESH_SUFFIXES)
    poses = {p.stem: load_mesh(p) for p in files}
    if len(poses) < 2:
        raise SystemExit(f"{folder}: a family needs at least two meshes")
    first = next(iter(poses.values()))
    for name, mesh in poses.items():
        if mesh.faces.shape != first.faces.shape or not np.array_equal(mesh.faces, first.faces):
            raise SystemExit(f"{folder}: {name} does not share the first pose's face list (not one connectivity)")
    return poses


def marched(volume: np.ndarray, frame) -> Mesh:
    """Zero level set of a lattice volume over [-1, 1]³, mapped out of ``frame`` (a Normalization)."""
    from backend.field.decode import marching_cubes

    v, f, _ = marching_cubes(volume)
    return Mesh(frame.invert(v), f.astype(np.int64))


def morph_error(candidate: Mesh, reference: Mesh, nearer: Mesh, samples: int) -> tuple[float, float]:
    """(morph error, CD-L1 to the reference) of ``candidate``; infinite for an empty one."""
    if len(candidate.faces) == 0:
        return float("inf"), float("inf")
    cd = compare_meshes(reference, candidate, samples).cd_l1
    snap = compare_meshes(reference, nearer, samples).cd_l1
    return cd / snap, cd


def run(args: argparse.Namespace) -> list[InBetween]:
    poses = load_family(args.family)
    names = list(poses)
    pairs = [tuple(p.split(":")) for p in args.pairs] if args.pairs else list(itertools.combinations(names, 2))
    ts = [i / (args.count - 1) for i in range(1, args.count - 1)]
    frame = normalization(np.concatenate([m.vertices for m in poses.values()]))  # the family's common frame
    used = sorted({n for pair in pairs for n in pair})
    started = time.perf_counter()
    fields = {n: sdf_lattice(frame.apply(poses[n].vertices), poses[n].faces, args.resolution, narrow_band=False)
              for n in used}
    print(f"exact fields of {len(used)} poses at {args.resolution}³: {time.perf_counter() - started:.1f} s", flush=True)
    library = None
    if args.library:
        from backend.store.library import Library

        library = Library.load(args.library)
    rows: list[InBetween] = []
    correspondence: list[tuple[str, float, float]] = []
    for a, b in pairs:
        engine = {}
        if library is not None:
            from backend.api import correspond, interpolate

            mapped = correspond(library, a, b, poses[a].vertices, resolution=args.resolution)
            if mapped.positions is not None:
                gap = np.linalg.norm(mapped.positions[1] - poses[b].vertices, axis=1) * 1.8 / np.ptp(poses[b].vertices, 0).max()
                correspondence.append((f"{a}->{b}", float(gap.mean()), float(np.median(gap))))
                print(f"{a}->{b} correspondence: mean {gap.mean():.4f}, median {np.median(gap):.4f} (DESIGN §3 units)",
                      flush=True)

            for mode in args.mode:
                path = interpolate(library, [a, b], args.count, mode=mode, resolution=args.resolution)
                engine[mode] = [Mesh(m.vertices.astype(np.float64), m.faces.astype(np.int64)) for m in path[1:-1]]
        for i, t in enumerate(ts):
            reference = Mesh((1 - t) * poses[a].vertices + t * poses[b].vertices, poses[a].faces)
            nearer = poses[a] if t <= 0.5 else poses[b]
            floor = oracle_mesh(reference.vertices, reference.faces, args.resolution)
            floor_pieces = component_count(floor.faces)
            candidates = {"floor": floor, "exact blend": marched((1 - t) * fields[a] + t * fields[b], frame)}
            candidates.update({f"engine {mode}": meshes[i] for mode, meshes in engine.items()})
            for method, mesh in candidates.items():
                error, cd = morph_error(mesh, reference, nearer, args.samples)
                rows.append(InBetween(f"{a}->{b}", method, round(t, 4), error, cd,
                                      component_count(mesh.faces) if len(mesh.faces) else 0, floor_pieces))
            done = [r for r in rows if r.pair == f"{a}->{b}" and r.t == round(t, 4)]
            print(f"{a}->{b} t={t:.3f}: " + ", ".join(f"{r.method} {r.morph_error:.3f} ({r.pieces} pc)" for r in done),
                  flush=True)
    if correspondence:
        means = [c[1] for c in correspondence]
        print(f"correspondence (api.correspond, each pose's vertices mapped onto the other): mean {np.mean(means):.4f}, "
              f"worst pair {max(means):.4f}, best {min(means):.4f} over {len(means)} pairs (DESIGN §3 units)")
    return rows


@dataclass
class CollectionPath:
    """One pair of a collection by one mode: pieces, roughness ratio, fallback and seconds."""

    pair: str
    method: str
    one_piece: list[bool]
    roughness_ratio: float
    fallback: str | None
    seconds: float


def run_collection(args: argparse.Namespace) -> list[CollectionPath]:
    from backend.api import interpolate
    from backend.store.library import Library

    from .evaluate import one_closed_piece, roughness_deg

    library = Library.load(args.collection)
    rows = []
    for a, b in itertools.combinations(library.names, 2):
        for mode in args.mode:
            started = time.perf_counter()
            path = interpolate(library, [a, b], args.count, mode=mode, resolution=args.resolution, normalized=True)
            seconds = time.perf_counter() - started
            meshes = [Mesh(m.vertices, m.faces.astype(np.int64)) for m in path]
            rough = [roughness_deg(m) for m in meshes]
            middle, ends = [r for r in rough[1:-1] if np.isfinite(r)], [r for r in (rough[0], rough[-1]) if np.isfinite(r)]
            rows.append(CollectionPath(f"{a}->{b}", f"engine {mode}", [one_closed_piece(m) for m in meshes[1:-1]],
                                       float(max(middle) / max(ends)) if middle and ends else float("nan"),
                                       path[1].stats.get("morph_fallback"), round(seconds, 2)))
            r = rows[-1]
            print(f"{r.pair} {mode}: one piece {sum(r.one_piece)}/{len(r.one_piece)}, roughness ×{r.roughness_ratio:.2f}, "
                  f"{r.seconds:.1f} s" + (f", fell back: {r.fallback}" if r.fallback else ""), flush=True)
    return rows


def collection_summary(rows: list[CollectionPath]) -> str:
    """A Markdown table per mode: one-piece share, smooth-path share, fallbacks, seconds per path."""
    lines = ["| method | one-piece in-betweens | paths with roughness ≤ 1.1× | fell back | mean s per path |",
             "|---|---|---|---|---|"]
    for method in dict.fromkeys(r.method for r in rows):
        mine = [r for r in rows if r.method == method]
        pieces = [p for r in mine for p in r.one_piece]
        smooth = [r.roughness_ratio <= 1.1 for r in mine]
        lines.append(f"| {method} | {sum(pieces)}/{len(pieces)} ({np.mean(pieces):.0%}) | {sum(smooth)}/{len(mine)} "
                     f"({np.mean(smooth):.0%}) | {sum(r.fallback is not None for r in mine)}/{len(mine)} | "
                     f"{np.mean([r.seconds for r in mine]):.1f} |")
    return "\n".join(lines)


def summary(rows: list[InBetween]) -> str:
    """A Markdown table: per method, mean and worst morph error, and pieces beyond the floor's."""
    lines = ["| method | mean morph error | worst | in-betweens above 0.6 | more pieces than the floor | empty |",
             "|---|---|---|---|---|---|"]
    for method in dict.fromkeys(r.method for r in rows):
        mine = [r for r in rows if r.method == method]
        errors = np.array([r.morph_error for r in mine])
        finite = errors[np.isfinite(errors)]
        lines.append(f"| {method} | {finite.mean():.3f} | {finite.max():.3f} | {int((errors > 0.6).sum())}/{len(mine)} | "
                     f"{sum(r.pieces > r.floor_pieces for r in mine)}/{len(mine)} | {int((~np.isfinite(errors)).sum())} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.morph", description=__doc__.split("\n\n")[0])
    p.add_argument("family", type=Path, nargs="?", help="folder of poses with one connectivity")
    p.add_argument("--collection", type=Path, help="instead: every pair of this library of unrelated shapes")
    p.add_argument("--pairs", nargs="*", help="pose pairs as a:b (default: every pair)")
    p.add_argument("--library", type=Path, help="a library encoded from the family: measure the engine too")
    p.add_argument("--mode", nargs="*", default=["slerp"], help="blend modes of the engine to measure")
    p.add_argument("--count", type=int, default=7, help="meshes per path, endpoints included")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--samples", type=int, default=50_000, help="surface samples per Chamfer distance")
    p.add_argument("--out", type=Path, help="write every in-between's numbers here as JSON")
    args = p.parse_args(argv)
    started = time.perf_counter()
    if args.collection:
        rows = run_collection(args)
        print(collection_summary(rows))
    elif args.family:
        rows = run(args)
        print(summary(rows))
    else:
        p.error("give a FAMILY folder or --collection LIB")
    print(f"{len(rows)} measurements in {time.perf_counter() - started:.0f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps([asdict(r) for r in rows], indent=1))


if __name__ == "__main__":
    main()
