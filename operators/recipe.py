"""Recipes: what to send the worker to decode a point of the code space (again).

The scene's current recipe comes from the Explore settings (start: a shape, a blend, the library
mean or a seeded random variant; variation amounts; detail dial). Previews, kept objects and
results store theirs as the custom property ``csdf_recipe`` of their object::

    {"library": "/abs/lib.csdf", "names": ["ball", "brick"], "weights": [0.5, 0.5],
     "amounts": [1.0, -0.5], "random": False, "seed": 0, "spread": 1.0,
     "detail": 1.0, "mode": "slerp", "code": [0.01, ...], "resolution": 64}

``names``/``weights`` are the base (empty: the library mean; for a random variant they only give
the units), ``code`` the raw code the worker reported (empty where unknown). Re-decoding sends the
raw code of a moved or random point (so it survives library edits that move the principal
directions) and the base itself otherwise (so a shape stays exact and keeps the detail dial).
"""

from __future__ import annotations

import math
from typing import Any

import bpy
from bpy.app.translations import pgettext_rpt as rpt_

from ..backend.interfaces import protocol
from .common import library_file
from .session import UserError

#: Custom property of an object holding its recipe.
RECIPE_KEY = "csdf_recipe"


def variation_count(context: bpy.types.Context) -> int:
    """How many Variation sliders apply: min(4, principal directions of the open library)."""
    from ..properties import MAX_VARIATIONS

    settings = context.scene.csdf
    state = context.window_manager.csdf_explore
    if state.directions >= 0 and state.library == settings.library_path:
        directions = state.directions
    else:  # not measured yet: N codes span at most N - 1 directions
        directions = max(len(settings.shapes) - 1, 0)
    return min(MAX_VARIATIONS, directions)


def _active_name(settings: Any) -> str | None:
    if 0 <= settings.active_shape < len(settings.shapes):
        return settings.shapes[settings.active_shape].name
    return None


def current_recipe(context: bpy.types.Context) -> dict[str, Any]:
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
        from .interpolate import blend_weights  # interpolate stores recipes: import here, not at the top

        base = blend_weights([item.name for item in settings.shapes if item.use], settings.blend)
    elif source == "WEIGHTS":
        weights = {item.name: item.weight for item in settings.shapes if item.use and item.weight > 0}
        if not weights:
            raise UserError(rpt_("Tick one or more shapes with a weight above 0 to blend them."))
        total = sum(weights.values())
        base = {name: w / total for name, w in weights.items()}
    amounts = [float(v) for v in settings.variation[: variation_count(context)]]
    return {
        "library": library, "names": list(base), "weights": list(base.values()), "amounts": amounts,
        "random": source == "RANDOM", "seed": int(settings.explore_seed), "spread": float(settings.explore_spread),
        "detail": float(settings.detail), "mode": settings.blend_mode, "code": [], "resolution": 0,
    }


def shape_recipe(library: str, weights: dict[str, float], resolution: int, *, mode: str = protocol.DEFAULT_BLEND_MODE,
                 detail: float = protocol.DEFAULT_DETAIL) -> dict[str, Any]:
    """The recipe of a decoded shape or ``{name: weight}`` blend (Reconstruct, Interpolate results)."""
    return {
        "library": library, "names": list(weights), "weights": [float(w) for w in weights.values()], "amounts": [],
        "random": False, "seed": 0, "spread": protocol.DEFAULT_SPREAD, "detail": float(detail), "mode": mode, "code": [],
        "resolution": int(resolution),
    }


def moved(recipe: dict[str, Any]) -> bool:
    """True when the recipe's point is a raw code (random, or moved along a direction), not a shape or blend."""
    return bool(recipe["random"] or any(recipe["amounts"]) or not recipe["names"])


