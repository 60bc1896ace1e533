"""Add-on preferences: backend interpreter and device, backend check and one-click setup."""

from __future__ import annotations

import sys
from pathlib import Path

import bpy
from bpy.app.translations import pgettext_iface as iface_

from .backend.config import DEFAULT_DEVICE, DEVICES

ADDON_ID = __package__

#: Folder (inside the extension's user directory) of the environment "Set up backend" creates.
ENV_FOLDER = "backend-env"

DEVICE_ITEMS = [(d.name, d.label, d.description) for d in DEVICES.values()]


def get_prefs(context: bpy.types.Context | None = None) -> CSDF_AddonPreferences:
    """This extension's preferences."""
    context = context or bpy.context
    return context.preferences.addons[ADDON_ID].preferences


def user_path(*parts: str, create: bool = True) -> Path:
    """A folder in the extension's user directory (kept across updates, never the extension folder)."""
    return Path(bpy.utils.extension_path_user(ADDON_ID, path=str(Path(*parts)) if parts else "", create=create))


def managed_python() -> Path:
    """Interpreter of the environment created by "Set up backend" (may not exist yet)."""
    env = user_path(ENV_FOLDER, create=False)
    return env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def backend_python(context: bpy.types.Context | None = None) -> str:
    """Interpreter for the worker: the preference, else the managed environment, else Blender's own."""
    chosen = bpy.path.abspath(get_prefs(context).python_path).strip()
    if chosen:
        return chosen
    managed = managed_python()
    return str(managed) if managed.is_file() else sys.executable


class CSDF_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    python_path: bpy.props.StringProperty(
        name="Backend Python",
        description=(
            "Python interpreter of an environment that has torch, used to run the backend worker. "
            "Empty: the environment made by Set up Backend, else Blender's own Python"
        ),
        subtype="FILE_PATH",
        default="",
    )
    device: bpy.props.EnumProperty(
        name="Device", description="Where the backend computes", items=DEVICE_ITEMS, default=DEFAULT_DEVICE
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "python_path")
        layout.prop(self, "device")
        draw_backend_status(layout, context, show_setup=True)


def draw_backend_status(layout: bpy.types.UILayout, context: bpy.types.Context, *, show_setup: bool) -> None:
    """Backend readiness box: last check result, Check/Set up buttons, setup progress."""
    backend = context.window_manager.csdf_backend
    box = layout.box()
    header = box.row()
    icon = {"READY": "CHECKMARK", "MISSING": "ERROR", "ERROR": "ERROR"}.get(backend.state, "QUESTION")
    state = backend.bl_rna.properties["state"].enum_items[backend.state].name
    header.label(text=iface_("Backend: {}").format(iface_(state)), icon=icon, translate=False)
    header.label(text=iface_("Python: {}").format(backend_python(context)), translate=False)
    column = box.column(align=True)
    for line in backend.summary.splitlines():
        column.label(text=line, translate=False)
    if backend.state in {"MISSING", "ERROR"}:
        column.label(
            text=iface_("Fix: Set up Backend, or set Backend Python to an environment with torch."), icon="INFO"
        )
    row = box.row(align=True)
    row.operator("csdf.check_backend", icon="FILE_REFRESH")
    if show_setup:
        row.operator("csdf.setup_backend", icon="IMPORT")
    row.operator("csdf.open_log", icon="TEXT")
    if backend.setup_busy:
        box.progress(factor=backend.setup_progress, text=backend.setup_message or iface_("Setting up…"), translate=False)
        box.operator("csdf.cancel_setup", icon="CANCEL")
    elif backend.setup_message:
        box.label(text=backend.setup_message, translate=False)


CLASSES = [CSDF_AddonPreferences]
