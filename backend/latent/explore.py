"""Exploring a library's latent space: principal directions, random variants, nearest shapes.

Codes live on (or inside) the unit ball; their distribution is summarised by its mean and
principal directions (an SVD of the centred codes); random variants blend library codes. Every
function returns plain NumPy codes that ``api.decode`` accepts as raw codes, so a result can be
stored and decoded again later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import DEFAULT_SPREAD, RANDOM_VARIANT_MIX, ExploreConfig
from ..errors import BadInputError
from ..store.library import Library


@dataclass(frozen=True)
class CodeSpace:
    """Mean code (D,), principal directions (K, D) and their standard deviations (K,), largest first."""

    mean: np.ndarray
    directions: np.ndarray
    stds: np.ndarray


def code_space(library: Library) -> CodeSpace:
    """The principal directions of the library's codes (at most N - 1 of them for N shapes)."""
    codes = library.codes.detach().cpu().numpy().astype(np.float64)
    if len(codes) == 0:
        raise BadInputError("the library has no shapes to explore")
    mean = codes.mean(0)
    if len(codes) == 1:
        return CodeSpace(mean, np.zeros((0, codes.shape[1])), np.zeros(0))
    _, s, vt = np.linalg.svd(codes - mean, full_matrices=False)
    keep = s > 1e-9 * max(1.0, s[0])
    return CodeSpace(mean, vt[keep], s[keep] / np.sqrt(len(codes) - 1))


def vary(library: Library, base: np.ndarray, amounts: list[float] | np.ndarray) -> np.ndarray:
    """``base`` moved along the first principal directions by ``amounts`` standard deviations each."""
    space = code_space(library)
    amounts = np.asarray(amounts, dtype=np.float64)
    if not np.all(np.isfinite(amounts)):
        raise BadInputError("variation amounts must be finite numbers")
    if len(amounts) > len(space.stds):
        raise BadInputError(f"the library has {len(space.stds)} principal directions, {len(amounts)} amounts were given")
    k = len(amounts)
    return (np.asarray(base, dtype=np.float64) + (amounts * space.stds[:k]) @ space.directions[:k]).astype(np.float32)


def random_code(library: Library, seed: int, spread: float = DEFAULT_SPREAD) -> np.ndarray:
    """A plausible new code (seeded): a blend of ``RANDOM_VARIANT_MIX`` library codes picked at random,
    with random (flat Dirichlet) weights, then moved by Gaussian noise of ``spread`` standard
    deviations along the principal directions. ``spread`` 0 keeps it among the library's codes."""
    if not np.isfinite(spread) or spread < 0:
        raise BadInputError(f"spread must be a non-negative number, got {spread}")
    space = code_space(library)
    codes = library.codes.detach().cpu().numpy().astype(np.float64)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(codes), min(RANDOM_VARIANT_MIX, len(codes)), replace=False)
    blend = rng.dirichlet(np.ones(len(pick))) @ codes[pick]
    return vary(library, blend, rng.standard_normal(len(space.stds)) * spread)


def nearest_shapes(library: Library, code: np.ndarray, count: int = ExploreConfig().nearest) -> list[tuple[str, float]]:
    """The ``count`` library shapes whose codes are closest to ``code``, with their distances."""
    codes = library.codes.detach().cpu().numpy()
    code = np.asarray(code, dtype=np.float32)
    if code.shape != (codes.shape[1],) or not np.all(np.isfinite(code)):
        raise BadInputError(f"a code must be {codes.shape[1]} finite numbers")
    distance = np.linalg.norm(codes - code, axis=1)
    order = np.argsort(distance)[:count]
    return [(library.shapes[i].name, float(distance[i])) for i in order]
