"""Compact storage of each shape's detail: node masks and quantised features, zstd-compressed.

A shape's stored nodes are a bit mask over the grid lattice (``np.packbits`` in linear-index
order); its features are rounded to at most 8-bit signed integers with one scale per channel,
stored channel by channel as differences along node order (or kept as float16). Both blobs are
zstd-compressed. Decompression is bounded by sizes known
before anything is allocated, so a forged blob cannot exhaust memory.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import LibraryError


def quantize(features: torch.Tensor, bits: int, distance_bits: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(stored values, per-channel scales) of a shape's (k, C) features.

    ``bits`` 16 keeps float16; 4..8 rounds to ``2**(bits-1) - 1`` signed levels per channel, held in
    int8 (fewer levels carry less entropy, which the compressor turns into fewer bytes). Channel 0,
    the stored distance, gets ``distance_bits`` (default ``bits``). Reading back needs only the scales.
    """
    f = features.detach().float().cpu().numpy()
    if bits == 16:
        return f.astype(np.float16), np.ones(f.shape[1], np.float32)
    levels = np.full(f.shape[1], 2 ** (bits - 1) - 1, dtype=np.float64)
    if distance_bits is not None and f.shape[1]:
        levels[0] = 2 ** (distance_bits - 1) - 1
    scales = (np.abs(f).max(axis=0) / levels if len(f) else np.zeros(f.shape[1])).astype(np.float32)
    scales[scales == 0] = 1.0
    return np.clip(np.rint(f / scales), -levels, levels).astype(np.int8), scales


def dequantize(values: np.ndarray, scales: np.ndarray) -> torch.Tensor:
    """Features (k, C) float32 from stored values and per-channel scales."""
    return torch.from_numpy(values.astype(np.float32) * scales[None, :].astype(np.float32))


def round_trip(features: torch.Tensor, bits: int, distance_bits: int | None = None) -> torch.Tensor:
    """``features`` as they will read back after saving (so a fresh library equals its file)."""
    return dequantize(*quantize(features, bits, distance_bits))


def pack_shape(keys: np.ndarray, features: torch.Tensor, resolution: int, bits: int, level: int,
               distance_bits: int | None = None) -> dict[str, np.ndarray]:
    """The stored arrays of one shape: compressed node mask, compressed features, scales."""
    import zstandard

    mask = np.zeros(resolution**3, dtype=bool)
    mask[keys] = True
    values, scales = quantize(features, bits, distance_bits)
    compressor = zstandard.ZstdCompressor(level=level)
    return {"nodes": np.frombuffer(compressor.compress(np.packbits(mask).tobytes()), np.uint8),
            "features": np.frombuffer(compressor.compress(_delta(values).tobytes()), np.uint8),
            "scales": scales}


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
        data = zstandard.ZstdDecompressor().decompress(blob.tobytes(), max_output_size=size)
    except zstandard.ZstdError as exc:
        raise LibraryError(f"{what} is corrupt ({exc})") from exc
    if len(data) != size:
        raise LibraryError(f"{what} holds {len(data)} bytes, expected {size}")
    return data


def unpack_shape(stored: dict[str, np.ndarray], resolution: int, channels: int, bits: int, node_count: int,
                 what: str) -> tuple[np.ndarray, torch.Tensor]:
    """(sorted node keys, features (k, C)) of one shape from its stored arrays; LibraryError if inconsistent."""
    mask = np.unpackbits(np.frombuffer(_decompress(stored["nodes"], (resolution**3 + 7) // 8, f"{what} node mask"), np.uint8),
                         count=resolution**3).astype(bool)
    keys = np.flatnonzero(mask)
    if len(keys) != node_count:
        raise LibraryError(f"{what} has {len(keys)} nodes, its metadata says {node_count}")
    dtype = np.float16 if bits == 16 else np.int8
    raw = _decompress(stored["features"], node_count * channels * np.dtype(dtype).itemsize, f"{what} features")
    values = np.frombuffer(raw, dtype)
    values = _undelta(values, node_count, channels) if dtype == np.int8 else values.reshape(node_count, channels)
    scales = stored["scales"]
    if scales.shape != (channels,) or scales.dtype != np.float32 or not np.all(np.isfinite(scales)):
        raise LibraryError(f"{what} feature scales are invalid")
    features = dequantize(values, scales)
    if not torch.isfinite(features).all():
        raise LibraryError(f"{what} features hold NaN or infinite values")
    return keys, features
