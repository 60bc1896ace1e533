"""Decoding codes into meshes (DESIGN §1, fusion).

* An **encoded shape** decodes from its own stored band: coarse + detail at every lattice node
  where its grid is present, and outside the band the sign its band's boundary votes for
  (``shape_volume``). Its surface can only appear where the shape stored nodes.
* A **blend** or raw code has no band of its own: the coarse field (the coarse branch at the
  blended code, or the blend of the shapes' coarse distance fields, as its ``blend_modes`` entry
  says) runs on a sparse lattice, then exactly near its zero set; the blended shapes' detail is
  added only within a few voxels of that surface, faded by the detail dial, and tapered over the
  band's outer voxel (``blend_volume``).

Marching cubes (scikit-image) turns the volume into a mesh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .model import CompactSdf
from ..progress import Reporter
from ..geometry.sampling import lattice_points, lattice_spacing

_CHUNK = 65_536

#: Peak host memory per lattice node of each way of decoding, in bytes: VmHWM growth measured at
#: 192³ and 320³ on a CPU, rounded up. ``shape``: an encoded shape's own band (float32 volume,
#: band mask, region labels, signs, marching cubes); ``codes``: a blend of codes (the upsampled
#: coarse lattice and its copy, the band); ``fields``: a blend of the shapes' own distance fields
#: (each shape's volume and its Euclidean distance transform, float64 with int32 indices).
BYTES_PER_NODE = {"shape": 28, "codes": 24, "fields": 84}


def check_memory(resolution: int, kind: str) -> None:
    """BadInputError, before anything is allocated, if decoding at ``resolution``³ the ``kind``
    way (see ``BYTES_PER_NODE``) needs more memory than is available, naming the largest lattice that fits."""
    from .. import memory

    per_node = BYTES_PER_NODE[kind]

    def hint(available: int) -> str:
        fits = int((available / per_node) ** (1 / 3))
        return (f"lower the resolution (about {fits} fits now) or free some memory" if fits >= 16
                else "free some memory and try again")

    memory.require(per_node * float(resolution) ** 3, f"decoding at {resolution}³", hint)


@dataclass
class DecodedMesh:
    """A decoded surface in the requested coordinates: vertices float64 (a shape's own units may
    sit far from the origin or be tiny: float32 would lose them), normals float32, faces int32."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    stats: dict = field(default_factory=dict)


@torch.no_grad()
def _evaluate(fn, z: torch.Tensor, points: torch.Tensor, reporter: Reporter) -> torch.Tensor:
    out = torch.empty(len(points), device=points.device)
    for start in range(0, len(points), _CHUNK):
        reporter.check()
        x = points[start : start + _CHUNK]
        out[start : start + _CHUNK] = fn(z.expand(len(x), -1), x)
    return out


@torch.no_grad()
def shape_volume(model: CompactSdf, code: torch.Tensor, shape: int, resolution: int, *, distances: bool = False,
                 reporter: Reporter | None = None) -> tuple[np.ndarray, dict]:
    """Fused SDF of an encoded shape on the ``resolution``^3 lattice, from its own stored band.

    Nodes where the shape's grid is present (presence >= 1/2) get its band value; every other
    node lies in a region its band encloses, which takes the sign its band's boundary votes for.
    The surface therefore exists only inside the shape's stored band: no far-field specks, however
    the coarse branch behaves away from it. Outside the band the values are ±(2 voxels), or with
    ``distances`` a distance that keeps growing away from the band, so that fields can be blended.
    """
    reporter = reporter or Reporter()
    grid, device = model.detail.grid, code.device
    h = lattice_spacing(resolution)
    candidates = _near_stored(grid.keys[shape].numpy(), grid.resolution, resolution)
    points = torch.as_tensor(lattice_points(candidates, resolution)).to(device)
    z = code.reshape(1, -1)
    values = torch.empty(len(points), device=device)
    presence = torch.empty(len(points), device=device)
    for start in range(0, len(points), _CHUNK):
        reporter.check()
        x = points[start : start + _CHUNK]
        zs = z.expand(len(x), -1)
        values[start : start + _CHUNK], presence[start : start + _CHUNK] = model.detail(shape, zs, x, cubic=True)
    reporter.report("decoding", 2, 3, message="band")
    band = (presence >= 0.5).cpu().numpy()
    volume = fill_outside_band(candidates[band], values[torch.as_tensor(band, device=device)].cpu().numpy(),
                               resolution, fill=2 * h, distances=distances)
    stats = {"resolution": resolution, "detail_evaluations": int(len(points)), "detail_fraction": len(points) / resolution**3,
             "band_nodes": int(band.sum())}
    return volume, stats


