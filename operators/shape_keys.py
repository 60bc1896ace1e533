"""A morph path kept as shape keys on the artist's own mesh, played by one ``Blend`` slider.

Each in-between of the path becomes one shape key (relative to the Basis); a driver on each key
turns the object's ``Blend`` property (0 → 1) into hat-shaped weights, so that at any value exactly
the two neighbouring keys mix and the mesh moves along the path piecewise linearly. The drivers are
Blender's simple expressions (``max``/``abs``): they run without Python scripts enabled.
"""

from __future__ import annotations

import bpy
import numpy as np

#: The object property that plays the path, and the prefix of the keys this module owns.
BLEND_PROPERTY, KEY_PREFIX = "Blend", "csdf "


def wants_shape_keys(settings: bpy.types.PropertyGroup) -> bool:
    """Whether In-Betweens morph the active object into shape keys (only the morph mode can)."""
    return settings.interp_shape_keys and settings.blend_mode == "morph"


def morph_keys(obj: bpy.types.Object) -> list[bpy.types.ShapeKey]:
    """The object's shape keys made by ``add_morph_keys``, in path order."""
    keys = obj.data.shape_keys
    return [k for k in keys.key_blocks if k.name.startswith(KEY_PREFIX)] if keys is not None else []


def add_morph_keys(obj: bpy.types.Object, positions: list[np.ndarray], label: str) -> list[bpy.types.ShapeKey]:
    """Replace the object's earlier morph keys by one key per position after the first (the first is
    the object's own mesh, its Basis), driven by ``obj["Blend"]``; the artist's other keys stay."""
    mesh = obj.data
    for key in morph_keys(obj):
        if mesh.shape_keys.animation_data is not None:
            mesh.shape_keys.driver_remove(f'key_blocks["{key.name}"].value')
        obj.shape_key_remove(key)
    if mesh.shape_keys is None:
        obj.shape_key_add(name="Basis", from_mix=False)
    obj[BLEND_PROPERTY] = 0.0
    obj.id_properties_ui(BLEND_PROPERTY).update(min=0.0, max=1.0, soft_min=0.0, soft_max=1.0,
                                                 description=f"Play the morph {label} (0: this mesh, 1: the last shape)")
    steps = len(positions) - 1
    keys = []
    for index, vertices in enumerate(positions[1:], start=1):
        key = obj.shape_key_add(name=f"{KEY_PREFIX}{label} {index}/{steps}", from_mix=False)
        key.data.foreach_set("co", np.ascontiguousarray(vertices, dtype=np.float32).ravel())
        driver = key.driver_add("value").driver
        driver.type = "SCRIPTED"
        variable = driver.variables.new()
        variable.name, variable.type = "blend", "SINGLE_PROP"
        variable.targets[0].id_type = "OBJECT"
        variable.targets[0].id = obj
        variable.targets[0].data_path = f'["{BLEND_PROPERTY}"]'
        driver.expression = f"max(0, 1 - abs(blend * {steps} - {index}))"
        keys.append(key)
    mesh.update()
    return keys
