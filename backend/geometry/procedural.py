"""A procedural collection of closed meshes: superquadrics, tori and blobs, smoothly deformed.

Tests and benchmarks can run hundreds of shapes without data files. Each shape is an implicit
function (negative inside) meshed with marching cubes on the lattice of ``resolution`` points per
axis over [-1, 1]^3. Shape ``i`` draws everything from ``np.random.default_rng([seed, i, attempt])``,
so it never depends on how many shapes are asked for; an attempt whose mesh is not one closed,
outward-oriented solid is redrawn with the next ``attempt``.

Twist, bend and rotation all keep a point's distance from the origin, so a base shape scaled into
the ball of radius SHAPE_RADIUS stays there, with a margin of empty lattice nodes around it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import CompactSdfError
from .meshes import Mesh, save_mesh, validate_mesh
from ..names import safe_file_stem, validate_shape_name
from ..progress import ProgressCallback, Reporter, StopCallback

FAMILIES = ("superquadric", "torus", "blob")
#: Radius of the ball every shape is scaled into (the lattice spans [-1, 1]^3).
SHAPE_RADIUS = 0.85
#: Attempts per shape before giving up (at resolution 48 about 1 shape in 300 needs a second one).
MAX_ATTEMPTS = 8
MIN_RESOLUTION = 16

Field = Callable[[np.ndarray], np.ndarray]  # points (n, 3) -> values (n,), negative inside


def _signed_power(x: np.ndarray, e: float) -> np.ndarray:
    return np.sign(x) * np.abs(x) ** e


def _superquadric(rng: np.random.Generator) -> tuple[Field, float]:
    """A superquadric with random exponents (boxy to pinched) and axes; its bounding radius."""
    e1, e2 = rng.uniform(0.3, 1.8, 2)
    axes = rng.uniform(0.45, 1.0, 3)

    def field(p: np.ndarray) -> np.ndarray:
        x, y, z = np.abs(p / axes).T
        inside = (x ** (2 / e2) + y ** (2 / e2)) ** (e2 / e1) + z ** (2 / e1)
        return inside ** (e1 / 2) - 1

    eta, omega = np.meshgrid(np.linspace(-np.pi / 2, np.pi / 2, 97), np.linspace(-np.pi, np.pi, 193))
    ce = _signed_power(np.cos(eta), e1)
    surface = np.stack([ce * _signed_power(np.cos(omega), e2), ce * _signed_power(np.sin(omega), e2),
                        _signed_power(np.sin(eta), e1)], axis=-1) * axes
    return field, float(np.linalg.norm(surface, axis=-1).max())


def _torus(rng: np.random.Generator) -> tuple[Field, float]:
    """A torus about z, its ring and its tube possibly elliptic; its bounding radius."""
    ax = rng.uniform(0.6, 1.0)
    ay = ax * (1.0 if rng.random() < 0.4 else rng.uniform(0.6, 1.0))
    mean = np.sqrt(ax * ay)
    tube = mean * rng.uniform(0.2, 0.5)
    height = tube * rng.uniform(0.6, 1.5)

    def field(p: np.ndarray) -> np.ndarray:
        ring = (np.hypot(p[:, 0] / ax, p[:, 1] / ay) - 1) * mean
        return np.hypot(ring / tube, p[:, 2] / height) - 1

    return field, float(np.hypot(max(ax, ay) * (1 + tube / mean), height))


def _blob(rng: np.random.Generator) -> tuple[Field, float]:
    """A smooth union of 2-5 overlapping spheres, each placed against an earlier one; its bounding radius."""
    count = int(rng.integers(2, 6))
    radii = rng.uniform(0.3, 0.55, count)
    centers = np.zeros((count, 3))
    for i in range(1, count):
        direction = rng.normal(size=3)
        j = rng.integers(i)
        centers[i] = centers[j] + direction / np.linalg.norm(direction) * (radii[i] + radii[j]) * rng.uniform(0.5, 0.9)
    centers -= (centers - radii[:, None]).min(axis=0) / 2 + (centers + radii[:, None]).max(axis=0) / 2
    smoothing = rng.uniform(0.04, 0.12)

    def field(p: np.ndarray) -> np.ndarray:
        d = [np.sqrt(np.einsum("ij,ij->i", p - c, p - c)) - r for c, r in zip(centers, radii)]
        nearest = np.minimum.reduce(d)
        return nearest - smoothing * np.log(sum(np.exp((nearest - di) / smoothing) for di in d))

    # the smooth minimum lies at most smoothing * log(count) below the plain one
    return field, float((np.linalg.norm(centers, axis=1) + radii).max() + smoothing * np.log(count))


_BASES = {"superquadric": _superquadric, "torus": _torus, "blob": _blob}


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _turn(p: np.ndarray, angle: np.ndarray, axes: tuple[int, int]) -> np.ndarray:
    """``p`` with each point's ``axes`` coordinates rotated by its own ``angle``."""
    a, b = p[:, axes[0]], p[:, axes[1]]
    c, s = np.cos(angle), np.sin(angle)
    out = p.copy()
    out[:, axes[0]], out[:, axes[1]] = c * a - s * b, s * a + c * b
    return out


