"""Shape names: what a library may store, and how a name becomes a safe file name.

Stdlib only (Blender reads libraries through ``library_meta``, which checks names with this).
A stored name is a label, never a path: no separators, no ``..``, no control characters. When
names become file names (``decode --all -o DIR``) they go through ``safe_file_stem`` as well, so
even a name that slipped past validation cannot leave the output directory.
"""

from __future__ import annotations

import re
import unicodedata

from .errors import BadNameError

MAX_NAME_LENGTH = 128
_UNSAFE_FILE_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def _name_problem(name: object) -> str | None:
    """What is wrong with ``name`` as a shape name, or None if nothing."""
    if not isinstance(name, str):
        return f"must be a string, not {type(name).__name__}"
    if not name:
        return "is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name)} characters long (at most {MAX_NAME_LENGTH})"
    if name != name.strip():
        return "starts or ends with whitespace"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in name):
        return "contains control characters"
    if "/" in name or "\\" in name:
        return "contains a path separator (/ or \\)"
    if name in (".", "..") or ".." in name:
        return "contains '..'"
    if len(name) >= 2 and name[1] == ":":
        return "looks like a drive path"
    return None


def validate_shape_name(name: object) -> str:
    """``name`` if it is a valid shape name, else BadNameError saying what to change."""
    problem = _name_problem(name)
    if problem is not None:
        raise BadNameError(
            f"shape name {name!r} {problem}; use a plain label of 1-{MAX_NAME_LENGTH} characters "
            "without / \\ .. or control characters (for example 'chair_01')"
        )
    return name  # type: ignore[return-value]


def safe_file_stem(name: str) -> str:
    """A file name stem for ``name`` that stays inside any directory it is joined to.

    Characters that are unsafe on any common file system become ``_``; leading dots (hidden files,
    ``..``) and trailing dots/spaces are stripped; Windows device names get a ``_`` suffix.
    """
    stem = _UNSAFE_FILE_CHARS.sub("_", str(name)).replace("..", "_").lstrip(". ").rstrip(". ")[:MAX_NAME_LENGTH]
    if not stem:
        return "shape"
    return stem + "_" if stem.split(".")[0].upper() in _WINDOWS_RESERVED else stem
