"""Correspondence between two surfaces: a smooth non-rigid registration of one onto the other.

``register(source, target)`` fits an *embedded deformation* (Sumner, Schmid & Pauly, SIGGRAPH 2007)
that carries ``source``'s surface onto ``target``'s: a graph of nodes spread over the source, each
with an affine transform kept near-rigid and agreeing with its graph neighbours, fitted by a
two-sided Chamfer term while the stiffness is relaxed from high to low (coarse motion first, then
detail). The result is a ``Registration``: a deformation of space near the source, so it carries any
points of the source's surface (the vertices of a decoded mesh, or of the artist's own mesh) with it,
and ``project`` snaps them onto the target's surface at the end.

Its honest limit: the data term matches each point with the *nearest* surface, so a limb that must
swing far across the body can slide onto the wrong part (docs/benchmarks.md measures it). Whether
two shapes can correspond at all is ``Registration.failure`` (different numbers of main pieces, or a
fit that leaves part of either surface unmatched) and ``handles`` (a ball and a ring); callers fall
back to another blend mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .meshes import Mesh
from .metrics import sample_surface

#: Graph nodes, skinning neighbours and graph neighbours of the deformation.
NODES, SKIN_NEIGHBOURS, GRAPH_NEIGHBOURS = 160, 4, 6
#: Points of each surface the fit compares, and its Adam steps per stiffness stage.
FIT_POINTS, STEPS_PER_STAGE = 1500, 60
#: Graph stiffness of each stage: stiff (near rigid) first, then looser for detail.
STIFFNESS = (10.0, 1.0, 0.1, 0.02)
#: Adam step size, × the target's diagonal.
LEARNING_RATE = 1.5e-2
#: A point of either surface farther than this (× the target's diagonal) from the other after the fit
#: is "unmatched"; more than ``UNMATCHED_SHARE`` of them means the two shapes do not correspond.
UNMATCHED_DISTANCE, UNMATCHED_SHARE = 0.03, 0.05


@dataclass
class Registration:
    """An embedded deformation: ``nodes`` (N, 3) with affine ``matrices`` (N, 3, 3) and ``shifts``
    (N, 3), in the frame the source and target were given in; ``failure`` says why the two shapes do
    not correspond (None when they do); ``fit`` holds the fit's measurements."""

    nodes: np.ndarray
    matrices: np.ndarray
    shifts: np.ndarray
    target: Mesh
    failure: str | None
    fit: dict

    def deform(self, points: np.ndarray) -> np.ndarray:
        """Where the deformation carries ``points`` (n, 3) near the source surface (float64)."""
        points = np.asarray(points, dtype=np.float64)
        index, weights = _skin(self.nodes, points)
        local = points[:, None, :] - self.nodes[index]
        moved = np.einsum("nkij,nkj->nki", self.matrices[index], local) + self.nodes[index] + self.shifts[index]
        return np.einsum("nk,nkd->nd", weights, moved)

    def project(self, points: np.ndarray) -> np.ndarray:
        """``points`` deformed, then each moved to the nearest point of the target's surface."""
        import igl

        moved = self.deform(points)
        _, _, closest = igl.point_mesh_squared_distance(moved, np.asarray(self.target.vertices, dtype=np.float64),
                                                        np.asarray(self.target.faces, dtype=np.int64))
        return closest


def _skin(nodes: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index (n, k), weight (n, k)) of each point's nearest nodes: Sumner's (1 - d / d_max)² falloff,
    d_max the distance to the next-nearest node, normalised to sum 1."""
    k = min(SKIN_NEIGHBOURS, len(nodes) - 1) if len(nodes) > 1 else 1
    distance, index = cKDTree(nodes).query(points, k=k + 1)
    distance, index = distance.reshape(len(points), -1), index.reshape(len(points), -1)
    reach = np.maximum(distance[:, -1:], 1e-12)  # inf for a single node: full weight
    weights = (1 - distance[:, :k] / reach) ** 2 + 1e-9
    return index[:, :k], weights / weights.sum(1, keepdims=True)


def _farthest_points(points: np.ndarray, count: int) -> np.ndarray:
    """``count`` indices of ``points`` spread evenly by farthest-point sampling (deterministic)."""
    chosen = [int(np.argmin(points @ np.array([1.0, 1e-3, 1e-6])))]
    distance = np.linalg.norm(points - points[chosen[0]], axis=1)
    for _ in range(1, min(count, len(points))):
        chosen.append(int(distance.argmax()))
        distance = np.minimum(distance, np.linalg.norm(points - points[chosen[-1]], axis=1))
    return np.array(chosen)


def _graph_edges(nodes: np.ndarray) -> np.ndarray:
    """(E, 2) edges joining each node to its nearest nodes."""
    k = min(GRAPH_NEIGHBOURS, len(nodes) - 1)
    _, index = cKDTree(nodes).query(nodes, k=k + 1)
    return np.array([(i, j) for i, row in enumerate(index) for j in row[1:]], dtype=np.int64).reshape(-1, 2)


#: Pieces smaller than this share of a surface's area (a claw broken off at the lattice) are not compared.
SIGNIFICANT_PIECE = 0.02


def _topology(mesh: Mesh) -> tuple[int, int]:
    """(pieces holding at least ``SIGNIFICANT_PIECE`` of the area, Euler characteristic of the largest)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    faces = np.asarray(mesh.faces, dtype=np.int64)
    count = int(faces.max()) + 1
    links = coo_matrix((np.ones(2 * len(faces)), (faces[:, [0, 1]].ravel(), faces[:, [1, 2]].ravel())), (count, count))
    _, label = connected_components(links, directed=False)
    piece = label[faces[:, 0]]
    tri = np.asarray(mesh.vertices, dtype=np.float64)[faces]
    area = np.bincount(piece, np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1))
    main = faces[piece == area.argmax()]
    edges = np.unique(np.sort(np.concatenate([main[:, [0, 1]], main[:, [1, 2]], main[:, [2, 0]]]), axis=1), axis=0)
    return int((area >= SIGNIFICANT_PIECE * area.sum()).sum()), len(np.unique(main)) - len(edges) + len(main)


