"""A procedural pose family: one jointed limb bent to several angles, one connectivity in every pose.

Vertex *i* is the same point of the limb in every pose, so the vertex blend of two poses is a
reference in-between (what ``bench.morph`` measures against) and tests of morphs need no data files.
The limb is a capsule along z whose upper half turns about the x axis by the pose's angle, the turn
growing smoothly over a short joint so the surface stays smooth and closed.
"""

from __future__ import annotations

import numpy as np

from .meshes import Mesh

#: Capsule length and radius, and the height over which the joint's turn grows from 0 to full.
LENGTH, RADIUS, JOINT = 1.4, 0.16, 0.25


def limb_pose(angle_degrees: float, sections: int = 48) -> Mesh:
    """The limb bent by ``angle_degrees`` at its middle (0: straight); closed, about 2·sections² faces."""
    import trimesh

    capsule = trimesh.creation.capsule(height=LENGTH - 2 * RADIUS, radius=RADIUS, count=[sections, sections])
    v = np.asarray(capsule.vertices, dtype=np.float64) - [0.0, 0.0, (LENGTH - 2 * RADIUS) / 2]
    share = np.clip(v[:, 2] / JOINT, 0.0, 1.0)
    turn = np.radians(angle_degrees) * share * share * (3 - 2 * share)
    y, z = v[:, 1], v[:, 2]
    bent = np.stack([v[:, 0], y * np.cos(turn) - z * np.sin(turn), y * np.sin(turn) + z * np.cos(turn)], axis=1)
    return Mesh(bent, np.asarray(capsule.faces, dtype=np.int64))


def limb_family(angles: tuple[float, ...] = (0.0, 45.0, 90.0)) -> dict[str, Mesh]:
    """Poses ``limb_{angle:03d}`` of one limb (same faces in each), in one coordinate system."""
    return {f"limb_{int(round(a)):03d}": limb_pose(a) for a in angles}
