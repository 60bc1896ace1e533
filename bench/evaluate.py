"""Fidelity of decoded meshes (DESIGN §3), the cached oracle, interpolation paths, and per-vertex
errors for the heatmaps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend import metrics
from backend.api import decode
from backend.library import Library
from backend.meshes import Mesh, normalization
from backend.metrics import compare_meshes, component_count, fidelity_ratio, is_closed, point_to_mesh_distance


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


@dataclass
class PathQuality:
    """An interpolation path a → b: its meshes (normalised frame) and quality numbers."""

    meshes: list[Mesh]
    weights: list[float]
    closed_share: float
    single_component_share: float
    endpoint_cd_l1: float
    step_ratios: list[float]


def interpolation_path(lib: Library, a: str, b: str, inbetweens: int, resolution: int, band: float,
                       n_samples: int, seed: int) -> PathQuality:
    """Decode a, ``inbetweens`` slerp blends and b; shares closed / single-component among the
    in-betweens, and each step's CD-L1 divided by the endpoint CD-L1 (1/(K+1) each if uniform).

    Every mesh is decoded in the normalised frame, so all of them share it.
    """
    weights = list(np.linspace(0.0, 1.0, inbetweens + 2))
    meshes = []
    for t in weights:
        meshes.append(as_mesh(decode(lib, {a: 1.0 - t, b: t}, resolution=resolution, band=band, normalized=True)))
    middle = meshes[1:-1]
    closed = float(np.mean([is_closed(m.faces) for m in middle])) if middle else float("nan")
    single = float(np.mean([component_count(m.faces) == 1 for m in middle])) if middle else float("nan")
    end = compare_meshes(meshes[0], meshes[-1], n_samples=n_samples, seed=seed).cd_l1
    steps = [compare_meshes(p, q, n_samples=n_samples, seed=seed).cd_l1 / end for p, q in zip(meshes, meshes[1:])]
    return PathQuality(meshes, [float(w) for w in weights], closed, single, float(end), [float(s) for s in steps])


def decode_cost(lib: Library, name: str, resolution: int, band: float) -> dict:
    """Decode one shape; the decoder's own timing and work counts, and the mesh size."""
    dec = decode(lib, name, resolution=resolution, band=band)
    return {"decode_s": dec.stats["seconds"], "detail_evaluations": dec.stats["detail_evaluations"],
            "coarse_evaluations": dec.stats["coarse_evaluations"], "detail_fraction": dec.stats["detail_fraction"],
            "faces": int(len(dec.faces))}
