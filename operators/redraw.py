"""Redraw the parts of the UI that show Compact SDF state (sidebar, status bar, preferences)."""

from __future__ import annotations

import bpy

_AREAS = {"VIEW_3D", "STATUSBAR", "PREFERENCES"}


def tag_redraw(context: bpy.types.Context) -> None:
    """Tag every window's 3D views, status bar and preferences for a redraw."""
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in _AREAS:
                area.tag_redraw()
