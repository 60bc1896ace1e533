"""Compact storage of each shape's detail: one ``DetailCodec`` packs, unpacks and rounds it.

A shape's stored nodes are a bit mask over the grid lattice (``np.packbits`` in linear-index
order); its features are rounded to at most 8-bit signed integers with one scale per channel
(channel 0, the node's distance, at ``distance_bits``), or kept as float16. Both are
zstd-compressed. Decompression is bounded by sizes known before anything is allocated, so a
forged blob cannot exhaust memory.

Three layouts, named by the library format that introduced them (``LAYOUTS``):

* **2**: the features as one zstd frame, every int8 channel as differences along node order;
* **3**: one zstd frame per channel, each stored as differences or as is, whichever
  compresses smaller, plus a ``streams`` table (per channel: a mode byte and the frame's length).
  Differences pay for the smooth stored distance (channel 0); the learned channels are closer to
  noise, where differencing doubles the spread of the values (measured: 10-14 % fewer bytes per
  shape on the bundled examples, decoded features identical).
* **4** (written now): layout 3 with a third stream mode for int8 channels, the residuals of
  ``band_prediction.BandPredictor`` (each node predicted from its stored lattice neighbours),
  which the smooth stored distance compresses to about two thirds of its differences (measured:
  ``docs/benchmarks.md``).

The codec owns everything about that layout: the per-shape tensors a library file holds
(``tensor_shapes``, stored as ``shape{i}.<name>``), the rounding that training applies so a fresh
library equals its file (``round_trip``), and how files written by older versions read back
(``DetailCodec.settings``, the layout of their format); the format version itself lives in
``store.library_meta``, which Blender reads without numpy. A new storage codec goes here: a new
layout that ``DetailCodec.of`` returns for the ``StorageConfig`` (or format) that asks for it,
with a new library format when older versions cannot read it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .band_prediction import BandPredictor
from ..config import StorageConfig
from ..errors import LibraryError

#: Library formats whose per-shape layout the codec reads (and writes, the last by default): see above.
LAYOUTS = (2, 3, 4)


@dataclass(frozen=True)
class DetailCodec:
    """How one library stores each shape's detail: feature bits, channel-0 bits, zstd level.

    ``feature_bits`` 16 keeps float16 (and then ``distance_bits`` is 16 too); 4..8 rounds each
    channel to ``2**(bits-1) - 1`` signed levels of its own scale, held in int8 (fewer levels carry
    less entropy, which the compressor turns into fewer bytes); channel 0 gets ``distance_bits``.
    """

    feature_bits: int
    distance_bits: int
    level: int
    layout: int = LAYOUTS[-1]  #: the library format whose per-shape layout this reads and writes

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.feature_bits not in (4, 5, 6, 7, 8, 16):
            raise ValueError(f"feature_bits must be 4..8 or 16, got {self.feature_bits!r}")
        allowed = (16,) if self.feature_bits == 16 else (4, 5, 6, 7, 8)
        if self.distance_bits not in allowed:
            raise ValueError(f"distance_bits must be 4..8 (16 exactly when feature_bits is), got {self.distance_bits!r}")

    @classmethod
    def of(cls, storage: StorageConfig, layout: int = LAYOUTS[-1]) -> DetailCodec:
        """The codec of a library with storage settings ``storage``, written in format ``layout``."""
        return cls(storage.feature_bits, storage.channel0_bits, storage.zstd_level, layout)

    @staticmethod
    def settings(data: object) -> StorageConfig:
        """The StorageConfig of a file's ``storage`` metadata. Files written before ``distance_bits``
        existed stored channel 0 at ``feature_bits``, so they read (and re-save) exactly so."""
        if isinstance(data, dict) and "distance_bits" not in data and data.get("feature_bits") in (4, 5, 6, 7, 8):
            data = {**data, "distance_bits": data["feature_bits"]}
        return StorageConfig.from_dict(data)  # type: ignore[arg-type]

    def tensor_shapes(self, channels: int) -> dict[str, tuple[int, ...] | None]:
        """The tensors of one shape in a library file (each stored as ``shape{i}.<name>``) with their
        shapes (None: a 1-D byte string): the compressed node mask, the compressed features, in
        layout 3 the table of their per-channel streams, and the per-channel scales (float32)."""
        streams: dict[str, tuple[int, ...] | None] = {"streams": None} if self.layout >= 3 else {}
        return {"nodes": None, "features": None, **streams, "scales": (channels,)}

    def quantize(self, features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(stored values, per-channel scales) of a shape's (k, C) features; reading back needs only the scales."""
        f = features.detach().float().cpu().numpy()
        if self.feature_bits == 16:
            return f.astype(np.float16), np.ones(f.shape[1], np.float32)
        levels = np.full(f.shape[1], 2 ** (self.feature_bits - 1) - 1, dtype=np.float64)
        if f.shape[1]:
            levels[0] = 2 ** (self.distance_bits - 1) - 1
        scales = (np.abs(f).max(axis=0) / levels if len(f) else np.zeros(f.shape[1])).astype(np.float32)
        scales[scales == 0] = 1.0
        return np.clip(np.rint(f / scales), -levels, levels).astype(np.int8), scales

    def round_trip(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` (k, C), or their first columns, as they will read back after saving (so
        training can round as stored and a fresh library equals its file)."""
        return _dequantize(*self.quantize(features))

    def pack(self, keys: np.ndarray, features: torch.Tensor, resolution: int) -> dict[str, np.ndarray]:
        """The stored arrays of one shape (``tensor_shapes``) from its sorted node keys and features (k, C)."""
        import zstandard

        mask = np.zeros(resolution**3, dtype=bool)
        mask[keys] = True
        values, scales = self.quantize(features)
        compressor = zstandard.ZstdCompressor(level=self.level)
        stored = {"nodes": np.frombuffer(compressor.compress(np.packbits(mask).tobytes()), np.uint8)}
        if self.layout == 2:
            stored["features"] = np.frombuffer(compressor.compress(_delta(values).tobytes()), np.uint8)
        else:
            predictor = BandPredictor(keys, resolution) if self.layout >= 4 and values.dtype == np.int8 else None
            stored["features"], stored["streams"] = _pack_streams(values, compressor, predictor)
        return {**stored, "scales": scales}

    def unpack(self, stored: dict[str, np.ndarray], resolution: int, channels: int, node_count: int,
               what: str) -> tuple[np.ndarray, torch.Tensor]:
        """(sorted node keys, features (k, C)) of one shape from its stored arrays; LibraryError
        (naming ``what``) if they are inconsistent."""
        packed = np.frombuffer(_decompress(stored["nodes"], (resolution**3 + 7) // 8, f"{what} node mask"), np.uint8)
        if resolution**3 % 8 and packed[-1] & (0xFF >> resolution**3 % 8):
            raise LibraryError(f"{what} node mask marks nodes beyond its {resolution}^3 lattice")
        keys = np.flatnonzero(np.unpackbits(packed, count=resolution**3))
        if len(keys) != node_count:
            raise LibraryError(f"{what} has {len(keys)} nodes, its metadata says {node_count}")
        dtype = np.dtype(np.float16 if self.feature_bits == 16 else np.int8)
        if self.layout == 2:
            raw = _decompress(stored["features"], node_count * channels * dtype.itemsize, f"{what} features")
            values = np.frombuffer(raw, dtype)
            values = _undelta(values, node_count, channels) if dtype == np.int8 else values.reshape(node_count, channels)
        else:
            values = _unpack_streams(stored["features"], stored["streams"], node_count, channels, dtype, what,
                                     lambda: BandPredictor(keys, resolution), self.layout)
        scales = stored["scales"]
        # pack writes positive finite scales (ones for float16): a zero, negative or NaN one is forged
        if scales.shape != (channels,) or scales.dtype != np.float32 or not np.all(np.isfinite(scales) & (scales > 0)) \
                or (self.feature_bits == 16 and not np.all(scales == 1)):
            raise LibraryError(f"{what} feature scales are invalid (each must be a positive number"
                               f"{', 1 for float16 features' if self.feature_bits == 16 else ''})")
        features = _dequantize(values, scales)
        if not torch.isfinite(features).all():
            raise LibraryError(f"{what} features hold NaN or infinite values")
        return keys, features


#: A stream's mode: the channel's values as they are, as differences along node order, or (layout 4)
#: as the residuals of the band's lattice prediction.
_AS_IS, _DIFFERENCES, _PREDICTED = 0, 1, 2
STREAM_ENTRY = struct.Struct("<BI")  #: one channel's entry in the streams table (mode, compressed length)


def _pack_streams(values: np.ndarray, compressor: object,
                  predictor: BandPredictor | None) -> tuple[np.ndarray, np.ndarray]:
    """(features, streams) of layouts 3 and 4: one zstd frame per channel, each channel as is, as
    differences or (with a ``predictor``) as prediction residuals, the last two for int8 only,
    whichever is smallest; the table says which and how long each frame is."""
    frames, table = [], []
    for column in np.ascontiguousarray(values.T):
        options = {_AS_IS: compressor.compress(column.tobytes())}  # type: ignore[attr-defined]
        if column.dtype == np.int8:
            options[_DIFFERENCES] = compressor.compress(_delta(column[:, None]).tobytes())  # type: ignore[attr-defined]
            if predictor is not None:
                options[_PREDICTED] = compressor.compress(predictor.residuals(column).tobytes())  # type: ignore[attr-defined]
        mode = min(options, key=lambda m: (len(options[m]), m))
        frames.append(options[mode])
        table.append(STREAM_ENTRY.pack(mode, len(options[mode])))
    return np.frombuffer(b"".join(frames), np.uint8), np.frombuffer(b"".join(table), np.uint8)


def _unpack_streams(features: np.ndarray, streams: np.ndarray, count: int, channels: int, dtype: np.dtype,
                    what: str, predictor: Callable[[], BandPredictor], layout: int) -> np.ndarray:
    """The stored values (count, channels) of layouts 3 and 4 (``predictor`` builds the shape's
    lattice prediction, only if a stream needs it); LibraryError if the table or a frame is forged."""
    if streams.shape != (channels * STREAM_ENTRY.size,):
        raise LibraryError(f"{what} stream table holds {streams.size} bytes, expected {channels * STREAM_ENTRY.size}")
    entries = list(STREAM_ENTRY.iter_unpack(streams.tobytes()))
    if sum(length for _, length in entries) != features.size:
        raise LibraryError(f"{what} stream table does not add up to its {features.size} bytes of features")
    modes = (_AS_IS,) if dtype != np.int8 else (_AS_IS, _DIFFERENCES, _PREDICTED) if layout >= 4 else (_AS_IS, _DIFFERENCES)
    values, start, prediction = np.empty((count, channels), dtype), 0, None
    for c, (mode, length) in enumerate(entries):
        if mode not in modes:
            raise LibraryError(f"{what} channel {c} has an unknown stream mode {mode}")
        raw = _decompress(features[start : start + length], count * dtype.itemsize, f"{what} channel {c}")
        column = np.frombuffer(raw, dtype)
        if mode == _PREDICTED:
            prediction = prediction or predictor()
            column = prediction.values(column.view(np.uint8))
        values[:, c] = _undelta(column, count, 1)[:, 0] if mode == _DIFFERENCES else column
        start += length
    return values


def _dequantize(values: np.ndarray, scales: np.ndarray) -> torch.Tensor:
    """Features (k, C) float32 from stored values and per-channel scales (a forged scale near the
    float32 limit overflows to inf, which ``unpack`` refuses: no warning on the way)."""
    with np.errstate(over="ignore"):
        return torch.from_numpy(values.astype(np.float32) * scales[None, :].astype(np.float32))


def _delta(values: np.ndarray) -> np.ndarray:
    """Integer features as channel-planar differences along node order (wrapping int8), which the
    compressor packs far tighter: neighbouring nodes hold similar values. float16 stays as is."""
    if values.dtype != np.int8:
        return values
    planes = np.ascontiguousarray(values.T).view(np.uint8)
    return np.diff(planes, axis=1, prepend=np.zeros((len(planes), 1), np.uint8))


def _undelta(stored: np.ndarray, count: int, channels: int) -> np.ndarray:
    """The inverse of ``_delta`` for ``count`` nodes of int8 features."""
    planes = np.cumsum(stored.reshape(channels, count), axis=1, dtype=np.uint8)
    return np.ascontiguousarray(planes.view(np.int8).T)


def _decompress(blob: np.ndarray, size: int, what: str) -> bytes:
    import zstandard

    try:
        declared = zstandard.frame_content_size(blob.tobytes())
        if declared != size:
            raise LibraryError(f"{what} declares {declared} bytes, expected {size}")
        # one frame and nothing after it: a second frame or trailing bytes (a mask longer than its lattice) are forged
        data = zstandard.ZstdDecompressor().decompress(blob.tobytes(), max_output_size=size, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise LibraryError(f"{what} is corrupt ({exc})") from exc
    if len(data) != size:
        raise LibraryError(f"{what} holds {len(data)} bytes, expected {size}")
    return data
