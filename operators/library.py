"""Library file operators: new, open, refresh, tick all shapes."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy_extras.io_utils import ExportHelper, ImportHelper

from .common import library_file, read_meta, refresh_shapes
from .jobs import UserError

LIBRARY_EXT = ".csdf"


class CSDF_OT_library_new(bpy.types.Operator, ExportHelper):
    bl_idname = "csdf.library_new"
    bl_label = "New Library"
    bl_description = "Choose a file for a new latent library; it is written by the first Encode"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = LIBRARY_EXT
    filter_glob: bpy.props.StringProperty(default=f"*{LIBRARY_EXT}", options={"HIDDEN"})

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
            self.report({"WARNING"}, f"{path.name} exists: the next Encode replaces it (Encode Into: New Library)")
        else:
            settings.encode_mode = "AUTO"
            self.report({"INFO"}, f"New library {path.name}: select mesh objects and Encode")
        return {"FINISHED"}


class CSDF_OT_library_open(bpy.types.Operator, ImportHelper):
    bl_idname = "csdf.library_open"
    bl_label = "Open Library"
    bl_description = "Open a latent library file (.csdf) and list its shapes"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = LIBRARY_EXT
    filter_glob: bpy.props.StringProperty(default=f"*{LIBRARY_EXT}", options={"HIDDEN"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.csdf
        path = Path(self.filepath)
        try:
            meta = read_meta(path)
        except UserError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        settings.library_path = str(path)
        settings.shapes.clear()
        refresh_shapes(settings, meta)
        settings.encode_mode = "AUTO"
        self.report({"INFO"}, f"Opened {path.name}: {len(settings.shapes)} shapes")
        return {"FINISHED"}


class CSDF_OT_library_refresh(bpy.types.Operator):
    bl_idname = "csdf.library_refresh"
    bl_label = "Refresh Library"
    bl_description = "Read the library file again and update the shape list"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.csdf
        try:
            path = library_file(settings, must_exist=True)
            refresh_shapes(settings, read_meta(path))
        except UserError as exc:
            settings.library_error = str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{path.name}: {len(settings.shapes)} shapes")
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


CLASSES = [CSDF_OT_library_new, CSDF_OT_library_open, CSDF_OT_library_refresh, CSDF_OT_shapes_use_all]
