"""Read a latent library's metadata with the standard library only (no torch, no numpy).

A library file is a safetensors file: an 8-byte little-endian header length, a JSON header that
names each tensor's dtype, shape and byte range, then the raw tensor bytes. The library's own
metadata is a JSON document stored in the header's ``__metadata__`` under ``compact_sdf``.
Blender reads names and stats through this module without starting the backend.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from ..config import PER_SHAPE_FRAME, SHARED_FRAME, ModelConfig, SampleConfig, TrainConfig, setting
from ..errors import CompactSdfError, LibraryError
from ..names import validate_shape_name

FORMAT_NAME = "compact-sdf-library"
#: 4: each shape's stored distances predicted from their lattice neighbours (``field.codec``,
#: layout 4) and the shared networks in float16 (``store.library``); 3 (one stream per channel)
#: and 2 read too (``python -m backend upgrade`` rewrites them as 4, decoding the same).
FORMAT_VERSION = 4
#: Oldest format this version still reads (format 1 stored one shared grid; re-encode those files).
OLDEST_READABLE_VERSION = 2
METADATA_KEY = "compact_sdf"
_MAX_HEADER_BYTES = 64 * 1024 * 1024

#: The declared sizes that memory is allocated from, checked before anything is: each must lie in
#: its setting's range in ``config`` (far above every preset, far below what would exhaust memory),
#: the ranges ``Library.load`` enforces too. section -> key -> (min, max).
_SIZED = {"model": (ModelConfig, ("code_size", "pe_frequencies", "coarse_width", "coarse_depth", "grid_resolution",
                                  "grid_channels", "detail_width", "detail_depth")),
          "sample": (SampleConfig, ("grid_resolution", "surface_points", "wide_points", "uniform_points")),
          "train": (TrainConfig, ("band_batch", "point_batch", "detail_batch"))}
SIZE_LIMITS: dict[str, dict[str, tuple[int, int]]] = {
    section: {key: (int(setting(cls, key).low), int(setting(cls, key).high)) for key in keys}  # type: ignore[arg-type]
    for section, (cls, keys) in _SIZED.items()
}
MAX_SHAPES = 1_000_000


def read_header(path: str | Path) -> dict:
    """The safetensors JSON header of ``path``, checked against the file's size."""
    path = Path(path)
    if path.is_dir():
        raise LibraryError(f"{path} is a directory, not a library file; name a .csdf file")
    if not path.is_file():
        raise LibraryError(f"{path}: no such library file")
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise LibraryError(f"{path}: not a Compact SDF library (file too short)")
            (length,) = struct.unpack("<Q", prefix)
            if length > min(_MAX_HEADER_BYTES, size - 8):
                raise LibraryError(f"{path}: not a Compact SDF library, or truncated (bad header length)")
            raw = handle.read(length)
    except OSError as exc:
        raise LibraryError(f"{path}: cannot read the library file ({exc.strerror or exc}); check its permissions") from exc
    header = _parse_json(raw, path, "header")
    if not isinstance(header, dict):
        raise LibraryError(f"{path}: not a Compact SDF library (unexpected header)")
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__" and isinstance(t, dict)
               and isinstance(t.get("data_offsets"), list) and len(t["data_offsets"]) == 2
               and type(t["data_offsets"][1]) is int), default=0)
    if 8 + length + end > size:
        raise LibraryError(f"{path}: the library file is truncated ({size} bytes, needs {8 + length + end})")
    return header


def _parse_json(raw: bytes | str, path: str | Path, what: str) -> object:
    """Decoded JSON; LibraryError for bad UTF-8, bad JSON, absurd nesting or huge numbers."""
    try:
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except RecursionError as exc:
        raise LibraryError(f"{path}: the library {what} is nested too deeply to be a Compact SDF library") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, integers over the digit limit
        raise LibraryError(f"{path}: not a Compact SDF library, or a corrupt one (unreadable {what}: {exc})") from exc


