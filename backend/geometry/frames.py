"""The frame shapes are encoded in: each its own bounding box, or one box shared by all (torch-free).

Every shape is stored normalised into the working cube (DESIGN §3). ``per-shape``: each shape's
own bounding box is centred and scaled to longest side ``NORMALIZED_EXTENT``, so two poses of one
body whose boxes differ (a raised arm, a curled tail) are stored at different scales and offsets,
and a blend of them changes size and place along the path. ``shared``: one Normalization, from the
box of all the shapes together, for all of them, so shapes that live in one coordinate system (the
poses of a character, the variants of a product, the frames of an animation) are blended in it and
their in-betweens stay in place and at scale. A library holds at most one shared frame: the
transform of its shared shapes, which an add in the shared frame reuses (``choose_frame``).

``auto`` (the default) picks shared when the shapes of one encode look like one coordinate system
(``looks_shared``), per-shape otherwise. Measured on the repository's data (docs/benchmarks.md,
"Shared frame"): the 17 unrelated shipped meshes give per-shape, the lion and horse pose families
shared.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..config import PER_SHAPE_FRAME as PER_SHAPE
from ..config import SHARED_FRAME as SHARED
from ..errors import BadMeshError
from .meshes import Mesh, Normalization, normalization

#: auto, one connectivity (a pose family): shared unless some shape would keep less than this share
#: of its own scale in the common box (a walk with root motion across a scene: per-shape, which
#: blends positions linearly anyway). The lion family's most curled pose keeps 0.45.
MIN_SHARED_SCALE = 0.25
#: auto, different connectivities: shared only if every pair of boxes overlaps by at least this
#: intersection-over-union and their longest sides differ by at most this factor. Of the 136 pairs
#: of the 17 shipped meshes only three pass, each one object in one coordinate system (plane and
#: plane_holes 1.00, spot at two resolutions 0.98, the two human bodies 0.78); the best unrelated
#: pair (bob, bunny) has 0.49. A shape in a shared frame so chosen keeps at least 1/1.5 of its scale.
MIN_BOX_IOU = 0.6
MAX_EXTENT_RATIO = 1.5
#: A shape fits a shared frame when its box lies within ±FIT_LIMIT in it: the frame's own shapes keep
#: the 0.1 margin of DESIGN §3 (±0.9), an added one may use half of it, which keeps its surface at
#: least 0.05 (6 voxels of the 256³ lattice, more than the sampling band) inside the cube.
FIT_LIMIT = 0.95


@dataclass(frozen=True)
class FrameChoice:
    """The frame an encode's new shapes get: ``frame`` (shared or per-shape), why, and for shared
    the one ``transform`` of them all (None for per-shape: each shape's own box)."""

    frame: str
    reason: str
    transform: Normalization | None = None


def boxes(meshes: Sequence[Mesh]) -> np.ndarray:
    """(n, 2, 3): each mesh's bounding box, low and high corner."""
    return np.array([[m.vertices.min(axis=0), m.vertices.max(axis=0)] for m in meshes], dtype=np.float64)


def common_frame(meshes: Sequence[Mesh]) -> Normalization:
    """The Normalization of all ``meshes`` together: their common box centred, longest side NORMALIZED_EXTENT."""
    corners = boxes(meshes).reshape(-1, 3)
    return normalization(corners, "the shapes together")


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes (2, 3); a flat box's volume counts as 0."""
    inter = float(np.prod(np.clip(np.minimum(a[1], b[1]) - np.maximum(a[0], b[0]), 0, None)))
    union = float(np.prod(a[1] - a[0]) + np.prod(b[1] - b[0])) - inter
    return inter / union if union > 0 else 0.0


def same_connectivity(meshes: Sequence[Mesh]) -> bool:
    """True when every mesh has the same vertex count and the same face list (one mesh in several poses)."""
    first = meshes[0]
    return all(len(m.vertices) == len(first.vertices) and np.array_equal(m.faces, first.faces) for m in meshes[1:])


def looks_shared(meshes: Sequence[Mesh]) -> tuple[bool, str]:
    """Whether ``meshes`` (two or more, in their own units) look like one coordinate system, and why.

    Shared when they share one connectivity (same vertex count and face list: poses or frames of one
    mesh) and none would shrink below MIN_SHARED_SCALE of its own scale in the common box; or, with
    different connectivities, when every pair of boxes overlaps by MIN_BOX_IOU or more at longest
    sides within MAX_EXTENT_RATIO (one object remeshed, variants modelled in place).
    """
    if len(meshes) < 2:
        return False, "one shape: nothing to share a frame with"
    b = boxes(meshes)
    longest = (b[:, 1] - b[:, 0]).max(axis=1)
    common = float((b[:, 1].max(axis=0) - b[:, 0].min(axis=0)).max())
    if same_connectivity(meshes):
        kept = float(longest.min() / common)
        if kept < MIN_SHARED_SCALE:
            return False, (f"one connectivity, but a shape would keep {kept:.2f} of its scale in the common box "
                           f"(< {MIN_SHARED_SCALE}): the shapes are far apart")
        return True, f"one connectivity ({len(meshes[0].vertices)} vertices): poses of one mesh"
    worst_iou, worst_ratio = 1.0, 1.0
    for i, j in itertools.combinations(range(len(meshes)), 2):
        worst_iou = min(worst_iou, box_iou(b[i], b[j]))
        worst_ratio = max(worst_ratio, float(max(longest[i], longest[j]) / max(min(longest[i], longest[j]), 1e-300)))
    if worst_iou >= MIN_BOX_IOU and worst_ratio <= MAX_EXTENT_RATIO:
        return True, f"boxes overlap (IoU >= {worst_iou:.2f}) at similar sizes (within {worst_ratio:.2f}x)"
    return False, (f"different connectivities and boxes that do not overlap enough (worst IoU {worst_iou:.2f}, "
                   f"sizes within {worst_ratio:.2f}x; shared needs IoU >= {MIN_BOX_IOU} and {MAX_EXTENT_RATIO}x)")


def fit(frame: Normalization, mesh: Mesh) -> float:
    """How far ``mesh`` reaches in ``frame``: the largest |coordinate| of its box there (fits if <= FIT_LIMIT)."""
    return float(np.abs(frame.apply(boxes([mesh])[0])).max())


def choose_frame(requested: str, meshes: dict[str, Mesh], library_frame: Normalization | None = None) -> FrameChoice:
    """The frame of an encode's new ``meshes`` (validated, in their own units) for ``requested``
    (auto, shared or per-shape), given the shared frame of the library they are added to, if any.

    Shared with a library frame reuses it (BadMeshError naming the shapes that do not fit; auto then
    picks per-shape); shared without one makes the new shapes' common box the frame. Auto on an add
    to a library with a shared frame keeps it when every new shape fits it at no less than
    MIN_SHARED_SCALE of its own scale, and otherwise decides among the new shapes as ``looks_shared``.
    """
    if requested == PER_SHAPE:
        return FrameChoice(PER_SHAPE, "asked for")
    if requested not in (SHARED, "auto"):
        raise ValueError(f"frame must be one of auto, {SHARED}, {PER_SHAPE}; got {requested!r}")
    if library_frame is not None:
        reach = {name: fit(library_frame, mesh) for name, mesh in meshes.items()}
        outside = [name for name, r in reach.items() if r > FIT_LIMIT]
        if requested == SHARED:
            if outside:
                worst = max(outside, key=reach.__getitem__)
                raise BadMeshError(
                    f"{', '.join(outside)} do not fit the library's shared frame ({worst} reaches {reach[worst]:.2f} "
                    f"of the working cube, the limit is {FIT_LIMIT}): add them with frame per-shape (--frame "
                    "per-shape), or encode the whole family again together")
            return FrameChoice(SHARED, "the library's shared frame", library_frame)
        scale = min(normalization(m.vertices, n).scale for n, m in meshes.items())
        if not outside and library_frame.scale / scale >= MIN_SHARED_SCALE:
            return FrameChoice(SHARED, "fits the library's shared frame", library_frame)
        if len(meshes) < 2:
            why = "does not fit the library's shared frame" if outside else "would be too small in the library's shared frame"
            return FrameChoice(PER_SHAPE, why)
    if requested == SHARED:
        return FrameChoice(SHARED, "asked for", common_frame(list(meshes.values())))
    shared, why = looks_shared(list(meshes.values()))
    if library_frame is not None and shared:
        return FrameChoice(PER_SHAPE, f"{why}, but they do not fit the library's shared frame")
    return FrameChoice(SHARED, why, common_frame(list(meshes.values()))) if shared else FrameChoice(PER_SHAPE, why)
