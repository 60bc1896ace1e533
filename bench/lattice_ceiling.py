"""``python -m bench.lattice_ceiling MESH...``: what a stored lattice of exact distances can give at
finer decode resolutions, with no network involved (issue 21, item 1).

For each mesh and storage lattice S³, the exact signed distance at every node within ``--band``
voxels of the surface is kept (rounded to 8 bits over the band, as channel 0 stores it, unless
``--exact``); every other node takes the sign its band encloses (``decode.fill_outside_band``).
That volume is read at the R³ decode lattice trilinearly (what the engine's skip term does) or
with Catmull-Rom cubic weights where all 64 stencil nodes are stored (trilinear elsewhere), meshed
with marching cubes, and compared with the source (CD-L1, DESIGN §3) next to the meshing limit of
each R (the oracle). A ceiling for any decoder that only interpolates what it stores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage

import torch

from backend.field import model
from backend.field.decode import fill_outside_band, marching_cubes
from backend.geometry.meshes import load_mesh
from backend.geometry.metrics import compare_meshes, normalization, oracle_mesh
from backend.geometry.sampling import band_lattice, lattice_spacing


def catmull_rom(t: np.ndarray) -> np.ndarray:
    """Catmull-Rom weights (..., 4) of the nodes at offsets -1, 0, 1, 2 for fractions ``t`` in [0, 1]
    (the engine's own, ``field.model.catmull_rom``)."""
    return model.catmull_rom(torch.from_numpy(np.asarray(t, np.float64))).numpy()


def stored_volume(vertices: np.ndarray, faces: np.ndarray, storage: int, band: float,
                  exact: bool) -> tuple[np.ndarray, np.ndarray]:
    """(volume S³, stored-node mask S³) of a mesh in its normalised frame."""
    h = lattice_spacing(storage)
    nodes = band_lattice(vertices, faces, storage, (band + 0.5) * h)
    keep = np.abs(nodes.sdf) <= band * h
    index, sdf = nodes.index[keep], nodes.sdf[keep]
    if not exact:
        scale = max(float(np.abs(sdf).max()), 1e-12) / 127
        sdf = np.rint(sdf / scale) * scale
    volume = fill_outside_band(index, sdf.astype(np.float32), storage, fill=band * h)
    present = np.zeros(storage**3, bool)
    present[index] = True
    return volume, present.reshape(volume.shape)


def read_at(volume: np.ndarray, present: np.ndarray, resolution: int, cubic: bool) -> tuple[np.ndarray, float]:
    """The stored volume read on the ``resolution``³ lattice, and the share of near-surface nodes
    that fell back to trilinear reading (cubic only)."""
    storage = volume.shape[0]
    axis = np.arange(resolution) * (storage - 1) / (resolution - 1)
    out = ndimage.map_coordinates(volume, np.meshgrid(axis, axis, axis, indexing="ij"), order=1).astype(np.float32)
    if not cubic:
        return out, 0.0
    near = np.flatnonzero(np.abs(out).ravel() < 1.5 * lattice_spacing(storage))
    u = np.stack(np.unravel_index(near, out.shape), 1) * (storage - 1) / (resolution - 1)
    base = np.clip(np.floor(u).astype(np.int64), 1, storage - 3)
    weights = catmull_rom(u - base)
    value, complete = np.zeros(len(near)), np.ones(len(near), bool)
    for a in range(4):
        for b in range(4):
            for c in range(4):
                i, j, k = base[:, 0] + a - 1, base[:, 1] + b - 1, base[:, 2] + c - 1
                value += weights[:, 0, a] * weights[:, 1, b] * weights[:, 2, c] * volume[i, j, k]
                complete &= present[i, j, k]
    out.reshape(-1)[near[complete]] = value[complete]
    return out, float(1 - complete.mean()) if len(near) else 0.0


def measure(path: Path, storages: list[int], resolutions: list[int], band: float, exact: bool) -> list[str]:
    """Markdown rows: mesh, S, R, reading, CD-L1, oracle CD-L1 at R, ratio, fallback share."""
    mesh = load_mesh(path)
    v, f = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces)
    norm = normalization(v)
    oracle = {r: compare_meshes((v, f), oracle_mesh(v, f, r)).cd_l1 for r in resolutions}
    rows = []
    for storage in storages:
        volume, present = stored_volume(norm.apply(v), f, storage, band, exact)
        for resolution in resolutions:
            for cubic in (False, True):
                read, fallback = read_at(volume, present, resolution, cubic)
                verts, tris, _ = marching_cubes(read)
                cd = compare_meshes((v, f), (norm.invert(verts.astype(np.float64)), tris)).cd_l1
                rows.append(f"| {path.stem} | {storage}³ ±{band:g} | {resolution}³ | {'cubic' if cubic else 'trilinear'} | "
                            f"{cd:.3g} | {oracle[resolution]:.3g} | {cd / oracle[resolution]:.2f} | {fallback:.0%} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("meshes", nargs="+", type=Path)
    parser.add_argument("--storage", type=int, nargs="+", default=[128, 256], help="storage lattices S")
    parser.add_argument("--resolution", type=int, nargs="+", default=[256, 384, 512], help="decode lattices R")
    parser.add_argument("--band", type=float, default=2.0, help="stored band half-width in storage voxels")
    parser.add_argument("--exact", action="store_true", help="keep float distances (no 8-bit rounding)")
    args = parser.parse_args()
    print("| mesh | storage | decode | reading | CD-L1 | oracle CD-L1 | ratio | trilinear fallback |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.meshes:
        print("\n".join(measure(path, args.storage, args.resolution, args.band, args.exact)), flush=True)


if __name__ == "__main__":
    main()