def _near_stored(keys: np.ndarray, grid_resolution: int, resolution: int) -> np.ndarray:
    """Linear indices of the ``resolution``^3 lattice nodes whose grid cell has a stored corner."""
    r = grid_resolution
    occupied = np.zeros(r**3, dtype=bool)
    occupied[keys] = True
    occupied = occupied.reshape(r, r, r)
    cells = np.zeros((r - 1,) * 3, dtype=bool)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                cells |= occupied[dx : r - 1 + dx, dy : r - 1 + dy, dz : r - 1 + dz]
    cell = np.minimum(np.floor(np.arange(resolution) * ((r - 1) / (resolution - 1)) + 1e-9).astype(np.int64), r - 2)
    return np.flatnonzero(cells[np.ix_(cell, cell, cell)])


def fill_outside_band(index: np.ndarray, values: np.ndarray, resolution: int, fill: float,
                      distances: bool = False) -> np.ndarray:
    """A lattice volume holding ``values`` at ``index``; every other node gets ±``fill`` (with
    ``distances``: ±(``fill`` + its Euclidean distance to the band), a continuous distance field).

    The nodes outside the band form connected regions (6-connectivity); each takes the majority
    sign of the band values on its boundary (outside, +, if it touches none).
    """
    from scipy import ndimage

    volume = np.zeros(resolution**3, dtype=np.float32)
    volume[index] = values
    in_band = np.zeros(resolution**3, dtype=bool)
    in_band[index] = True
    volume, in_band = volume.reshape((resolution,) * 3), in_band.reshape((resolution,) * 3)
    labels, count = ndimage.label(~in_band)
    votes = np.zeros(count + 1)
    sign = np.sign(volume)
    for axis in range(3):
        for a, b in ((slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1))):
            here = [slice(None)] * 3
            there = [slice(None)] * 3
            here[axis], there[axis] = a, b
            pair = in_band[tuple(here)] & ~in_band[tuple(there)]
            votes += np.bincount(labels[tuple(there)][pair], weights=sign[tuple(here)][pair], minlength=count + 1)
    region_sign = np.where(votes < 0, -1.0, 1.0).astype(np.float32)
    outside = ~in_band
    size = fill + ndimage.distance_transform_edt(outside)[outside] * lattice_spacing(resolution) if distances else fill
    volume[outside] = region_sign[labels[outside]] * size
    return volume


