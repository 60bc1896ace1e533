"""``python -m bench.frames FOLDER...``: the frame ``auto`` picks for each folder's meshes, encoded together.

No training: it reads the meshes and applies ``geometry.frames.choose_frame`` as ``api.encode``
does, then prints the decision, its reason, and the numbers the rule looks at (pairwise box IoU,
longest-side ratio, how much of its own scale each shape keeps in the common box). ``--pairs``
also lists every pair of a folder that would pick shared on its own.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from backend.geometry.frames import MAX_EXTENT_RATIO, MIN_BOX_IOU, box_iou, boxes, choose_frame, looks_shared
from backend.geometry.meshes import MESH_SUFFIXES, load_mesh, validate_mesh


def decide(folder: Path, pairs: bool = False) -> list[str]:
    """Lines describing the auto decision for the meshes of ``folder``."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in MESH_SUFFIXES)
    meshes = {p.stem: validate_mesh(load_mesh(p), p.stem) for p in paths}
    choice = choose_frame("auto", meshes)
    b = boxes(list(meshes.values()))
    longest = (b[:, 1] - b[:, 0]).max(axis=1)
    common = float((b[:, 1].max(axis=0) - b[:, 0].min(axis=0)).max())
    names = list(meshes)
    ious = {(i, j): box_iou(b[i], b[j]) for i, j in itertools.combinations(range(len(names)), 2)}
    ratios = {(i, j): max(longest[i], longest[j]) / min(longest[i], longest[j]) for i, j in ious}
    lines = [f"{folder.name}: {len(meshes)} meshes -> {choice.frame} ({choice.reason})",
             f"  pairwise box IoU min {min(ious.values()):.3f} median {np.median(list(ious.values())):.3f}; "
             f"longest-side ratio max {max(ratios.values()):.3f}; smallest scale kept in the common box "
             f"{longest.min() / common:.3f}"]
    if pairs:
        passing = [(ious[k], ratios[k], names[k[0]], names[k[1]]) for k in ious
                   if looks_shared([meshes[names[k[0]]], meshes[names[k[1]]]])[0]]
        lines.append(f"  pairs that would pick shared on their own: {len(passing)} of {len(ious)} "
                     f"(box rule: IoU >= {MIN_BOX_IOU}, ratio <= {MAX_EXTENT_RATIO}; or one connectivity)")
        lines += [f"    {a} + {c}: IoU {i:.3f}, ratio {r:.3f}" for i, r, a, c in sorted(passing, reverse=True)]
        best = max(((ious[k], names[k[0]], names[k[1]]) for k in ious
                    if not looks_shared([meshes[names[k[0]]], meshes[names[k[1]]]])[0]), default=None)
        if best is not None:
            lines.append(f"  best pair that stays per-shape: {best[1]} + {best[2]}, IoU {best[0]:.3f}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.frames", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--pairs", action="store_true", help="also list the pairs that would pick shared alone")
    args = parser.parse_args(argv)
    for folder in args.folders:
        print("\n".join(decide(folder, args.pairs)))


if __name__ == "__main__":
    main()
