"""Fidelity and compactness metrics (DESIGN §3), and the marching-cubes meshing limit (oracle).

All distances are measured in the ground-truth mesh's normalised frame: bounding box centred at
the origin, longest side 1.8. Meshes are passed as ``(vertices, faces)`` pairs or any object with
``vertices`` and ``faces`` attributes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Union

import igl
import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
from skimage.measure import marching_cubes

from .. import memory
from ..errors import BadInputError
from .meshes import Mesh, normalization
from .sampling import signed_distance

MeshLike = Union[Mesh, tuple[np.ndarray, np.ndarray]]

#: Peak memory per lattice node of ``oracle_mesh`` in bytes (float32 lattice, narrow-band
#: bookkeeping, marching cubes): VmHWM growth measured at 192³ and 320³ (7-11), rounded up.
ORACLE_BYTES_PER_NODE = 12

_FSCORE_TAUS = (0.005, 0.01)
_CHUNK = 200_000  # query points per libigl call; bounds the temporaries to a few tens of MB
# A sign change along a lattice edge puts both its ends within one voxel of the surface, so
# marching cubes needs exact values only there; 1.5 voxels leaves a margin for rounding.
_BAND_VOXELS = 1.5
_COARSEN = 3  # fine voxels per coarse voxel in the narrow-band hierarchy
_MIN_BAND_RESOLUTION = 33  # below this the lattice is evaluated in full


@dataclass(frozen=True)
class SurfaceSamples:
    """Points sampled on a surface and the face each one lies on."""

    points: np.ndarray
    face_index: np.ndarray


@dataclass(frozen=True)
class PointMeshDistance:
    """Exact distance from each query point to a mesh and the index of the closest face."""

    distance: np.ndarray
    face_index: np.ndarray


@dataclass(frozen=True)
class MeshMetrics:
    """Fidelity of a reconstruction against ground truth, in normalised units (DESIGN §3).

    ``accuracy`` is the mean distance reconstruction → GT, ``completeness`` GT → reconstruction;
    ``cd_l1`` is their mean. F-scores use τ = 0.005 and τ = 0.01.
    """

    cd_l1: float
    cd_l2: float
    accuracy: float
    completeness: float
    fscore_0_005: float
    precision_0_005: float
    recall_0_005: float
    fscore_0_01: float
    precision_0_01: float
    recall_0_01: float
    normal_consistency: float
    hausdorff: float
    n_samples: int

    def to_dict(self) -> dict[str, float]:
        """Plain ``{name: value}`` dictionary (JSON-serialisable; inf stays inf)."""
        return asdict(self)


def _arrays(mesh: MeshLike) -> tuple[np.ndarray, np.ndarray]:
    """(vertices float64 (n,3), faces int64 (m,3)) of a mesh-like value."""
    if hasattr(mesh, "vertices") and hasattr(mesh, "faces"):
        v, f = mesh.vertices, mesh.faces
    else:
        v, f = mesh
    v = np.asarray(v, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(f, dtype=np.int64).reshape(-1, 3)
    return np.ascontiguousarray(v), np.ascontiguousarray(f)


def _face_normals_and_areas(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit face normals (zero for degenerate faces) and face areas."""
    tri = vertices[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(cross, axis=1)
    normals = np.divide(cross, norm[:, None], out=np.zeros_like(cross), where=norm[:, None] > 0)
    return normals, norm / 2.0


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0) -> SurfaceSamples:
    """``n`` points uniform by area on the surface (deterministic for a given seed)."""
    v, f = _arrays((vertices, faces))
    _, areas = _face_normals_and_areas(v, f)
    total = areas.sum()
    if n <= 0 or total <= 0.0:
        return SurfaceSamples(np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(areas)
    face_index = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    face_index = np.minimum(face_index, len(f) - 1)
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    w0, w1, w2 = 1.0 - s, s * (1.0 - r2), s * r2
    tri = v[f[face_index]]
    points = w0[:, None] * tri[:, 0] + w1[:, None] * tri[:, 1] + w2[:, None] * tri[:, 2]
    return SurfaceSamples(points, face_index.astype(np.int64))


def point_to_mesh_distance(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> PointMeshDistance:
    """Exact closest-point distance from each point to the triangle mesh (chunked queries).

    An empty mesh gives distance inf and face index -1.
    """
    p = np.ascontiguousarray(np.asarray(points, dtype=np.float64).reshape(-1, 3))
    v, f = _arrays((vertices, faces))
    if len(f) == 0:
        return PointMeshDistance(np.full(len(p), np.inf), np.full(len(p), -1, dtype=np.int64))
    tree = igl.AABB()
    tree.init(v, f)
    sq = np.empty(len(p))
    idx = np.empty(len(p), dtype=np.int64)
    for start in range(0, len(p), _CHUNK):
        stop = start + _CHUNK
        sq[start:stop], idx[start:stop], _ = tree.squared_distance(v, f, p[start:stop])
    return PointMeshDistance(np.sqrt(np.maximum(sq, 0.0)), idx)


def _drop_degenerate(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces with non-zero area (zero-area faces carry no normal)."""
    _, areas = _face_normals_and_areas(vertices, faces)
    return faces[areas > 0.0]


def _fscore(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0.0 else 2.0 * precision * recall / (precision + recall)


def compare_meshes(gt: MeshLike, rec: MeshLike, n_samples: int = 200_000, seed: int = 0) -> MeshMetrics:
    """Fidelity metrics of ``rec`` against ``gt`` (DESIGN §3), both in the GT's normalised frame.

    An empty reconstruction gives infinite distances and zero F-scores / normal consistency.
    Zero-area faces are ignored.
    """
    gv, gf = _arrays(gt)
    rv, rf = _arrays(rec)
    norm = normalization(gv)
    gv = norm.apply(gv)
    rv = norm.apply(rv)
    gf = _drop_degenerate(gv, gf)
    rf = _drop_degenerate(rv, rf)

    if len(rf) == 0:
        inf = float("inf")
        return MeshMetrics(inf, inf, inf, inf, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, inf, n_samples)

    gs = sample_surface(gv, gf, n_samples, seed)
    rs = sample_surface(rv, rf, n_samples, seed + 1)
    rec_to_gt = point_to_mesh_distance(rs.points, gv, gf)
    gt_to_rec = point_to_mesh_distance(gs.points, rv, rf)

    gn, _ = _face_normals_and_areas(gv, gf)
    rn, _ = _face_normals_and_areas(rv, rf)
    nc_rec = np.abs(np.einsum("ij,ij->i", rn[rs.face_index], gn[rec_to_gt.face_index])).mean()
    nc_gt = np.abs(np.einsum("ij,ij->i", gn[gs.face_index], rn[gt_to_rec.face_index])).mean()

    d_rg, d_gr = rec_to_gt.distance, gt_to_rec.distance
    scores = []
    for tau in _FSCORE_TAUS:
        precision = float((d_rg <= tau).mean())
        recall = float((d_gr <= tau).mean())
        scores += [_fscore(precision, recall), precision, recall]
    accuracy, completeness = float(d_rg.mean()), float(d_gr.mean())
    return MeshMetrics(
        cd_l1=0.5 * (accuracy + completeness),
        cd_l2=float((d_rg**2).mean() + (d_gr**2).mean()),
        accuracy=accuracy,
        completeness=completeness,
        fscore_0_005=scores[0],
        precision_0_005=scores[1],
        recall_0_005=scores[2],
        fscore_0_01=scores[3],
        precision_0_01=scores[4],
        recall_0_01=scores[5],
        normal_consistency=float(0.5 * (nc_rec + nc_gt)),
        hausdorff=float(max(d_rg.max(), d_gr.max())),
        n_samples=n_samples,
    )


def component_count(faces: np.ndarray) -> int:
    """Number of connected components of faces linked by shared vertices (0 for no faces)."""
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(f) == 0:
        return 0
    n = int(f.max()) + 1
    rows = np.concatenate([f[:, 0], f[:, 1]])
    cols = np.concatenate([f[:, 1], f[:, 2]])
    graph = scipy.sparse.coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, labels = scipy.sparse.csgraph.connected_components(graph, directed=False)
    return int(len(np.unique(labels[np.unique(f)])))


def is_closed(faces: np.ndarray) -> bool:
    """True if every edge is shared by exactly two faces (False for no faces)."""
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(f) == 0:
        return False
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return bool(np.all(counts == 2))


def _lattice(resolution: int) -> np.ndarray:
    return np.linspace(-1.0, 1.0, resolution)


def sdf_lattice(vertices: np.ndarray, faces: np.ndarray, resolution: int, narrow_band: bool = True) -> np.ndarray:
    """Signed distance of a mesh (already in normalised coordinates) on the decoder's lattice.

    The lattice is ``np.linspace(-1, 1, resolution)`` per axis, indexed ``[x, y, z]``, float32.
    With ``narrow_band``, only nodes within ``_BAND_VOXELS`` voxels of the surface hold exact
    values; every other node holds a lower bound of its distance (≥ that band) with the correct
    sign, found from a coarser lattice by the 1-Lipschitz property. Marching cubes at level 0 is
    then identical to the full evaluation, at a cost proportional to surface area.
    """
    v, f = _arrays((vertices, faces))
    axis = _lattice(resolution)
    if not narrow_band or resolution < _MIN_BAND_RESOLUTION:
        out = np.empty((resolution,) * 3, dtype=np.float32)
        step = max(1, _CHUNK // resolution**2)
        for i in range(0, resolution, step):  # a few slabs at a time bounds the query arrays
            slab = np.stack(np.meshgrid(axis[i : i + step], axis, axis, indexing="ij"), axis=-1)
            out[i : i + step] = signed_distance(v, f, slab.reshape(-1, 3)).reshape(slab.shape[:3])
        return out

    coarse_res = -(-(resolution - 1) // _COARSEN) + 1
    coarse = sdf_lattice(v, f, coarse_res, narrow_band=True)
    coarse_axis = _lattice(coarse_res)
    h_coarse = 2.0 / (coarse_res - 1)
    nearest = np.clip(np.rint((axis + 1.0) / h_coarse).astype(np.int64), 0, coarse_res - 1)
    offset_sq = (axis - coarse_axis[nearest]) ** 2
    band = _BAND_VOXELS * 2.0 / (resolution - 1)

    out = np.empty((resolution,) * 3, dtype=np.float32)
    exact_idx = []
    for i in range(resolution):  # slab by slab keeps temporaries at resolution² size
        c = coarse[nearest[i]][np.ix_(nearest, nearest)]
        reach = np.sqrt(offset_sq[i] + offset_sq[:, None] + offset_sq[None, :])
        lower = np.abs(c) - reach  # |sdf| ≥ |sdf(nearest coarse node)| - distance to it
        out[i] = np.sign(c) * np.maximum(lower, band)
        jk = np.flatnonzero(lower < band)
        exact_idx.append(i * resolution * resolution + jk)
    flat = np.concatenate(exact_idx)
    ii, jj, kk = np.unravel_index(flat, out.shape)
    points = np.stack([axis[ii], axis[jj], axis[kk]], axis=1)
    out.reshape(-1)[flat] = signed_distance(v, f, points)
    return out


def oracle_mesh(vertices: np.ndarray, faces: np.ndarray, resolution: int) -> Mesh:
    """Meshing limit: marching cubes (level 0) of the exact GT SDF on the decoder's lattice.

    The lattice is ``np.linspace(-1, 1, resolution)`` per axis in the mesh's normalised frame;
    the returned vertices are in the mesh's original coordinates, faces wound outward. The mesh
    is empty if the lattice holds no zero crossing.
    """
    if resolution < 2:
        raise BadInputError(f"the oracle's lattice needs at least 2 points per axis, got {resolution}")
    memory.require(ORACLE_BYTES_PER_NODE * float(resolution) ** 3, f"the oracle mesh at {resolution}³",
                   lambda available: f"lower the resolution (about {int((available / ORACLE_BYTES_PER_NODE) ** (1 / 3))} "
                                     "fits now) or free some memory")
    v, f = _arrays((vertices, faces))
    norm = normalization(v)
    volume = sdf_lattice(norm.apply(v), f, resolution)
    if volume.min() >= 0.0 or volume.max() <= 0.0:  # no crossing: nothing to extract
        return Mesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    h = 2.0 / (resolution - 1)
    verts, tris, _, _ = marching_cubes(volume, level=0.0, spacing=(h, h, h), gradient_direction="descent")
    return Mesh(norm.invert(verts.astype(np.float64) - 1.0), tris.astype(np.int64))


def fidelity_ratio(cd_l1: float, oracle_cd_l1: float) -> float:
    """A method's CD-L1 divided by the oracle's CD-L1 at the same resolution (1.0 is the limit)."""
    if oracle_cd_l1 <= 0.0:
        raise ValueError("oracle CD-L1 must be positive")
    return float(cd_l1 / oracle_cd_l1)


def compactness(bytes_per_shape: int, bytes_shared: int, n_shapes: int) -> dict[str, float]:
    """Storage per shape: raw (its code only) and amortised (code + shared weights / n_shapes)."""
    if n_shapes <= 0:
        raise ValueError("n_shapes must be positive")
    return {
        "n_shapes": n_shapes,
        "bytes_per_shape": bytes_per_shape,
        "bytes_shared": bytes_shared,
        "bytes_total": bytes_per_shape * n_shapes + bytes_shared,
        "amortised_bytes_per_shape": bytes_per_shape + bytes_shared / n_shapes,
    }
