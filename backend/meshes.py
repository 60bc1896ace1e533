"""Triangle meshes as arrays: validation, normalisation into the working cube, file I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BadMeshError

#: Longest side of a shape's bounding box once normalised (DESIGN §3): fits in [-0.9, 0.9]^3.
NORMALIZED_EXTENT = 1.8


@dataclass
class Mesh:
    """A triangle mesh: ``vertices`` (n, 3) float64 and ``faces`` (m, 3) int64."""

    vertices: np.ndarray
    faces: np.ndarray

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(np.asarray(self.vertices, dtype=np.float64).reshape(-1, 3))
        faces = np.asarray(self.faces)
        if faces.size and not np.issubdtype(faces.dtype, np.integer):
            raise BadMeshError(f"faces must be integer vertex indices, got dtype {faces.dtype}")
        self.faces = np.ascontiguousarray(faces.astype(np.int64).reshape(-1, 3))

    def content_hash(self) -> str:
        """SHA-256 of the vertex and face arrays: identifies a shape's geometry."""
        digest = hashlib.sha256()
        digest.update(self.vertices.tobytes())
        digest.update(self.faces.tobytes())
        return digest.hexdigest()


@dataclass(frozen=True)
class Normalization:
    """Maps original coordinates into the working cube: ``(p - center) * scale``."""

    center: tuple[float, float, float]
    scale: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.center)) * self.scale

    def invert(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, dtype=np.float64) / self.scale + np.asarray(self.center)

    def to_dict(self) -> dict:
        return {"center": list(self.center), "scale": self.scale}

    @classmethod
    def from_dict(cls, data: dict) -> Normalization:
        center = tuple(float(c) for c in data["center"])
        scale = float(data["scale"])
        if len(center) != 3 or not np.all(np.isfinite(center)) or not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"invalid normalization {data!r}")
        return cls(center=center, scale=scale)  # type: ignore[arg-type]


def normalization(vertices: np.ndarray) -> Normalization:
    """Bounding-box centre at the origin, longest side NORMALIZED_EXTENT (DESIGN §3)."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    extent = float((hi - lo).max())
    return Normalization(center=tuple(float(c) for c in (lo + hi) / 2), scale=NORMALIZED_EXTENT / extent)


def validate_mesh(mesh: Mesh, name: str = "mesh") -> Mesh:
    """Return a copy fit for sampling, or raise BadMeshError naming the problem.

    Degenerate faces (repeated indices or zero area) are dropped; open or non-manifold meshes are
    accepted, since signs come from the generalised winding number.
    """
    V, F = mesh.vertices, mesh.faces
    if len(V) == 0:
        raise BadMeshError(f"{name}: the mesh is empty (no vertices)")
    if len(F) == 0:
        raise BadMeshError(f"{name}: the mesh has {len(V)} vertices but no faces")
    if not np.all(np.isfinite(V)):
        bad = int((~np.isfinite(V)).any(axis=1).sum())
        raise BadMeshError(f"{name}: {bad} vertices have NaN or infinite coordinates")
    if F.min() < 0 or F.max() >= len(V):
        raise BadMeshError(f"{name}: faces reference vertex indices outside 0..{len(V) - 1}")
    used = np.unique(F)
    extent = np.ptp(V[used], axis=0)
    if extent.max() <= 0:
        raise BadMeshError(f"{name}: all vertices coincide; the mesh has no size")
    distinct = (F[:, 0] != F[:, 1]) & (F[:, 1] != F[:, 2]) & (F[:, 0] != F[:, 2])
    e1, e2 = V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]]
    area2 = np.linalg.norm(np.cross(e1, e2), axis=1)
    keep = distinct & (area2 > 1e-12 * extent.max() ** 2)
    if not keep.any():
        raise BadMeshError(f"{name}: all {len(F)} faces are degenerate (zero area)")
    return Mesh(V, F[keep])


def surface_area(mesh: Mesh) -> float:
    """Total triangle area."""
    V, F = mesh.vertices, mesh.faces
    return float(0.5 * np.linalg.norm(np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]]), axis=1).sum())


MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")


def load_mesh(path: str | Path) -> Mesh:
    """Read a mesh file (OBJ/PLY/STL/OFF/GLB), merging vertices split by normals or UVs."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise BadMeshError(f"{path}: no such file")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise BadMeshError(f"{path}: unsupported mesh format (use one of {', '.join(MESH_SUFFIXES)})")
    try:
        loaded = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types for unreadable files
        raise BadMeshError(f"{path}: could not read mesh ({exc})") from exc
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise BadMeshError(f"{path}: the file holds no triangles")
    loaded.merge_vertices(merge_tex=True, merge_norm=True)
    return Mesh(np.asarray(loaded.vertices), np.asarray(loaded.faces))


def save_mesh(path: str | Path, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None = None) -> None:
    """Write a mesh (format from the suffix), atomically."""
    import trimesh

    path = Path(path)
    mesh = trimesh.Trimesh(vertices, faces, vertex_normals=normals, process=False)
    tmp = path.with_name(f".{path.name}.tmp")
    mesh.export(tmp, file_type=path.suffix.lstrip(".").lower())
    tmp.replace(path)
