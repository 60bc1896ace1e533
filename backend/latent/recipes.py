"""Recipes of points of the code space, and the plain arithmetic of blends.

A ``Recipe`` says how a point of a library's code space was reached (a shape, a blend, the library
mean or a seeded random variant, moved along principal directions) and what it decoded to (its raw
code, at which resolution); ``api.explore`` decodes one. Path weights, weight normalisation and the
number of variation sliders are computed here and only here.

Pure Python (no torch, no NumPy, no Blender), so the Blender side imports it directly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import DEFAULT_SPREAD, DecodeConfig
from ..errors import BadInputError

#: Variation sliders kept per scene; the panel shows min(this, the library's principal directions).
MAX_VARIATIONS = 4

_DECODE = DecodeConfig()


def variation_count(directions: int) -> int:
    """How many variation sliders apply to a library with ``directions`` principal directions."""
    return max(0, min(MAX_VARIATIONS, directions))


def path_weights(names: Sequence[str], position: float) -> dict[str, float]:
    """Blend weights at ``position`` along the path through ``names``, counted in steps (0 is
    ``names[0]``, 1 is ``names[1]``, …; clamped to the path): the two neighbours mix, and a shape
    that follows itself on the path gets weight 1."""
    if len(names) < 2:
        raise BadInputError("a path needs at least two shapes")
    span = len(names) - 1
    position = min(max(float(position), 0.0), float(span))
    segment = min(int(position), span - 1)
    f = position - segment
    a, b = names[segment], names[segment + 1]
    return {a: 1.0 - f, b: f} if a != b else {a: 1.0}


def normalized_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """``weights`` scaled to sum to 1; BadInputError unless they are finite, non-negative and
    sum to a finite number above 0."""
    values = [float(w) for w in weights.values()]
    total = sum(values) if all(math.isfinite(w) for w in values) else math.nan
    if not values or not 0 < total < math.inf or any(w < 0 for w in values):
        raise BadInputError(f"blend weights must be finite, non-negative and sum to a finite number above 0, got {values}")
    return {name: w / total for name, w in zip(weights, values)}


@dataclass(frozen=True)
class Recipe:
    """How to decode a point of the code space (again).

    ``names``/``weights`` are the base (empty: the library mean; for a random variant they only
    give the units), ``amounts`` the standard deviations moved along principal directions 1, 2, …,
    ``seed``/``spread`` the random variant when ``random``; ``code`` is the raw code the point
    decoded to (empty where unknown) and ``resolution`` the lattice it was decoded at (0: not yet).
    Stored as the plain dict of ``to_dict`` (the custom property ``csdf_recipe`` of Blender objects).
    """

    library: str
    names: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    amounts: list[float] = field(default_factory=list)
    random: bool = False
    seed: int = 0
    spread: float = DEFAULT_SPREAD
    detail: float = _DECODE.detail
    mode: str = _DECODE.mode
    code: list[float] = field(default_factory=list)
    resolution: int = 0

    @classmethod
    def of_blend(cls, library: str, weights: Mapping[str, float], resolution: int, *, mode: str = _DECODE.mode,
                 detail: float = _DECODE.detail) -> Recipe:
        """The recipe of a decoded shape (``{name: 1}``) or ``{name: weight}`` blend."""
        return cls(str(library), list(weights), [float(w) for w in weights.values()], detail=float(detail), mode=mode,
                   resolution=int(resolution))

    @property
    def base(self) -> dict[str, float] | None:
        """The base as ``{name: weight}``; None for the library mean."""
        return dict(zip(self.names, self.weights)) or None

    @property
    def moved(self) -> bool:
        """True when the point is a raw code (random, or moved along a direction), not a shape or blend."""
        return bool(self.random or any(self.amounts) or not self.names)

    def with_result(self, code: Sequence[float] | None = None, resolution: int | None = None) -> Recipe:
        """This recipe with the raw code it decoded to and/or the resolution it was decoded at."""
        changes: dict[str, Any] = {}
        if code is not None:
            changes["code"] = [float(v) for v in code]
        if resolution is not None:
            changes["resolution"] = int(resolution)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The stored form: a JSON-ready dict with one key per field."""
        return {f.name: list(getattr(self, f.name)) if isinstance(getattr(self, f.name), list) else getattr(self, f.name)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        """A recipe from its stored form (missing keys but ``library`` take their defaults); ValueError
        when it is malformed (a missing library, a value of the wrong type, names without weights,
        numbers that are not finite)."""
        try:
            recipe = cls(
                library=str(data["library"]), names=[str(n) for n in data.get("names", [])],
                weights=[float(w) for w in data.get("weights", [])], amounts=[float(a) for a in data.get("amounts", [])],
                random=bool(data.get("random", False)), seed=int(data.get("seed", 0)),
                spread=float(data.get("spread", DEFAULT_SPREAD)), detail=float(data.get("detail", _DECODE.detail)),
                mode=str(data.get("mode", _DECODE.mode)), code=[float(v) for v in data.get("code", [])],
                resolution=int(data.get("resolution", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from exc
        numbers = recipe.weights + recipe.amounts + recipe.code + [recipe.spread, recipe.detail]
        if len(recipe.names) != len(recipe.weights) or not all(math.isfinite(v) for v in numbers):
            raise ValueError("names, weights or numbers")
        return recipe
