"""The scene's library: where its file is (resolved in Blender) and what its metadata says, read without torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
from bpy.app.translations import pgettext_rpt as rpt_

from .session import UserError
from .shape_list import encode_errors


def library_file(settings: Any, *, must_exist: bool) -> Path:
    """Absolute path of the scene's library, resolved in Blender (``//`` relative to the .blend).

    UserError when unset, when relative to a .blend file that is not saved yet, or when missing
    and required: nothing may reach the worker, whose working directory is the extension folder.
    """
    raw = settings.library_path.strip()
    if not raw:
        raise UserError(rpt_("No library file: use New or Open in the Compact SDF panel first."))
    if raw.startswith("//") and not bpy.data.filepath:
        raise UserError(
            rpt_("The library path {} is relative to the .blend file, which is not saved yet: "
                 "save the .blend file first, or choose an absolute path with New or Open.").format(raw)
        )
    path = Path(bpy.path.abspath(raw)).absolute()
    if must_exist and not path.is_file():
        raise UserError(
            rpt_("Library file not found: {}. Encode some shapes first, or open another library.").format(path)
        )
    return path


def read_meta(path: Path) -> dict[str, Any]:
    """Library metadata without torch; UserError with the reader's message when it fails."""
    from ..backend.errors import LibraryError
    from ..backend.store.library_meta import read_library_meta

    try:
        meta = read_library_meta(str(path))
        for shape in meta["shapes"]:  # the conversions refresh_shapes makes, checked where errors are caught
            int(shape.get("code_size") or 0)
            encode_errors(shape.get("stats") or {})
    except (LibraryError, OSError) as exc:
        raise UserError(rpt_("Cannot read library {}: {}. Open another library, or encode into a new one.").format(
            path.name, exc)) from exc
    except (RecursionError, TypeError, ValueError, OverflowError) as exc:
        raise UserError(rpt_("Cannot read library {}: its metadata is malformed ({}). "
                             "Open another library, or encode the shapes again.").format(path.name, type(exc).__name__)) from exc
    return meta