def explore_args(recipe: dict[str, Any], out: str, resolution: int, *, nearest: int = protocol.DEFAULT_NEAREST,
                 target_faces: int | None = None, use_code: bool = False) -> protocol.ExploreArgs:
    """The worker request that decodes ``recipe`` into ``out`` (from its raw code with ``use_code``)."""
    base = dict(zip(recipe["names"], recipe["weights"])) or None
    code = list(recipe["code"]) if use_code and recipe["code"] and moved(recipe) else None
    return protocol.ExploreArgs(
        library=recipe["library"], out=out, base=base, amounts=list(recipe["amounts"]),
        seed=recipe["seed"] if recipe["random"] else None, spread=recipe["spread"], code=code, nearest=nearest,
        resolution=resolution, mode=recipe["mode"], detail=recipe["detail"], target_faces=target_faces,
    )


def apply_result(context: bpy.types.Context, recipe: dict[str, Any], data: dict[str, Any], resolution: int) -> dict[str, Any]:
    """Record an explore result's nearest shapes and directions in the panel; the recipe with its code."""
    state = context.window_manager.csdf_explore
    state.library = context.scene.csdf.library_path
    state.directions = int(data.get("directions", -1))
    state.nearest.clear()
    for name, distance in data.get("nearest") or []:
        item = state.nearest.add()
        item.name, item.distance = str(name), float(distance)
    return {**recipe, "code": [float(v) for v in data.get("code") or []], "resolution": int(resolution)}


def store(obj: bpy.types.Object, recipe: dict[str, Any]) -> None:
    obj[RECIPE_KEY] = recipe


def read(obj: bpy.types.Object | None) -> dict[str, Any] | None:
    """The recipe stored on ``obj`` (None without one); UserError when it is malformed."""
    if obj is None or RECIPE_KEY not in obj:
        return None
    raw = obj[RECIPE_KEY]
    try:
        data = raw.to_dict() if hasattr(raw, "to_dict") else dict(raw)
        recipe = {
            "library": str(data["library"]), "names": [str(n) for n in data.get("names", [])],
            "weights": [float(w) for w in data.get("weights", [])], "amounts": [float(a) for a in data.get("amounts", [])],
            "random": bool(data.get("random", False)), "seed": int(data.get("seed", 0)),
            "spread": float(data.get("spread", protocol.DEFAULT_SPREAD)), "detail": float(data.get("detail", protocol.DEFAULT_DETAIL)),
            "mode": str(data.get("mode", protocol.DEFAULT_BLEND_MODE)), "code": [float(v) for v in data.get("code", [])],
            "resolution": int(data.get("resolution", 0)),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(rpt_("The recipe of {} is malformed ({}).").format(obj.name, exc)) from exc
    numbers = recipe["weights"] + recipe["amounts"] + recipe["code"] + [recipe["spread"], recipe["detail"]]
    if len(recipe["names"]) != len(recipe["weights"]) or not all(math.isfinite(v) for v in numbers):
        raise UserError(rpt_("The recipe of {} is malformed (names, weights or numbers).").format(obj.name))
    return recipe


def describe(recipe: dict[str, Any]) -> str:
    """``ball 0.50 + brick 0.50, variation +1.0 -0.5, detail 1.00`` / ``random seed 3, …``."""
    if recipe["random"]:
        parts = [rpt_("random seed {}").format(recipe["seed"])]
    elif recipe["names"]:
        parts = [" + ".join(f"{n} {w:.2f}" for n, w in zip(recipe["names"], recipe["weights"]))]
    else:
        parts = [rpt_("library mean")]
    if any(recipe["amounts"]):
        parts.append(rpt_("variation {}").format(" ".join(f"{a:+.2f}" for a in recipe["amounts"])))
    parts.append(rpt_("detail {:.2f}").format(recipe["detail"]))
    return ", ".join(parts)


def format_nearest(nearest: list[list[Any]]) -> str:
    """``ball (0.120), brick (0.310)``."""
    return ", ".join("{} ({:.3f})".format(name, float(distance)) for name, distance in nearest)
