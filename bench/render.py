"""Headless pictures: a small NumPy z-buffer rasteriser (orthographic, Lambert shading) and the
matplotlib figures built from its images."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

BASE_COLOR = np.array([0.72, 0.76, 0.82])
BACKGROUND = np.array([1.0, 1.0, 1.0])
LIGHT = np.array([0.35, 0.55, 0.76]) / np.linalg.norm([0.35, 0.55, 0.76])
_CANDIDATES = 4_000_000  # candidate pixels per vectorised batch


@dataclass(frozen=True)
class View:
    """Orthographic camera: rotation about the vertical axis, then a tilt; the cube [-1, 1]^3 fills
    the frame at ``zoom`` 1."""

    yaw_deg: float = 35.0
    pitch_deg: float = 20.0
    zoom: float = 1.0

    def rotation(self) -> np.ndarray:
        a, b = np.radians(self.yaw_deg), np.radians(self.pitch_deg)
        yaw = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        pitch = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
        return pitch @ yaw


def rasterize(vertices: np.ndarray, faces: np.ndarray, face_colors: np.ndarray | None = None, size: int = 320,
              view: View = View()) -> np.ndarray:
    """RGB image (size, size, 3) in [0, 1] of a mesh in normalised coordinates (flat Lambert shading,
    two-sided). ``face_colors`` (F, 3) defaults to a light grey."""
    image = np.tile(BACKGROUND, (size, size, 1))
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(f) == 0:
        return image
    v = np.asarray(vertices, dtype=np.float64) @ view.rotation().T
    tri = v[f]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-20)
    shade = 0.3 + 0.7 * np.abs(normals @ LIGHT)
    colors = np.tile(BASE_COLOR, (len(f), 1)) if face_colors is None else np.asarray(face_colors, dtype=np.float64)
    # screen: pixel centres at integers, x right, y down; depth grows towards the camera
    sx = (tri[:, :, 0] * view.zoom + 1) * size / 2 - 0.5
    sy = (1 - tri[:, :, 1] * view.zoom) * size / 2 - 0.5
    sz = tri[:, :, 2]
    lo_x, hi_x = np.ceil(sx.min(1)), np.floor(sx.max(1))
    lo_y, hi_y = np.ceil(sy.min(1)), np.floor(sy.max(1))
    span = np.maximum(hi_x - lo_x, hi_y - lo_y) + 1
    keep = (span >= 1) & (hi_x >= 0) & (lo_x < size) & (hi_y >= 0) & (lo_y < size)
    pix_all, depth_all, face_all = [], [], []
    extent = np.zeros(len(f), dtype=np.int64)
    extent[keep] = 2 ** np.ceil(np.log2(np.minimum(span[keep], size))).astype(np.int64)
    for side in np.unique(extent[keep]):
        ids = np.flatnonzero(extent == side)
        off = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2)
        for chunk in np.array_split(ids, max(1, len(ids) * side * side // _CANDIDATES)):
            px = np.clip(lo_x[chunk], 0, size - 1)[:, None] + off[None, :, 0]
            py = np.clip(lo_y[chunk], 0, size - 1)[:, None] + off[None, :, 1]
            x0, x1, x2 = (sx[chunk, k][:, None] for k in range(3))
            y0, y1, y2 = (sy[chunk, k][:, None] for k in range(3))
            area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
            safe = np.where(np.abs(area) < 1e-12, 1e-12, area)
            w0 = ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)) / safe
            w1 = ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)) / safe
            w2 = 1 - w0 - w1
            inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9) & (px < size) & (py < size) & (np.abs(area) >= 1e-12)
            depth = w0 * sz[chunk, 0][:, None] + w1 * sz[chunk, 1][:, None] + w2 * sz[chunk, 2][:, None]
            rows, cols = np.nonzero(inside)
            pix_all.append((py[rows, cols] * size + px[rows, cols]).astype(np.int64))
            depth_all.append(depth[rows, cols])
            face_all.append(chunk[rows])
    pix, depth, face = np.concatenate(pix_all), np.concatenate(depth_all), np.concatenate(face_all)
    if len(pix) == 0:
        return image
    order = np.lexsort((-depth, pix))
    first = order[np.unique(pix[order], return_index=True)[1]]
    flat = image.reshape(-1, 3)
    flat[pix[first]] = colors[face[first]] * shade[face[first], None]
    return image


ERROR_CMAP = "YlOrRd"  #: light yellow (no error) to dark red (≥ vmax)


def fitted_view(vertices: np.ndarray, view: View = View(), margin: float = 0.92) -> View:
    """``view`` zoomed so that ``vertices`` (normalised coordinates) fill ``margin`` of the frame."""
    reach = np.abs((np.asarray(vertices) @ view.rotation().T)[:, :2]).max() if len(vertices) else 1.0
    return View(view.yaw_deg, view.pitch_deg, margin / max(reach, 1e-6))


def error_colors(vertex_error: np.ndarray, faces: np.ndarray, vmax: float, cmap: str = ERROR_CMAP) -> np.ndarray:
    """Per-face RGB from per-vertex errors (mean over the face's corners), clipped at ``vmax``."""
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    face_error = np.asarray(vertex_error)[f].mean(1) if len(f) else np.zeros(0)
    return plt.get_cmap(cmap)(np.clip(face_error / vmax, 0, 1))[:, :3]


@dataclass
class Panel:
    """One picture in a comparison grid: a mesh in normalised coordinates, optionally with errors."""

    title: str
    vertices: np.ndarray
    faces: np.ndarray
    vertex_error: np.ndarray | None = None


def comparison_figure(path: Path, shape: str, panels: Sequence[Panel], vmax: float, size: int = 320) -> None:
    """Row 1: shaded renders; row 2: the same meshes coloured by distance to the ground truth. The
    camera is fitted to the first panel (the ground truth) and shared by all."""
    view = fitted_view(panels[0].vertices)
    fig, axes = plt.subplots(2, len(panels), figsize=(2.4 * len(panels), 5.4), squeeze=False)
    for col, panel in enumerate(panels):
        axes[0, col].imshow(rasterize(panel.vertices, panel.faces, size=size, view=view))
        axes[0, col].set_title(panel.title, fontsize=8)
        if panel.vertex_error is not None:
            colors = error_colors(panel.vertex_error, panel.faces, vmax)
            axes[1, col].imshow(rasterize(panel.vertices, panel.faces, colors, size=size, view=view))
        for row in (0, 1):
            axes[row, col].axis("off")
    mappable = plt.cm.ScalarMappable(cmap=ERROR_CMAP, norm=plt.Normalize(0, vmax))
    fig.colorbar(mappable, ax=axes[1, :].tolist(), shrink=0.7, label="distance to ground truth (normalised units)")
    fig.suptitle(shape, fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def strip_figure(path: Path, title: str, meshes: Sequence[tuple[str, np.ndarray, np.ndarray]], size: int = 240) -> None:
    """A row of renders (e.g. an interpolation path), each with a caption; one camera fitted to all."""
    view = fitted_view(np.concatenate([v for _, v, _ in meshes]))
    fig, axes = plt.subplots(1, len(meshes), figsize=(1.9 * len(meshes), 2.3), squeeze=False)
    for ax, (caption, v, f) in zip(axes[0], meshes):
        ax.imshow(rasterize(v, f, size=size, view=view))
        ax.set_title(caption, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def rd_plot(path: Path, series: dict[str, Sequence[tuple[float, float]]], oracle_cd: float, title: str) -> None:
    """Rate–distortion, log-log: mean CD-L1 against bytes per shape, one line per method family
    (``series``: {family: [(bytes per shape, mean CD-L1)]}); the oracle's mean CD-L1 dashed."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    markers = "os^DvxP*"
    for (name, points), marker in zip(series.items(), itertools.cycle(markers)):
        pts = sorted(p for p in points if p[0] > 0 and p[1] > 0 and np.isfinite(p[1]))
        if pts:
            ax.plot(*zip(*pts), marker=marker, linestyle="-" if len(pts) > 1 else "none", label=name)
    ax.axhline(oracle_cd, color="0.5", linestyle="--", linewidth=1, label="oracle (meshing limit)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("bytes per shape (library file ÷ shapes for ours)")
    ax.set_ylabel("mean CD-L1 (normalised units)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
