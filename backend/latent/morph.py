"""Morphs: in-betweens that move parts, as blends of one mesh carried from shape to shape.

The first shape's mesh is registered onto the next shape's surface (``geometry.correspondence``),
its registered copy onto the one after, and so on: each shape of a path gets a *station*, the same
vertices and faces placed on that shape's surface. An in-between is the vertex blend of two
neighbouring stations, so a leg swings along a straight line instead of fading out and back in, and
every mesh of a path shares one face list (what shape keys need). Where two shapes cannot correspond,
``MorphPath.failure`` says why and callers fall back to another blend mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..geometry.correspondence import Registration, register
from ..geometry.meshes import Mesh


def along(stations: Sequence[np.ndarray], position: float) -> np.ndarray:
    """Positions at ``position`` between ``stations`` (0 the first, 1 the second, ...): the vertex blend
    of the two neighbouring stations."""
    span = len(stations) - 1
    position = float(np.clip(position, 0, span))
    step = min(int(position), span - 1)
    s = position - step
    return (1 - s) * stations[step] + s * stations[step + 1]


@dataclass
class MorphPath:
    """One mesh's faces and its vertex positions at each shape of a path (``stations``), the
    registration measurements of each step (``fits``), and why it failed (None when it did not)."""

    faces: np.ndarray
    stations: list[np.ndarray]
    fits: list[dict] = field(default_factory=list)
    failure: str | None = None
    registrations: list[Registration] = field(default_factory=list)

    def at(self, position: float) -> np.ndarray:
        """Vertices at ``position`` along the path: 0 the first shape, 1 the second, and so on."""
        return along(self.stations, position)

    def carry(self, points: np.ndarray) -> list[np.ndarray]:
        """Other points of the first shape's surface (in its frame) at each station of the path."""
        stations = [np.asarray(points, dtype=np.float64)]
        for registration in self.registrations:
            stations.append(registration.project(stations[-1]))
        return stations


def handle_mismatch(handles: Sequence[int]) -> str | None:
    """Why a path through shapes with these holes (each shape's ``geometry.correspondence.handles``, in
    path order) cannot morph: a step between a surface with holes through it and one without them
    (a ball and a ring); None if every step keeps the count."""
    for a, b in zip(handles, handles[1:]):
        if a != b:
            return f"the shapes have {a} and {b} holes through them"
    return None


def morph_path(meshes: Sequence[Mesh], on_step: Callable[[int, int], None] | None = None) -> MorphPath:
    """Carry ``meshes[0]`` through the surfaces of the others in turn (all in one frame).

    The result's first station is ``meshes[0]``'s own vertices; each next one lies on the next shape's
    surface. Stops at the first pair that cannot correspond (``failure`` names it). ``registrations``
    keeps each step's fit, so ``carry`` takes other points of the first surface along the same path.
    """
    if len(meshes) < 2:
        raise ValueError("a morph needs at least two shapes")
    first = meshes[0]
    path = MorphPath(np.asarray(first.faces), [np.asarray(first.vertices, dtype=np.float64)])
    for step, target in enumerate(meshes[1:]):
        if on_step is not None:
            on_step(step, len(meshes) - 1)
        registration = register(Mesh(path.stations[-1], path.faces), target)
        path.fits.append(registration.fit)
        if registration.failure is not None:
            path.failure = f"step {step + 1}: {registration.failure}"
            return path
        path.registrations.append(registration)
        path.stations.append(registration.project(path.stations[-1]))
    return path

