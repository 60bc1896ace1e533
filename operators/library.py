"""Library file operators: new, open (also by dropping a .csdf on the 3D view), refresh, tick all."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.app.translations import pgettext_rpt as rpt_
from bpy_extras.io_utils import ExportHelper, ImportHelper

from .scene_library import library_file, read_meta
from .shape_list import refresh_shapes
from .session import UserError

LIBRARY_EXT = ".csdf"


def idle(context: bpy.types.Context) -> bool:
    """No job runs (the library must not change under a running job)."""
    return not context.window_manager.csdf_job.busy


def open_library(context: bpy.types.Context, path: Path) -> int:
    """Make ``path`` the scene's library and list its shapes; UserError (nothing changed) if unreadable."""
    meta = read_meta(path)
    settings = context.scene.csdf
    settings.library_path = str(path)
    settings.shapes.clear()
    refresh_shapes(settings, meta)
    settings.encode_mode = "AUTO"
    return len(settings.shapes)


class CSDF_OT_library_new(bpy.types.Operator, ExportHelper):
    bl_idname = "csdf.library_new"
    bl_label = "New Library"
    bl_description = "Choose a file for a new latent library; it is written by the first Encode"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = LIBRARY_EXT
    filter_glob: bpy.props.StringProperty(default=f"*{LIBRARY_EXT}", options={"HIDDEN"})

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return idle(context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.csdf
        path = Path(self.filepath)
        if path.suffix.lower() != LIBRARY_EXT:
            path = path.with_suffix(LIBRARY_EXT)
        settings.library_path = str(path)
        settings.shapes.clear()
        settings.library_error = ""
        if path.exists():
            settings.encode_mode = "NEW"
            self.report(
                {"WARNING"}, rpt_("{} exists: the next Encode replaces it (Encode Into: New Library)").format(path.name)
            )
        else:
            settings.encode_mode = "AUTO"
            self.report({"INFO"}, rpt_("New library {}: select mesh objects and Encode").format(path.name))
        return {"FINISHED"}


class CSDF_OT_library_open(bpy.types.Operator, ImportHelper):
    bl_idname = "csdf.library_open"
    bl_label = "Open Library"
    bl_description = "Open a latent library file (.csdf) and list its shapes"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = LIBRARY_EXT
    filter_glob: bpy.props.StringProperty(default=f"*{LIBRARY_EXT}", options={"HIDDEN"})

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return idle(context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        return _open(self, context, Path(self.filepath))


class CSDF_OT_library_import(bpy.types.Operator):
    bl_idname = "csdf.library_import"
    bl_label = "Open Dropped Library"
    bl_description = "Open a .csdf file dropped on the 3D view as the scene's library"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    filepath: bpy.props.StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE", "HIDDEN"})

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return idle(context)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        return self.execute(context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        return _open(self, context, Path(self.filepath))


def _open(operator: bpy.types.Operator, context: bpy.types.Context, path: Path) -> set[str]:
    try:
        count = open_library(context, path)
    except UserError as exc:
        operator.report({"ERROR"}, str(exc))
        return {"CANCELLED"}
    operator.report({"INFO"}, rpt_("Opened {}: {} shapes").format(path.name, count))
    return {"FINISHED"}


class CSDF_FH_library(bpy.types.FileHandler):
    """Dropping a .csdf file on the 3D view opens it as the library."""

    bl_idname = "CSDF_FH_library"
    bl_label = "Compact SDF Library"
    bl_import_operator = "csdf.library_import"
    bl_file_extensions = LIBRARY_EXT

    @classmethod
    def poll_drop(cls, context: bpy.types.Context) -> bool:
        return context.area is not None and context.area.type == "VIEW_3D"


class CSDF_OT_library_refresh(bpy.types.Operator):
    bl_idname = "csdf.library_refresh"
    bl_label = "Refresh Library"
    bl_description = "Read the library file again and update the shape list"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not context.scene.csdf.library_path.strip():
            cls.poll_message_set("No library: use New or Open first")
            return False
        return idle(context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.csdf
        try:
            path = library_file(settings, must_exist=True)
            refresh_shapes(settings, read_meta(path))
        except UserError as exc:
            settings.library_error = str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, rpt_("{}: {} shapes").format(path.name, len(settings.shapes)))
        return {"FINISHED"}


class CSDF_OT_shapes_use_all(bpy.types.Operator):
    bl_idname = "csdf.shapes_use_all"
    bl_label = "Use All Shapes"
    bl_description = "Tick every shape in the list, or untick all when all are ticked"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return len(context.scene.csdf.shapes) > 0

    def execute(self, context: bpy.types.Context) -> set[str]:
        shapes = context.scene.csdf.shapes
        use = not all(item.use for item in shapes)
        for item in shapes:
            item.use = use
        return {"FINISHED"}


def refresh_all_scenes() -> None:
    """Re-read every scene's library list (after a file load); failures are noted, not raised."""
    for scene in bpy.data.scenes:
        settings = scene.csdf
        if not settings.library_path:
            continue
        try:
            refresh_shapes(settings, read_meta(library_file(settings, must_exist=True)))
        except UserError as exc:
            settings.library_error = str(exc)


CLASSES = [
    CSDF_OT_library_new,
    CSDF_OT_library_open,
    CSDF_OT_library_import,
    CSDF_FH_library,
    CSDF_OT_library_refresh,
    CSDF_OT_shapes_use_all,
]