def handles(volume: np.ndarray) -> int:
    """Holes through the main piece of the solid ``volume`` < 0 (a signed distance lattice over
    [-1, 1]³), counted on its surface moved one lattice step inwards: limbs that merely touch (a
    curled tail, a paw on the body) part there, while a ring's hole stays. A solid too thin to move
    inwards is counted on its surface."""
    from skimage.measure import marching_cubes

    step = 2 / (volume.shape[0] - 1)
    if not volume.min() < 0 < volume.max():
        return 0
    level = -step if volume.min() < -step else 0.0
    vertices, faces, _, _ = marching_cubes(volume, level=level)
    return max(0, (2 - _topology(Mesh(vertices, faces.astype(np.int64)))[1]) // 2)


def register(source: Mesh, target: Mesh, *, seed: int = 0) -> Registration:
    """Fit the deformation that carries ``source``'s surface onto ``target``'s (same frame, closed
    meshes such as decoded ones). Deterministic for a given seed; a few seconds on two cores."""
    import torch

    size = float(np.linalg.norm(np.ptp(target.vertices, axis=0)))
    ours = sample_surface(source.vertices, source.faces, FIT_POINTS, seed=seed).points.astype(np.float64)
    theirs = sample_surface(target.vertices, target.faces, FIT_POINTS, seed=seed + 1).points.astype(np.float64)
    nodes = ours[_farthest_points(ours, NODES)]
    index, weights = _skin(nodes, ours)
    edges = _graph_edges(nodes)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        g, x, y = (torch.as_tensor(a, dtype=torch.float32) for a in (nodes, ours, theirs))
        idx, w, e = torch.as_tensor(index), torch.as_tensor(weights, dtype=torch.float32), torch.as_tensor(edges)
        matrices = torch.eye(3).repeat(len(nodes), 1, 1).requires_grad_()
        shifts = torch.zeros(len(nodes), 3, requires_grad=True)
        local = x[:, None, :] - g[idx]
        optimiser = torch.optim.Adam([matrices, shifts], lr=size * LEARNING_RATE)
        scale = 1.0 / size
        for stiffness in STIFFNESS:
            for _ in range(STEPS_PER_STAGE):
                moved = (torch.einsum("nkij,nkj->nki", matrices[idx], local) + g[idx] + shifts[idx])
                deformed = (w[..., None] * moved).sum(1)
                d = torch.cdist(deformed * scale, y * scale)
                chamfer = d.min(1).values.square().mean() + d.min(0).values.square().mean()
                gram = matrices.transpose(1, 2) @ matrices
                rigid = (gram - torch.eye(3)).square().sum((1, 2)).mean()
                a, b = e[:, 0], e[:, 1]
                spoke = g[b] - g[a]
                smooth = ((torch.einsum("eij,ej->ei", matrices[a], spoke) + g[a] + shifts[a] - g[b] - shifts[b]) * scale
                          ).square().sum(1).mean()
                loss = chamfer + stiffness * (0.01 * rigid + smooth)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    registration = Registration(nodes, matrices.detach().double().numpy(), shifts.detach().double().numpy(), target,
                                None, {})
    carried = registration.deform(ours)
    uncovered = float((cKDTree(carried).query(theirs)[0] > UNMATCHED_DISTANCE * size).mean())
    stray = float((cKDTree(theirs).query(carried)[0] > UNMATCHED_DISTANCE * size).mean())
    pieces_a, pieces_b = _topology(source)[0], _topology(target)[0]
    registration.fit = {"chamfer": float(chamfer.detach().sqrt()), "uncovered_share": uncovered, "stray_share": stray,
                        "pieces": [pieces_a, pieces_b]}
    if pieces_a != pieces_b:
        registration.failure = f"the shapes have {pieces_a} and {pieces_b} main pieces"
    elif max(uncovered, stray) > UNMATCHED_SHARE:
        share, which = (uncovered, "the target's surface is not reached by") if uncovered >= stray else \
            (stray, "the source's surface finds no place on")
        registration.failure = f"{share:.1%} of {which} the other shape (more than {UNMATCHED_SHARE:.0%})"
    return registration