def _deformed(base: Field, scale: float, rng: np.random.Generator) -> Field:
    """``base`` scaled down by ``scale``, randomly rotated, and twisted about z and/or bent along x
    (each with probability 1/2)."""
    rotation = _rotation(rng)
    twist = rng.choice([-1, 1]) * rng.uniform(0.5, 2.0) if rng.random() < 0.5 else 0.0
    bend = rng.choice([-1, 1]) * rng.uniform(0.3, 1.0) if rng.random() < 0.5 else 0.0

    def field(p: np.ndarray) -> np.ndarray:
        p = p * scale
        if twist:
            p = _turn(p, twist * p[:, 2], (0, 1))
        if bend:
            p = _turn(p, bend * p[:, 0], (0, 1))
        return base(p @ rotation)

    return field


@functools.cache
def _ball_nodes(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear indices and positions of the lattice nodes within one step of the ball of radius SHAPE_RADIUS."""
    axis = np.linspace(-1.0, 1.0, resolution)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    index = np.flatnonzero(np.einsum("ij,ij->i", grid, grid) <= (SHAPE_RADIUS + axis[1] - axis[0]) ** 2)
    points = grid[index]
    points.setflags(write=False)  # shared by every shape of this resolution
    return index, points


def _mesh_of(field: Field, resolution: int) -> Mesh:
    """Marching cubes of the zero level of ``field`` (a shape inside the ball of radius SHAPE_RADIUS).

    Only nodes within one lattice step of that ball are evaluated: every lattice edge that can cross
    the surface ends there, and every other node is outside, so the surface is closed.
    """
    from skimage.measure import marching_cubes

    index, points = _ball_nodes(resolution)
    values = np.ones(resolution**3)
    values[index] = field(points)
    values[np.abs(values) < 1e-4] = 1e-4  # no surface vertex (almost) on a node: no zero-area triangles
    h = 2.0 / (resolution - 1)
    vertices, faces, _, _ = marching_cubes(values.reshape((resolution,) * 3), level=0.0, spacing=(h, h, h))
    return Mesh(vertices - 1.0, faces)


def is_closed_solid(mesh: Mesh) -> bool:
    """Whether every edge joins exactly two faces traversing it in opposite directions, the mesh is
    one connected piece, and it encloses a positive volume (faces oriented outward)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    V, F = mesh.vertices, mesh.faces
    n = len(V)
    start, end = F.reshape(-1), F[:, [1, 2, 0]].reshape(-1)
    directed = np.sort(start * n + end)
    if np.any(directed[1:] == directed[:-1]) or not np.isin(end * n + start, directed).all():
        return False
    if len(np.unique(F)) != n or connected_components(coo_matrix((np.ones(len(start)), (start, end)), (n, n)))[0] != 1:
        return False
    return float(np.einsum("ij,ij->i", V[F[:, 0]], np.cross(V[F[:, 1]], V[F[:, 2]])).sum()) > 0


def procedural_shape(index: int, seed: int = 0, resolution: int = 48) -> tuple[str, Mesh]:
    """Shape ``index`` of the collection ``seed``: its family and its mesh (depends on nothing else)."""
    if resolution < MIN_RESOLUTION:
        raise ValueError(f"resolution must be at least {MIN_RESOLUTION}, got {resolution}")
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng([seed, index, attempt])
        family = FAMILIES[rng.integers(len(FAMILIES))]
        base, radius = _BASES[family](rng)
        mesh = validate_mesh(_mesh_of(_deformed(base, radius / SHAPE_RADIUS, rng), resolution))
        if is_closed_solid(mesh):
            return family, mesh
    raise CompactSdfError(f"procedural shape {index} (seed {seed}) was not one closed solid in {MAX_ATTEMPTS} attempts "
                          f"at resolution {resolution}; a higher resolution resolves thinner parts")


def procedural_collection(count: int, seed: int = 0, resolution: int = 48, *,
                          on_progress: ProgressCallback | None = None,
                          should_stop: StopCallback | None = None) -> dict[str, Mesh]:
    """``count`` closed meshes named ``{family}_{index:04d}`` (e.g. ``torus_0012``), deterministic in ``seed``.

    Shape ``i`` is the same whatever ``count`` is. Vertices lie in the ball of radius SHAPE_RADIUS
    (plus one lattice step). Faces per shape: about 8k (4k-14k) at resolution 48, 3.5k at 32.
    Raises Cancelled when ``should_stop()`` turns true.
    """
    if count < 0 or seed < 0:
        raise ValueError(f"count and seed must be non-negative, got count {count} and seed {seed}")
    reporter = Reporter(on_progress, should_stop)
    meshes: dict[str, Mesh] = {}
    for i in range(count):
        reporter.report("generating", i, count)
        family, mesh = procedural_shape(i, seed, resolution)
        meshes[validate_shape_name(f"{family}_{i:04d}")] = mesh
    reporter.report("generating", count, count)
    return meshes


def write_collection(meshes: dict[str, Mesh], directory: Path, fmt: str = "obj") -> list[Path]:
    """Write each mesh to ``directory/<name>.<fmt>`` (created if missing) with ``save_mesh``; the paths written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, mesh in meshes.items():
        path = directory / f"{safe_file_stem(name)}.{fmt}"
        save_mesh(path, mesh.vertices, mesh.faces)
        paths.append(path)
    return paths
