"""Compact SDF for Blender: encode meshes into one compact neural SDF library, decode and blend them.

This file only registers and unregisters; see ``operators/`` and ``panels/``. The engine lives in
``backend/`` and runs in a separate worker process (``backend/interfaces/worker.py``), never in Blender's.
"""

import bpy

from . import cli_command, operators, panels, preferences, properties
from .operators import preview, session, setup_backend
from .operators.library import refresh_all_scenes

_CLASSES = [*preferences.CLASSES, *properties.CLASSES, *operators.CLASSES, *panels.CLASSES]
_cli_handle = None


@bpy.app.handlers.persistent
def _on_load_pre(_filepath: str) -> None:
    """A file is about to be loaded (open, revert, new): end the running job, import nothing."""
    session.abandon()


@bpy.app.handlers.persistent
def _on_load_post(_filepath: str) -> None:
    """A file was loaded: drop preview work and re-read each scene's library list."""
    preview.cancel()
    refresh_all_scenes()


def register() -> None:
    global _cli_handle
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    properties.register_pointers()
    bpy.app.handlers.load_pre.append(_on_load_pre)
    bpy.app.handlers.load_post.append(_on_load_post)
    _cli_handle = bpy.utils.register_cli_command("compact_sdf", cli_command.run)


def unregister() -> None:
    global _cli_handle
    bpy.utils.unregister_cli_command(_cli_handle)
    _cli_handle = None
    bpy.app.handlers.load_post.remove(_on_load_post)
    bpy.app.handlers.load_pre.remove(_on_load_pre)
    setup_backend.stop_setup()
    preview.cancel()
    session.shutdown()
    properties.unregister_pointers()
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
