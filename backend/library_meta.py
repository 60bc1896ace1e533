"""Read a latent library's metadata with the standard library only (no torch, no numpy).

A library file is a safetensors file: an 8-byte little-endian header length, a JSON header that
names each tensor's dtype, shape and byte range, then the raw tensor bytes. The library's own
metadata is a JSON document stored in the header's ``__metadata__`` under ``compact_sdf``.
Blender reads names and stats through this module without starting the backend.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from .errors import LibraryError

FORMAT_NAME = "compact-sdf-library"
FORMAT_VERSION = 2
#: Oldest format this version still reads (format 1 stored one shared grid; re-encode those files).
OLDEST_READABLE_VERSION = 2
METADATA_KEY = "compact_sdf"
_MAX_HEADER_BYTES = 64 * 1024 * 1024


def read_header(path: str | Path) -> dict:
    """The safetensors JSON header of ``path``, checked against the file's size."""
    path = Path(path)
    if not path.is_file():
        raise LibraryError(f"{path}: no such library file")
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise LibraryError(f"{path}: not a Compact SDF library (file too short)")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(_MAX_HEADER_BYTES, size - 8):
            raise LibraryError(f"{path}: not a Compact SDF library, or truncated (bad header length)")
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LibraryError(f"{path}: not a Compact SDF library (unreadable header)") from exc
    if not isinstance(header, dict):
        raise LibraryError(f"{path}: not a Compact SDF library (unexpected header)")
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__" and isinstance(t, dict)
               and isinstance(t.get("data_offsets"), list) and len(t["data_offsets"]) == 2), default=0)
    if 8 + length + end > size:
        raise LibraryError(f"{path}: the library file is truncated ({size} bytes, needs {8 + length + end})")
    return header


def read_library_meta(path: str | Path) -> dict:
    """The library metadata (format, preset, configs, shapes with transforms and stats).

    Raises LibraryError for a missing, truncated, foreign or newer-format file.
    """
    header = read_header(path)
    raw = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if raw is None:
        raise LibraryError(f"{path}: a safetensors file, but not a Compact SDF library")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise LibraryError(f"{path}: the library metadata is corrupt") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise LibraryError(f"{path}: not a Compact SDF library (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise LibraryError(f"{path}: the library metadata has no valid format version")
    if version > FORMAT_VERSION:
        raise LibraryError(
            f"{path}: library format version {version} is newer than this Compact SDF supports "
            f"({FORMAT_VERSION}); update the extension to open it"
        )
    shapes = meta.get("shapes")
    if not isinstance(shapes, list) or not all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in shapes):
        raise LibraryError(f"{path}: the library metadata has no valid shape list")
    return meta