def check_sizes(meta: dict, path: str | Path = "library", file_bytes: int | None = None) -> None:
    """LibraryError unless every declared size in ``meta`` is an integer within SIZE_LIMITS and,
    given ``file_bytes``, the hidden layers it declares could fit in a file of that size.

    Runs before anything is allocated from those sizes, so a forged file cannot exhaust memory.
    """
    for section, limits in SIZE_LIMITS.items():
        values = meta.get(section, {})
        if not isinstance(values, dict):
            raise LibraryError(f"{path}: the library metadata's {section!r} settings are not a JSON object")
        for key, (low, high) in limits.items():
            value = values.get(key, low)
            if type(value) is not int or not low <= value <= high:
                raise LibraryError(f"{path}: the library declares {section}.{key} = {value!r}, outside {low}..{high}; "
                                   "the file is corrupt or forged")
    model = meta.get("model")
    if not isinstance(model, dict):
        raise LibraryError(f"{path}: the library metadata has no model settings")
    if file_bytes is not None and _min_weight_bytes(model) > file_bytes:
        raise LibraryError(f"{path}: the library declares networks of about {_min_weight_bytes(model)} bytes, "
                           f"more than the whole file ({file_bytes} bytes); the file is corrupt or forged")


def _min_weight_bytes(model: dict) -> int:
    """A lower bound of the stored size of the declared networks: their square hidden-to-hidden
    weight matrices at 4 bits each (so any storage precision a library may use passes)."""
    elements = sum((model.get(depth, 1) - 1) * model.get(width, 1) ** 2
                   for width, depth in (("coarse_width", "coarse_depth"), ("detail_width", "detail_depth")))
    return elements // 2


def _check_shapes(shapes: object, path: str | Path) -> None:
    """LibraryError unless ``shapes`` is a list of objects with valid, distinct names."""
    if not isinstance(shapes, list) or not all(isinstance(s, dict) for s in shapes) or len(shapes) > MAX_SHAPES:
        raise LibraryError(f"{path}: the library metadata has no valid shape list")
    names = set()
    for shape in shapes:
        try:
            names.add(validate_shape_name(shape.get("name")))
        except CompactSdfError as exc:
            raise LibraryError(f"{path}: the library holds an invalid shape name: {exc}") from exc
        if not isinstance(shape.get("stats", {}), dict):
            raise LibraryError(f"{path}: shape {shape['name']!r} has invalid stats in the library metadata")
        if shape.get("frame", PER_SHAPE_FRAME) not in (SHARED_FRAME, PER_SHAPE_FRAME):
            raise LibraryError(f"{path}: shape {shape['name']!r} has an unknown frame {shape.get('frame')!r} in the "
                               f"library metadata (expected {SHARED_FRAME} or {PER_SHAPE_FRAME})")
    if len(names) != len(shapes):
        raise LibraryError(f"{path}: the library holds two shapes of the same name")


def shape_frame(shape: dict) -> str:
    """A shape's frame as its metadata records it: ``shared`` or ``per-shape`` (``geometry.frames``);
    files written before frames were recorded hold none, and all their shapes are per-shape."""
    return str(shape.get("frame", PER_SHAPE_FRAME))


def read_library_meta(path: str | Path) -> dict:
    """The library metadata (format, preset, configs, shapes with transforms and stats).

    Raises LibraryError for a missing, truncated, foreign, forged or newer-format file: shape
    names and declared sizes are checked here, before any caller builds anything from them.
    """
    header = read_header(path)
    container = header.get("__metadata__")
    raw = container.get(METADATA_KEY) if isinstance(container, dict) else None
    if not isinstance(raw, str):
        raise LibraryError(f"{path}: a safetensors file, but not a Compact SDF library")
    meta = _parse_json(raw, path, "metadata")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise LibraryError(f"{path}: not a Compact SDF library (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("format_version")
    if isinstance(version, int | float) and not isinstance(version, bool) and FORMAT_VERSION < version < math.inf:
        raise LibraryError(f"{path}: written by a newer Compact SDF (format {version}, this one reads up to format "
                           f"{FORMAT_VERSION}); upgrade Compact SDF to open it")
    if type(version) is not int or version < 1:
        raise LibraryError(f"{path}: the library metadata has no valid format version")
    _check_shapes(meta.get("shapes"), path)
    if not isinstance(meta.get("history", []), list):
        raise LibraryError(f"{path}: the library history is not a list")
    check_sizes(meta, path, Path(path).stat().st_size)
    return meta
