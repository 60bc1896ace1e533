"""Triangle meshes as arrays: validation, normalisation into the working cube, file I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic_io import atomic_write
from ..errors import BadMeshError

#: Longest side of a shape's bounding box once normalised (DESIGN §3): fits in [-0.9, 0.9]^3.
NORMALIZED_EXTENT = 1.8
#: Larger coordinates are refused: products of two of them must stay finite in float64.
MAX_COORDINATE = 1e150
#: Smaller meshes (longest side) are refused: squares of their sizes, and the decoded surface's
#: detail (a 1e-8 part of the size) back in their units, must stay normal float64 numbers.
MIN_EXTENT = 1e-150
#: The scales ``normalization`` can produce (meshes of extent MIN_EXTENT..2·MAX_COORDINATE); a
#: stored transform outside them is forged, and inverting it could give infinite coordinates.
MIN_SCALE, MAX_SCALE = NORMALIZED_EXTENT / (2 * MAX_COORDINATE), NORMALIZED_EXTENT / MIN_EXTENT
#: A mesh thinner than this (relative to its longest side) counts as flat.
FLAT_TOLERANCE = 1e-6
#: Vertices closer than this (relative to the longest side) are merged when a file is read.
MERGE_TOLERANCE = 1e-8


@dataclass
class Mesh:
    """A triangle mesh: ``vertices`` (n, 3) float64 and ``faces`` (m, 3) int64."""

    vertices: np.ndarray
    faces: np.ndarray

    def __post_init__(self) -> None:
        try:
            self.vertices = np.ascontiguousarray(np.asarray(self.vertices, dtype=np.float64).reshape(-1, 3))
            faces = np.asarray(self.faces)
        except (TypeError, ValueError) as exc:
            raise BadMeshError(f"vertices must be an (n, 3) array of numbers and faces an (m, 3) array ({exc})") from exc
        if faces.size and not np.issubdtype(faces.dtype, np.integer):
            raise BadMeshError(f"faces must be integer vertex indices, got dtype {faces.dtype}")
        if faces.size % 3:
            raise BadMeshError(f"faces must be triangles, an (m, 3) array; got {faces.size} indices")
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
        """ValueError unless ``data`` holds what ``normalization`` can produce: a centre of three
        numbers within MAX_COORDINATE and a scale a mesh of extent MIN_EXTENT..2·MAX_COORDINATE
        gets, so that inverting it keeps every coordinate finite (JSON numbers only: no strings, no booleans)."""
        center, scale = data["center"], data["scale"]

        def number(value: object) -> bool:
            return isinstance(value, int | float) and not isinstance(value, bool) and bool(np.isfinite(value))

        if not (isinstance(center, list | tuple) and len(center) == 3 and all(number(c) for c in center) and number(scale)):
            raise ValueError(f"invalid normalization {data!r}: needs a centre of three numbers and a numeric scale")
        center, scale = tuple(float(c) for c in center), float(scale)
        if max(abs(c) for c in center) > MAX_COORDINATE or not MIN_SCALE <= scale <= MAX_SCALE:
            raise ValueError(f"invalid normalization {data!r}: centre beyond {MAX_COORDINATE:.0e} or scale outside "
                             f"{MIN_SCALE:.3g}..{MAX_SCALE:.3g}")
        return cls(center=center, scale=scale)  # type: ignore[arg-type]


def normalization(vertices: np.ndarray, name: str = "mesh") -> Normalization:
    """Bounding-box centre at the origin, longest side NORMALIZED_EXTENT (DESIGN §3)."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    extent = float((hi - lo).max())
    if not extent > 0:
        raise BadMeshError(f"{name}: all vertices coincide; the mesh has no size")
    scale = NORMALIZED_EXTENT / extent
    if not np.isfinite(scale) or extent < MIN_EXTENT:
        raise BadMeshError(f"{name}: the mesh is too small to normalise (size {extent:.3g}); scale it up before encoding")
    return Normalization(center=tuple(float(c) for c in (lo + hi) / 2), scale=scale)


def _check_coordinates(vertices: np.ndarray, name: str) -> None:
    """BadMeshError for NaN, infinite or absurdly large coordinates."""
    if not np.all(np.isfinite(vertices)):
        bad = int((~np.isfinite(vertices)).any(axis=1).sum())
        raise BadMeshError(f"{name}: {bad} vertices have NaN or infinite coordinates; fix or remove them")
    if len(vertices) and np.abs(vertices).max() > MAX_COORDINATE:
        raise BadMeshError(f"{name}: coordinates reach {np.abs(vertices).max():.3g}, beyond {MAX_COORDINATE:.0e}; "
                           "scale the mesh down before encoding")


