"""Fidelity of decoded meshes (DESIGN §3), the cached oracle, interpolation paths, and per-vertex
errors for the heatmaps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.geometry import metrics
from backend.api import decode
from backend.store.library import Library
from backend.geometry.meshes import Mesh, normalization
from backend.geometry.metrics import compare_meshes, component_count, fidelity_ratio, is_closed, point_to_mesh_distance


def as_mesh(decoded) -> Mesh:
    """A DecodedMesh (or any vertices/faces holder) as a backend Mesh."""
    return Mesh(decoded.vertices, decoded.faces)


def oracle(mesh: Mesh, resolution: int, cache_dir: Path | None) -> Mesh:
    """The oracle mesh at ``resolution``, memoised on disk by mesh content hash (plain .npz)."""
    if cache_dir is None:
        return metrics.oracle_mesh(mesh.vertices, mesh.faces, resolution)
    path = Path(cache_dir) / f"oracle-{mesh.content_hash()[:24]}-{resolution}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return Mesh(data["vertices"], data["faces"])
    result = metrics.oracle_mesh(mesh.vertices, mesh.faces, resolution)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, vertices=result.vertices, faces=result.faces)
    tmp.replace(path)
    return result


def fidelity(gt: Mesh, rec: Mesh, oracle_cd_l1: float | None, n_samples: int, seed: int) -> dict:
    """compare_meshes metrics plus fidelity ratio (``None``: ``rec`` is the oracle itself), component
    count and closedness of ``rec``."""
    m = compare_meshes(gt, rec, n_samples=n_samples, seed=seed).to_dict()
    oracle_cd_l1 = m["cd_l1"] if oracle_cd_l1 is None else oracle_cd_l1
    return {
        "cd_l1": m["cd_l1"], "cd_l2": m["cd_l2"], "f_0.005": m["fscore_0_005"], "f_0.01": m["fscore_0_01"],
        "nc": m["normal_consistency"], "hd": m["hausdorff"],
        "fidelity_ratio": fidelity_ratio(m["cd_l1"], oracle_cd_l1) if np.isfinite(m["cd_l1"]) else float("inf"),
        "components": component_count(rec.faces), "closed": is_closed(rec.faces), "faces": int(len(rec.faces)),
    }


def normalized(gt: Mesh, mesh: Mesh) -> np.ndarray:
    """``mesh``'s vertices in ``gt``'s normalised frame (DESIGN §3)."""
    return normalization(gt.vertices).apply(mesh.vertices)


def vertex_errors(gt: Mesh, mesh: Mesh) -> np.ndarray:
    """Distance from each vertex of ``mesh`` to the ground-truth surface, in normalised units."""
    norm = normalization(gt.vertices)
    if len(mesh.vertices) == 0:
        return np.zeros(0)
    return point_to_mesh_distance(norm.apply(mesh.vertices), norm.apply(gt.vertices), gt.faces).distance


def roughness_deg(mesh: Mesh) -> float:
    """Mean angle in degrees between the normals of faces that share an edge (edges with exactly
    two faces; degenerate faces left out). Compare meshes decoded at the same resolution."""
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    if len(f) < 2:
        return float("nan")
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    norm = np.linalg.norm(n, axis=1)
    good = norm > 1e-20
    n = n / np.maximum(norm, 1e-20)[:, None]
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    face = np.tile(np.arange(len(f)), 3)
    order = np.lexsort((edges[:, 1], edges[:, 0]))
    edges, face = edges[order], face[order]
    same = np.all(edges[1:] == edges[:-1], axis=1)
    start = np.flatnonzero(same)
    # keep runs of exactly two faces per edge (manifold edges)
    run_start = np.r_[True, ~same]
    run_id = np.cumsum(run_start) - 1
    counts = np.bincount(run_id)
    start = start[counts[run_id[start]] == 2]
    a, b = face[start], face[start + 1]
    ok = good[a] & good[b]
    if not ok.any():
        return float("nan")
    cos = np.clip(np.einsum("ij,ij->i", n[a[ok]], n[b[ok]]), -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)).mean())


def one_closed_piece(mesh: Mesh) -> bool:
    """One connected component and closed (every edge shared by exactly two faces)."""
    return len(mesh.faces) > 0 and component_count(mesh.faces) == 1 and is_closed(mesh.faces)


@dataclass
class PathQuality:
    """An interpolation path a → b: its meshes (normalised frame) and quality numbers."""

    meshes: list[Mesh]
    weights: list[float]
    single_piece: list[bool]  #: per in-between: one closed piece
    endpoints_single_piece: bool  #: both endpoints one closed piece
    roughness: list[float]  #: per mesh, endpoints included (degrees)
    endpoint_cd_l1: float
    step_cd_l1: list[float]
    inbetween_s: list[float]  #: decode seconds per in-between

    @property
    def max_step_ratio(self) -> float:
        """Largest step's CD ÷ (endpoint CD ÷ number of steps): 1 for evenly spaced steps."""
        return float(max(self.step_cd_l1) / (self.endpoint_cd_l1 / len(self.step_cd_l1)))

    @property
    def roughness_ratio(self) -> float:
        """Roughest in-between ÷ the rougher endpoint."""
        middle = [r for r in self.roughness[1:-1] if np.isfinite(r)]  # empty in-betweens have no roughness
        ends = [r for r in (self.roughness[0], self.roughness[-1]) if np.isfinite(r)]
        return float(max(middle) / max(ends)) if middle and ends else float("nan")


def interpolation_path(lib: Library, a: str, b: str, inbetweens: int, resolution: int, band: float, detail: float,
                       n_samples: int, seed: int, endpoints: dict[str, Mesh] | None = None) -> PathQuality:
    """Decode a, ``inbetweens`` blends (the default blend mode) and b in the normalised frame (``endpoints``: a cache
    of already decoded shapes at this resolution); single-piece flags, roughness, step CDs."""
    weights = [float(w) for w in np.linspace(0.0, 1.0, inbetweens + 2)]
    endpoints = {} if endpoints is None else endpoints
    for name in (a, b):
        if name not in endpoints:
            endpoints[name] = as_mesh(decode(lib, name, resolution=resolution, normalized=True))
    meshes, seconds = [endpoints[a]], []
    for t in weights[1:-1]:
        dec = decode(lib, {a: 1.0 - t, b: t}, resolution=resolution, band=band, detail=detail, normalized=True)
        meshes.append(as_mesh(dec))
        seconds.append(dec.stats["seconds"])
    meshes.append(endpoints[b])
    end = compare_meshes(meshes[0], meshes[-1], n_samples=n_samples, seed=seed).cd_l1
    steps = [_step_cd(p, q, n_samples, seed) for p, q in zip(meshes, meshes[1:])]
    return PathQuality(meshes, weights, [one_closed_piece(m) for m in meshes[1:-1]],
                       one_closed_piece(meshes[0]) and one_closed_piece(meshes[-1]), [roughness_deg(m) for m in meshes],
                       float(end), [float(s) for s in steps], seconds)


def _step_cd(p: Mesh, q: Mesh, n_samples: int, seed: int) -> float:
    """CD-L1 between two steps of a path; infinite where one of them has no surface (a vanished in-between)."""
    if len(p.faces) == 0 or len(q.faces) == 0:
        return float("inf")
    return compare_meshes(p, q, n_samples=n_samples, seed=seed).cd_l1

