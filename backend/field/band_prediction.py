"""Lossless prediction of integer values stored on a sparse lattice band (library format 4).

A node's stored distance is almost a linear function of its neighbours': the 3D Lorenzo predictor
(the seven already-visited corners of its cell, signs alternating) is exact for every function
without an ``x·y·z`` term, so its residual is little more than rounding noise. In a ±1.5-voxel band
not every node has all seven, so each node takes the first predictor of ``_PREDICTORS`` whose
neighbours are all stored: Lorenzo in 3D, then in each coordinate plane, then linear extrapolation
along each axis, then the previous node along an axis, then none. Which one a node uses depends
only on the node mask, so a reader knows it before reading a value.

Residuals are the int8 values minus their prediction, wrapping modulo 256 (exact for any int8
values, forged ones included), and are returned grouped by predictor (a compressor codes each
group's narrower spread better). Measured on the 17 shipped shapes (``python -m bench.detail_bytes``):
2.5-4.6 bits per node of order-0 entropy, where differences along node order carry 4.9-7.4.
"""

from __future__ import annotations

import numpy as np

#: (offset (di, dj, dk) back along the lattice, coefficient) of each predictor, in order of preference.
_PREDICTORS: tuple[tuple[tuple[tuple[int, int, int], int], ...], ...] = (
    (((0, 0, 1), 1), ((0, 1, 0), 1), ((1, 0, 0), 1), ((0, 1, 1), -1), ((1, 0, 1), -1), ((1, 1, 0), -1), ((1, 1, 1), 1)),
    (((0, 0, 1), 1), ((0, 1, 0), 1), ((0, 1, 1), -1)),
    (((0, 0, 1), 1), ((1, 0, 0), 1), ((1, 0, 1), -1)),
    (((0, 1, 0), 1), ((1, 0, 0), 1), ((1, 1, 0), -1)),
    (((0, 0, 1), 2), ((0, 0, 2), -1)),
    (((0, 1, 0), 2), ((0, 2, 0), -1)),
    (((1, 0, 0), 2), ((2, 0, 0), -1)),
    (((0, 0, 1), 1),),
    (((0, 1, 0), 1),),
    (((1, 0, 0), 1),),
)
_WIDTH = max(len(p) for p in _PREDICTORS)


class BandPredictor:
    """The predictors of one shape's stored nodes: sorted linear ``keys`` on a ``resolution``³ lattice."""

    def __init__(self, keys: np.ndarray, resolution: int) -> None:
        keys = np.asarray(keys, np.int64)
        count, r = len(keys), resolution
        ijk = np.stack(np.unravel_index(keys, (r, r, r)), 1) if count else np.zeros((0, 3), np.int64)
        found: dict[tuple[int, int, int], np.ndarray] = {}  # node position of each offset's neighbour, or -1
        for offset in {o for predictor in _PREDICTORS for o, _ in predictor}:
            target = keys - (offset[0] * r + offset[1]) * r - offset[2]
            pos = np.searchsorted(keys, target).clip(max=max(count - 1, 0))
            hit = (ijk >= offset).all(1) & (keys[pos] == target) if count else np.zeros(0, bool)
            found[offset] = np.where(hit, pos, -1)
        #: neighbour positions (count, _WIDTH) into the values (``count``: a zero) and their coefficients
        self.neighbours = np.full((count, _WIDTH), count, np.int64)
        self.coefficients = np.zeros((count, _WIDTH), np.int32)
        self.kind = np.full(count, len(_PREDICTORS), np.int8)  #: each node's predictor (len: none)
        free = np.ones(count, bool)
        for kind, predictor in enumerate(_PREDICTORS):
            usable = free & np.all([found[o] >= 0 for o, _ in predictor], axis=0)
            for column, (offset, coefficient) in enumerate(predictor):
                self.neighbours[usable, column] = found[offset][usable]
                self.coefficients[usable, column] = coefficient
            self.kind[usable] = kind
            free &= ~usable
        self.order = np.argsort(self.kind, kind="stable")  #: residuals are stored grouped by predictor
        # every neighbour lies on an earlier diagonal plane i + j + k: decoding runs plane by plane
        planes = ijk.sum(1)
        self._by_plane = np.argsort(planes, kind="stable")
        self._plane_starts = np.searchsorted(planes[self._by_plane], np.arange(3 * r - 2))

    def residuals(self, values: np.ndarray) -> np.ndarray:
        """The stored residuals (uint8) of a shape's int8 ``values``, grouped by predictor."""
        padded = np.append(values.astype(np.int32), 0)
        predicted = (padded[self.neighbours] * self.coefficients).sum(1)
        return ((values.astype(np.int32) - predicted) % 256).astype(np.uint8)[self.order]

    def values(self, residuals: np.ndarray) -> np.ndarray:
        """The int8 values whose ``residuals`` these are (the inverse of ``residuals``)."""
        count = len(self.kind)
        own = np.empty(count, np.int32)
        own[self.order] = residuals
        padded = np.zeros(count + 1, np.int32)
        bounds = np.append(self._plane_starts, count)
        for start, stop in zip(bounds[:-1], bounds[1:]):
            if start == stop:
                continue
            nodes = self._by_plane[start:stop]
            predicted = (padded[self.neighbours[nodes]] * self.coefficients[nodes]).sum(1)
            padded[nodes] = (own[nodes] + predicted + 128) % 256 - 128
        return padded[:count].astype(np.int8)