@torch.no_grad()
def blend_volume(model: CompactSdf, codes: list[tuple[torch.Tensor, float]], details: list[tuple[int, torch.Tensor, float]],
                 resolution: int, band: float = 3.0, stride: int = 4, reporter: Reporter | None = None) -> tuple[np.ndarray, dict]:
    """Fused SDF of what is no single shape (a blend or a raw code) on the lattice, and stats.

    The coarse field is the weighted sum of the coarse branch at ``codes`` — (code, weight) pairs:
    one code for a blend of codes, one per shape for a blend of distance fields. It runs on every
    ``stride``-th node, then exactly near its zero set; within ``band`` voxels of that surface each
    of ``details`` — (grid, that shape's code, strength) — adds its correction times its presence
    and strength, tapered over the band's outer voxel.
    """
    reporter = reporter or Reporter()
    device = codes[0][0].device
    h = lattice_spacing(resolution)
    coarse_ijk, coarse_sdf, volume = coarse_lattice(model, codes, resolution, stride, reporter)
    # A coarse node this close to zero may have fine nodes of the band in its cell (factor 2: the
    # coarse branch is not an exact distance, so its slope can exceed 1).
    reach = band * h + 2.0 * stride * h * math.sqrt(3) / 2
    near = coarse_ijk[coarse_sdf.abs() <= reach]
    offsets = torch.arange(-(stride // 2), stride - stride // 2, device=device)
    cube = torch.stack(torch.meshgrid(offsets, offsets, offsets, indexing="ij"), -1).reshape(-1, 3)
    ijk = (near[:, None, :] + cube[None]).reshape(-1, 3)
    ijk = ijk[((ijk >= 0) & (ijk < resolution)).all(1)]
    index = (ijk[:, 0] * resolution + ijk[:, 1]) * resolution + ijk[:, 2]
    points = ijk.float() * h - 1.0
    values = _coarse_field(model, codes, points, reporter)
    reporter.report("decoding", 2, 3, message="band")

    in_band = values.abs() <= band * h
    detail_nodes = int(in_band.sum()) if details and model.detail is not None else 0
    if detail_nodes:
        taper = ((band * h - values[in_band].abs()) / h).clamp(0, 1)
        for grid_index, grid_code, strength in details:
            def faded(zs: torch.Tensor, x: torch.Tensor, g: int = grid_index) -> torch.Tensor:
                value, presence = model.detail(g, zs, x)  # that shape's detail over its own coarse shape
                return (value - model.coarse(zs, x)) * presence
            values[in_band] += strength * taper * _evaluate(faded, grid_code.reshape(1, -1), points[in_band], reporter)
    volume.view(-1)[index] = values
    stats = {
        "resolution": resolution,
        "band_voxels": band,
        "coarse_evaluations": int(len(coarse_ijk) + len(points)),
        "detail_evaluations": detail_nodes,
        "detail_fraction": detail_nodes / resolution**3,
    }
    return volume.cpu().numpy(), stats


def _coarse_field(model: CompactSdf, codes: list[tuple[torch.Tensor, float]], points: torch.Tensor,
                  reporter: Reporter) -> torch.Tensor:
    """The weighted sum of the coarse branch at ``codes`` — (code, weight) pairs — at ``points``."""
    return sum(w * _evaluate(model.coarse, c.reshape(1, -1), points, reporter) for c, w in codes)  # type: ignore[return-value]


@torch.no_grad()
def coarse_lattice(model: CompactSdf, codes: torch.Tensor | list[tuple[torch.Tensor, float]], resolution: int,
                   stride: int = 4, reporter: Reporter | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The coarse field on every ``stride``-th lattice node: (node ijk (k, 3), values (k,), the
    trilinear upsampling to the whole ``resolution``^3 lattice). ``codes``: one code or (code, weight) pairs."""
    reporter = reporter or Reporter()
    codes = [(codes, 1.0)] if isinstance(codes, torch.Tensor) else codes
    device = codes[0][0].device
    h = lattice_spacing(resolution)
    n_coarse = (resolution - 1) // stride + 2
    axis = torch.arange(n_coarse, device=device) * stride
    ijk = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    values = _coarse_field(model, codes, ijk * h - 1.0, reporter)
    reporter.report("decoding", 1, 3, message="coarse lattice")
    full = (n_coarse - 1) * stride + 1
    volume = F.interpolate(values.reshape(1, 1, n_coarse, n_coarse, n_coarse), size=(full,) * 3,
                           mode="trilinear", align_corners=True)[0, 0, :resolution, :resolution, :resolution].contiguous()
    return ijk, values, volume


def marching_cubes(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero level set of a lattice volume over [-1, 1]^3 with outward normals.

    The one wrapper around scikit-image's marching cubes; returns empty arrays if there is no
    surface.
    """
    from skimage import measure

    if not (volume.min() < 0 < volume.max()):
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32), np.zeros((0, 3), np.float32)
    h = lattice_spacing(volume.shape[0])
    # "descent" winds faces outward for an SDF that is negative inside; the returned normals point
    # down the gradient either way, so they are flipped.
    verts, faces, normals, _ = measure.marching_cubes(volume, 0.0, spacing=(h, h, h), gradient_direction="descent")
    return (verts - 1.0).astype(np.float32), faces.astype(np.int32), (-normals).astype(np.float32)
