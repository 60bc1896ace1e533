"""Recipes in Blender: the scene's Explore settings as a ``Recipe``, the worker request that
decodes one (again), and the recipes stored on objects.

A ``Recipe`` (``backend.latent.recipes``) is a point of the code space: a shape, a blend, the
library mean or a seeded random variant, moved along principal directions, with the detail dial and
the raw code the worker reported. Previews, kept objects and results store theirs as the custom
property ``csdf_recipe`` of their object, in the plain form of ``Recipe.to_dict``::

    {"library": "/abs/lib.csdf", "names": ["ball", "brick"], "weights": [0.5, 0.5],
     "amounts": [1.0, -0.5], "random": False, "seed": 0, "spread": 1.0,
     "detail": 1.0, "mode": "slerp", "code": [0.01, ...], "resolution": 64}

Re-decoding sends the raw code of a moved or random point (so it survives library edits that move
the principal directions) and the base itself otherwise (so a shape stays exact and keeps the
detail dial); the worker decodes either with ``api.explore``.
"""

from __future__ import annotations

from typing import Any

import bpy
from bpy.app.translations import pgettext_rpt as rpt_

from ..backend.interfaces import protocol
from ..backend.latent import recipes as latent_recipes
from ..backend.latent.recipes import Recipe
from .scene_library import library_file
from .session import UserError

#: Custom property of an object holding its recipe.
RECIPE_KEY = "csdf_recipe"


def variation_count(context: bpy.types.Context) -> int:
    """How many Variation sliders apply: min(MAX_VARIATIONS, principal directions of the open library)."""
    settings = context.scene.csdf
    state = context.window_manager.csdf_explore
    if state.directions >= 0 and state.library == settings.library_path:
        directions = state.directions
    else:  # not measured yet: N codes span at most N - 1 directions
        directions = len(settings.shapes) - 1
    return latent_recipes.variation_count(directions)


def ticked_weights(settings: Any) -> dict[str, float]:
    """The weighted blend of the ticked shapes (weights above 0), normalised; UserError when there is none."""
    weights = {item.name: item.weight for item in settings.shapes if item.use and item.weight > 0}
    if not weights:
        raise UserError(rpt_("Tick one or more shapes with a weight above 0 to blend them."))
    return latent_recipes.normalized_weights(weights)


def path_blend(settings: Any) -> dict[str, float]:
    """The blend at the Blend slider's position along the path through the ticked shapes; UserError
    with fewer than two."""
    names = [item.name for item in settings.shapes if item.use]
    if len(names) < 2:
        raise UserError(rpt_("Tick at least two shapes in the library list to blend them."))
    return latent_recipes.path_weights(names, min(max(settings.blend, 0.0), 1.0) * (len(names) - 1))


def _active_name(settings: Any) -> str | None:
    if 0 <= settings.active_shape < len(settings.shapes):
        return settings.shapes[settings.active_shape].name
    return None


def current_recipe(context: bpy.types.Context) -> Recipe:
    """The scene's Explore settings as a recipe (no code yet); UserError when they name nothing."""
    settings = context.scene.csdf
    library = str(library_file(settings, must_exist=True))
    source = settings.explore_source
    base: dict[str, float] = {}
    if source in {"SHAPE", "RANDOM"}:
        name = _active_name(settings)
        if name is not None:
            base = {name: 1.0}
        elif source == "SHAPE":
            raise UserError(rpt_("The library list is empty: open a library or encode shapes first."))
    elif source == "PATH":
        base = path_blend(settings)
    elif source == "WEIGHTS":
        base = ticked_weights(settings)
    return Recipe(
        library, list(base), list(base.values()), [float(v) for v in settings.variation[: variation_count(context)]],
        random=source == "RANDOM", seed=int(settings.explore_seed), spread=float(settings.explore_spread),
        detail=float(settings.detail), mode=settings.blend_mode,
    )


def explore_args(recipe: Recipe, out: str, resolution: int, *, nearest: int = protocol.DEFAULT_NEAREST,
                 target_faces: int | None = None, use_code: bool = False) -> protocol.ExploreArgs:
    """The worker request that decodes ``recipe`` into ``out`` (from its raw code with ``use_code``)."""
    code = list(recipe.code) if use_code and recipe.code and recipe.moved else None
    return protocol.ExploreArgs(
        library=recipe.library, out=out, base=recipe.base, amounts=list(recipe.amounts),
        seed=recipe.seed if recipe.random else None, spread=recipe.spread, code=code, nearest=nearest,
        resolution=resolution, mode=recipe.mode, detail=recipe.detail, target_faces=target_faces,
    )


def apply_result(context: bpy.types.Context, recipe: Recipe, data: dict[str, Any], resolution: int) -> Recipe:
    """Record an explore result's nearest shapes and directions in the panel; the recipe with its code."""
    state = context.window_manager.csdf_explore
    state.library = context.scene.csdf.library_path
    state.directions = int(data.get("directions", -1))
    state.nearest.clear()
    for name, distance in data.get("nearest") or []:
        item = state.nearest.add()
        item.name, item.distance = str(name), float(distance)
    return recipe.with_result(code=data.get("code") or [], resolution=resolution)


def store(obj: bpy.types.Object, recipe: Recipe) -> None:
    obj[RECIPE_KEY] = recipe.to_dict()


def read(obj: bpy.types.Object | None) -> Recipe | None:
    """The recipe stored on ``obj`` (None without one); UserError when it is malformed."""
    if obj is None or RECIPE_KEY not in obj:
        return None
    raw = obj[RECIPE_KEY]
    try:
        return Recipe.from_dict(raw.to_dict() if hasattr(raw, "to_dict") else dict(raw))
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(rpt_("The recipe of {} is malformed ({}).").format(obj.name, exc)) from exc


def describe(recipe: Recipe) -> str:
    """``ball 0.50 + brick 0.50, variation +1.0 -0.5, detail 1.00`` / ``random seed 3, …``."""
    if recipe.random:
        parts = [rpt_("random seed {}").format(recipe.seed)]
    elif recipe.names:
        parts = [" + ".join(f"{n} {w:.2f}" for n, w in zip(recipe.names, recipe.weights))]
    else:
        parts = [rpt_("library mean")]
    if any(recipe.amounts):
        parts.append(rpt_("variation {}").format(" ".join(f"{a:+.2f}" for a in recipe.amounts)))
    parts.append(rpt_("detail {:.2f}").format(recipe.detail))
    return ", ".join(parts)


def format_nearest(nearest: list[list[Any]]) -> str:
    """``ball (0.120), brick (0.310)``."""
    return ", ".join("{} ({:.3f})".format(name, float(distance)) for name, distance in nearest)
