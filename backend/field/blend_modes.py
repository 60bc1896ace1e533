"""Blend modes: how a weighted blend of library shapes becomes one field to decode.

Every mode the engine has is one ``BlendMode`` in ``BLEND_MODES``; the CLI's choices, the worker
protocol's validation and the Blender panel's list all read this registry. A new blend mode goes
here: give it a name, a label and a description, the function that blends codes, and whether the
shapes' own fields are blended too. Importing this module does not import torch.

Training teaches slerp blends of code pairs with its own batched, row-wise twin of ``_slerp``
(``field.train.slerp_rows``): it clamps the angle away from 0 and pi instead of branching, so its
results differ in the last bits, and merging the two would change every trained library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import BadInputError

if TYPE_CHECKING:
    import torch


def _linear(codes: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted average of codes (K, D) with weights (K,) summing to 1."""
    return (weights[:, None] * codes).sum(0)


def _slerp(codes: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Directions blended on the sphere, norms linearly (for two codes, classic slerp); avoids the
    shrunken, washed-out middle of linear blends."""
    norms = codes.norm(dim=1).clamp_min(1e-12)
    units = codes / norms[:, None]
    if len(codes) == 2:
        theta = (units[0] @ units[1]).clamp(-1, 1).acos()
        if theta < 1e-4:
            direction = weights[0] * units[0] + weights[1] * units[1]
        else:
            direction = ((weights[0] * theta).sin() * units[0] + (weights[1] * theta).sin() * units[1]) / theta.sin()
    else:
        direction = (weights[:, None] * units).sum(0)
    return direction / direction.norm().clamp_min(1e-12) * (weights * norms).sum()


@dataclass(frozen=True)
class BlendMode:
    """One way of blending shapes: its name, UI label and description, and how it blends."""

    name: str
    label: str
    description: str
    #: The blend's code from the shapes' codes (K, D) and weights (K,) summing to 1.
    blend_codes: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    #: True: the decoded field is the weighted blend of each shape's own field (its code's field
    #: plus its stored detail); False: the field of the blended code.
    blends_fields: bool = False
    #: True: blends of library shapes carry one shape's mesh onto the others' surfaces and blend
    #: vertices (``latent.morph``); where shapes cannot correspond, mode ``falls_back_to`` blends them.
    moves_parts: bool = False
    falls_back_to: str | None = None


BLEND_MODES: dict[str, BlendMode] = {
    mode.name: mode
    for mode in (
        BlendMode("morph", "Morph",
                  "Carry one shape's surface onto the other's so parts move, one mesh along the whole path "
                  "(Spherical where the shapes cannot correspond, e.g. a ball and a ring)",
                  _slerp, moves_parts=True, falls_back_to="slerp"),
        BlendMode("slerp", "Spherical", "Interpolate code directions on the sphere (keeps detail in the middle)", _slerp),
        BlendMode("linear", "Linear", "Straight weighted average of codes", _linear),
        BlendMode("distance", "Distance Fields",
                  "Weighted average of the shapes' own signed distances (each with its detail): a cross-fade",
                  _linear, blends_fields=True),
    )
}


def blend_mode(name: str) -> BlendMode:
    """The registered mode called ``name``; BadInputError naming the choices otherwise."""
    try:
        return BLEND_MODES[name]
    except (KeyError, TypeError):
        raise BadInputError(f"unknown blend mode {name!r}; choose one of {', '.join(BLEND_MODES)}") from None