def _thickness(points: np.ndarray) -> float:
    """Extent of ``points`` along their direction of least spread (0 for a flat point set)."""
    centred = points - points.mean(axis=0)
    normal = np.linalg.svd(centred, full_matrices=False)[2][-1]
    return float(np.ptp(centred @ normal))


def validate_mesh(mesh: Mesh, name: str = "mesh") -> Mesh:
    """Return a copy fit for sampling, or raise BadMeshError naming the problem.

    Every test runs on the normalised mesh (float64, centred, longest side NORMALIZED_EXTENT), so
    a mesh's scale or offset never changes the verdict. Degenerate faces (repeated indices or zero
    area) and unused vertices are dropped; open or non-manifold meshes are accepted, since signs
    come from the generalised winding number; flat meshes are not: they enclose nothing.
    """
    V, F = mesh.vertices, mesh.faces
    if len(V) == 0:
        raise BadMeshError(f"{name}: the mesh is empty (no vertices)")
    if len(F) == 0:
        raise BadMeshError(f"{name}: the mesh has {len(V)} vertices but no faces")
    _check_coordinates(V, name)
    if F.min() < 0 or F.max() >= len(V):
        raise BadMeshError(f"{name}: faces reference vertex indices outside 0..{len(V) - 1}")
    used, F = np.unique(F, return_inverse=True)
    V, F = V[used], F.reshape(-1, 3)
    U = normalization(V, name).apply(V)
    distinct = (F[:, 0] != F[:, 1]) & (F[:, 1] != F[:, 2]) & (F[:, 0] != F[:, 2])
    area2 = np.linalg.norm(np.cross(U[F[:, 1]] - U[F[:, 0]], U[F[:, 2]] - U[F[:, 0]]), axis=1)
    keep = distinct & (area2 > 1e-12 * NORMALIZED_EXTENT**2)
    if not keep.any():
        raise BadMeshError(f"{name}: all {len(F)} faces are degenerate (zero area)")
    if _thickness(U[np.unique(F[keep])]) <= FLAT_TOLERANCE * NORMALIZED_EXTENT:
        raise BadMeshError(f"{name}: the mesh has no volume: all faces lie in one plane; Compact SDF encodes solids "
                           "(give the surface a thickness, e.g. with a Solidify modifier)")
    return Mesh(V, F[keep])


MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")


def merge_vertices(mesh: Mesh, name: str = "mesh") -> Mesh:
    """Merge vertices within MERGE_TOLERANCE of each other, relative to the mesh's size; drop unused ones.

    Positions are compared after normalisation, so no scale (1e30 or 1e-30) or offset (1e12)
    overflows or merges distinct vertices. A mesh that cannot be normalised is returned as is,
    for ``validate_mesh`` to name its problem.
    """
    V, F = mesh.vertices, mesh.faces
    _check_coordinates(V, name)
    if len(F) == 0 or F.min() < 0 or F.max() >= len(V):
        return mesh
    used, F = np.unique(F, return_inverse=True)
    V, F = V[used], F.reshape(-1, 3)
    extent = float(np.ptp(V, axis=0).max())
    if not extent > 0 or not np.isfinite(1 / extent):
        return Mesh(V, F)
    center = (V.min(axis=0) + V.max(axis=0)) / 2
    cells = np.round((V - center) * (NORMALIZED_EXTENT / extent / MERGE_TOLERANCE)).astype(np.int64)
    _, first, inverse = np.unique(cells, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)  # keep the file's vertex order: first occurrences, as they come
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return Mesh(V[first[order]], rank[inverse.reshape(-1)][F])


def load_mesh(path: str | Path) -> Mesh:
    """Read a mesh file (OBJ/PLY/STL/OFF/GLB), merging vertices split by normals or UVs."""
    import trimesh

    path = Path(path)
    if path.is_dir():
        raise BadMeshError(f"{path} is a directory, not a mesh file; name a file such as shape.obj")
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
    return merge_vertices(Mesh(np.asarray(loaded.vertices), np.asarray(loaded.faces)), str(path))


#: OBJ and OFF write each coordinate with enough significant digits to be exact to this part of the
#: mesh's size (far below a decoded lattice voxel), up to float64's 17 where that takes more (a mesh
#: far from the origin); PLY stores float64 coordinates.
TEXT_TOLERANCE = 1e-9
#: Other formats (STL, glTF) store float32: a mesh that float32 would move by more than this part of
#: its size (one far from the origin, or beyond float32's range) is refused there.
FLOAT32_TOLERANCE = 1e-5
_ROWS_PER_WRITE = 65_536


