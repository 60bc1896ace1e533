"""The scene's shape list: rebuilt from library metadata, and read for the shapes and placement a job uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mathutils import Matrix


def encode_errors(stats: dict[str, Any]) -> tuple[float, float]:
    """(near-surface, far-field) mean SDF errors recorded at encode time; -1 where unknown."""
    near, far = stats.get("near_surface_error"), stats.get("far_field_error")
    return (float(near) if near is not None else -1.0, float(far) if far is not None else -1.0)


def refresh_shapes(settings: Any, meta: dict[str, Any], placed: Mapping[str, Matrix] | None = None) -> None:
    """Rebuild the shape list from library metadata, keeping per-shape UI state by name; the shapes
    in ``placed`` (just encoded from scene objects) record those world matrices."""
    from ..backend.store.library_meta import shape_frame

    kept = {
        item.name: (item.use, item.weight, item.matrix.copy(), item.has_matrix) for item in settings.shapes
    }
    settings.shapes.clear()
    for shape in meta.get("shapes", []):
        item = settings.shapes.add()
        item.name = str(shape["name"])
        item.code_size = int(shape.get("code_size") or 0)
        item.surface_error, item.far_error = encode_errors(shape.get("stats") or {})
        item.frame = shape_frame(shape)
        if item.name in kept:
            item.use, item.weight, matrix, item.has_matrix = kept[item.name]
            item.matrix = matrix
    for name, matrix in (placed or {}).items():
        item = settings.shapes.get(name)
        if item is not None:
            item.matrix, item.has_matrix = matrix, True
    settings.active_shape = min(settings.active_shape, max(len(settings.shapes) - 1, 0))
    settings.library_error = ""


def used_shapes(settings: Any) -> list[str]:
    """Shapes ticked "use" in list order, else the active one."""
    names = [item.name for item in settings.shapes if item.use]
    if not names and 0 <= settings.active_shape < len(settings.shapes):
        names = [settings.shapes[settings.active_shape].name]
    return names


def shape_matrix(settings: Any, name: str) -> Matrix:
    """World matrix recorded for a shape when it was encoded, else identity."""
    item = settings.shapes.get(name)
    if item is not None and item.has_matrix:
        return item.matrix.copy()
    return Matrix.Identity(4)