def _coordinate_digits(vertices: np.ndarray) -> int:
    """Significant digits (9..17) that keep every coordinate within TEXT_TOLERANCE of the mesh's size."""
    extent = float(np.ptp(vertices, axis=0).max())
    largest = float(np.abs(vertices).max())
    if not extent > 0 or not largest > 0:
        return 17
    return int(np.clip(1 + np.ceil(np.log10(0.5 * largest / (TEXT_TOLERANCE * extent))), 9, 17))


def _write_rows(handle, row_format: str, rows: np.ndarray) -> None:
    """``rows`` (k, c) as text, one ``row_format`` line each, a block of rows per write."""
    for start in range(0, len(rows), _ROWS_PER_WRITE):
        block = rows[start : start + _ROWS_PER_WRITE]
        handle.write((row_format * len(block)) % tuple(block.ravel().tolist()))


def _write_obj(tmp: Path, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None) -> None:
    number = f"%.{_coordinate_digits(vertices)}g"
    with open(tmp, "w", encoding="ascii", newline="\n") as handle:
        handle.write("# Compact SDF\n")
        _write_rows(handle, f"v {number} {number} {number}\n", vertices)
        if normals is not None:
            _write_rows(handle, "vn %.9g %.9g %.9g\n", normals)
            _write_rows(handle, "f %d//%d %d//%d %d//%d\n", np.repeat(faces + 1, 2, axis=1))
        else:
            _write_rows(handle, "f %d %d %d\n", faces + 1)


def _write_off(tmp: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    number = f"%.{_coordinate_digits(vertices)}g"
    with open(tmp, "w", encoding="ascii", newline="\n") as handle:
        handle.write(f"OFF\n{len(vertices)} {len(faces)} 0\n")
        _write_rows(handle, f"{number} {number} {number}\n", vertices)
        _write_rows(handle, "3 %d %d %d\n", faces)


def _write_ply(tmp: Path, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None) -> None:
    """Binary little-endian PLY: float64 coordinates, float32 normals, int32 triangles."""
    fields = [("xyz", "<f8", (3,))] + ([("normal", "<f4", (3,))] if normals is not None else [])
    vertex = np.empty(len(vertices), dtype=fields)
    vertex["xyz"] = vertices
    if normals is not None:
        vertex["normal"] = normals
    face = np.empty(len(faces), dtype=[("count", "u1"), ("index", "<i4", (3,))])
    face["count"], face["index"] = 3, faces
    header = ["ply", "format binary_little_endian 1.0", "comment Compact SDF", f"element vertex {len(vertices)}",
              "property double x", "property double y", "property double z"]
    if normals is not None:
        header += ["property float nx", "property float ny", "property float nz"]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    with open(tmp, "wb") as handle:
        handle.write(("\n".join(header) + "\n").encode("ascii"))
        handle.write(vertex.tobytes())
        handle.write(face.tobytes())


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals float32 (n, 3) of a triangle mesh (libigl)."""
    import igl

    return igl.per_vertex_normals(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)).astype(np.float32)


def save_mesh(path: str | Path, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None = None) -> None:
    """Write a mesh (format from the suffix) atomically: a failure (a full disk) leaves no partial
    or temporary file (``atomic_io.atomic_write``). Coordinates keep the mesh's own precision
    (``TEXT_TOLERANCE``); BadMeshError for an empty mesh, or for a float32 format (STL, glTF) that
    cannot hold it (``FLOAT32_TOLERANCE``)."""
    path = Path(path)
    if len(vertices) == 0 or len(faces) == 0:
        raise BadMeshError(f"nothing to write to {path}: the decoded surface is empty (this code has no surface)")
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    normals = None if normals is None else np.asarray(normals, dtype=np.float32).reshape(-1, 3)
    fmt = path.suffix.lstrip(".").lower()
    if fmt == "obj":
        atomic_write(path, lambda tmp: _write_obj(tmp, vertices, faces, normals))
    elif fmt == "off":
        atomic_write(path, lambda tmp: _write_off(tmp, vertices, faces))
    elif fmt == "ply":
        atomic_write(path, lambda tmp: _write_ply(tmp, vertices, faces, normals))
    else:
        import trimesh

        extent = float(np.ptp(vertices, axis=0).max())
        with np.errstate(over="ignore"):
            moved = np.abs(vertices.astype(np.float32).astype(np.float64) - vertices).max()
        if not moved <= FLOAT32_TOLERANCE * extent:
            raise BadMeshError(f"{path}: {fmt.upper()} stores 32-bit coordinates, which cannot hold this mesh (it spans "
                               f"{extent:.3g} at coordinates up to {np.abs(vertices).max():.3g}); write OBJ, PLY or OFF instead")
        mesh = trimesh.Trimesh(vertices, faces, vertex_normals=normals, process=False)
        atomic_write(path, lambda tmp: mesh.export(tmp, file_type=fmt))
