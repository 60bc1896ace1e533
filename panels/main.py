"""Sidebar UI: View3D → N panel → "Compact SDF"."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.app.translations import pgettext_iface as iface_

from ..backend.config import SHARED_FRAME
from ..operators import encode, preview, recipe
from ..operators.shape_keys import BLEND_PROPERTY, morph_keys, wants_shape_keys
from ..preferences import draw_backend_status


class CSDF_UL_shapes(bpy.types.UIList):
    """Library shapes: use tick, name, code size, surface error measured at encode time, a globe on
    the shapes of the library's shared frame, and a magnifier on the shapes nearest to the
    previewed code (Explore)."""

    bl_idname = "CSDF_UL_shapes"

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        row = layout.row(align=True)
        row.prop(item, "use", text="")
        row.label(text=item.name, icon="MESH_DATA", translate=False)
        sub = row.row()
        sub.alignment = "RIGHT"
        sub.label(text=iface_("{:d}d", "code size").format(item.code_size), translate=False)
        sub.label(text="±{:.1e}".format(item.surface_error) if item.surface_error >= 0 else "±?", translate=False)
        if item.frame == SHARED_FRAME:  # in the library's shared frame: its in-betweens stay in place and at scale
            sub.label(text="", icon="ORIENTATION_GLOBAL")
        explore = context.window_manager.csdf_explore
        if explore.library == data.library_path and item.name in explore.nearest:  # Explore's nearest shapes
            sub.label(text="", icon="VIEWZOOM")


class _Panel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Compact SDF"


class CSDF_PT_main(_Panel, bpy.types.Panel):
    bl_idname = "CSDF_PT_main"
    bl_label = "Compact SDF"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        job = context.window_manager.csdf_job
        backend = context.window_manager.csdf_backend
        if backend.state != "READY":
            draw_backend_status(layout, context, show_setup=True)
        if job.busy:
            box = layout.box()
            text = iface_("{}: {}").format(job.kind, job.message) if job.message else job.kind
            box.progress(factor=job.progress, text=text, translate=False)
            box.operator("csdf.cancel_job", icon="CANCEL")
        elif job.last_result:
            row = layout.row()
            row.label(text=job.last_result, icon="ERROR" if job.last_failed else "INFO", translate=False)
            if job.last_failed:
                row.operator("csdf.open_log", text="", icon="TEXT")


class CSDF_PT_library(_Panel, bpy.types.Panel):
    bl_idname = "CSDF_PT_library"
    bl_label = "Library"
    bl_parent_id = "CSDF_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.csdf
        row = layout.row(align=True)
        name = Path(settings.library_path).name
        row.label(text=name or iface_("No library: New or Open one"), icon="FILE", translate=False)
        row.operator("csdf.library_new", text="", icon="FILE_NEW")
        row.operator("csdf.library_open", text="", icon="FILE_FOLDER")
        row.operator("csdf.library_refresh", text="", icon="FILE_REFRESH")
        if settings.library_error:
            box = layout.box()
            box.label(text=settings.library_error, icon="ERROR", translate=False)
            fix = box.row(align=True)
            fix.operator("csdf.library_open", text=iface_("Open Another"), icon="FILE_FOLDER")
            fix.operator("csdf.library_new", text=iface_("New Library"), icon="FILE_NEW")
        row = layout.row()
        row.template_list("CSDF_UL_shapes", "", settings, "shapes", settings, "active_shape", rows=4)
        column = row.column(align=True)
        column.operator("csdf.shapes_use_all", text="", icon="CHECKBOX_HLT")
        column.separator()
        column.operator("csdf.shape_replace", text="", icon="FILE_REFRESH")
        column.operator("csdf.shape_rename", text="", icon="GREASEPENCIL")
        column.operator("csdf.shape_remove", text="", icon="REMOVE")


class CSDF_PT_encode(_Panel, bpy.types.Panel):
    bl_idname = "CSDF_PT_encode"
    bl_label = "Encode"
    bl_parent_id = "CSDF_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        settings = context.scene.csdf
        interrupted = None if context.window_manager.csdf_job.busy else encode.interrupted_encode(settings)
        if interrupted is not None:  # a crash, a restart or a stopped backend cut an encode short
            box = layout.box()
            title, detail = encode.describe_interrupted(interrupted)
            box.label(text=title, icon="RECOVER_LAST", translate=False)
            box.label(text=detail, translate=False)
            row = box.row(align=True)
            row.operator("csdf.encode_resume", icon="PLAY")
            row.operator("csdf.encode_discard", icon="TRASH")
        layout.prop(settings, "encode_mode")
        layout.prop(settings, "preset")
        layout.prop(settings, "size")
        layout.prop(settings, "frame")
        layout.prop(settings, "steps")
        layout.prop(settings, "checkpoint_minutes")
        count = sum(1 for obj in context.selected_objects if obj.type == "MESH")
        text = iface_("Encode {:d} Selected").format(count) if count else iface_("Select Mesh Objects to Encode")
        layout.operator("csdf.encode_selected", text=text, icon="EXPORT")


class CSDF_PT_reconstruct(_Panel, bpy.types.Panel):
    bl_idname = "CSDF_PT_reconstruct"
    bl_label = "Reconstruct"
    bl_parent_id = "CSDF_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        settings = context.scene.csdf
        layout.prop(settings, "resolution")
        row = layout.row(heading="Heatmap")
        row.prop(settings, "heatmap", text="")
        sub = row.row()
        sub.active = settings.heatmap
        sub.prop(settings, "heatmap_range", text="Range")
        layout.prop(settings, "target_faces")
        layout.prop(settings, "replace_results")
        layout.operator("csdf.reconstruct", icon="IMPORT")


class CSDF_PT_interpolate(_Panel, bpy.types.Panel):
    bl_idname = "CSDF_PT_interpolate"
    bl_label = "Interpolate"
    bl_parent_id = "CSDF_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        settings = context.scene.csdf
        used = [item for item in settings.shapes if item.use]
        layout.prop(settings, "blend_mode")
        layout.prop(settings, "detail", slider=True)
        layout.prop(settings, "interp_count")
        layout.prop(settings, "interp_pace")
        row = layout.row()
        row.enabled = settings.blend_mode == "morph"
        row.prop(settings, "interp_shape_keys")
        if wants_shape_keys(settings):
            layout.operator("csdf.interpolate", text="Morph Active Object", icon="SHAPEKEY_DATA").mode = "PATH"
        else:
            layout.operator("csdf.interpolate", text="In-Betweens", icon="MOD_ARRAY").mode = "PATH"
        obj = context.active_object
        if obj is not None and obj.type == "MESH" and morph_keys(obj):
            layout.prop(obj, f'["{BLEND_PROPERTY}"]', text=iface_("Blend {}").format(obj.name), slider=True,
                        translate=False)
        if settings.morph_note:
            box = layout.box()
            box.label(text=iface_("Blended as Spherical, not morphed:"), icon="INFO")
            box.label(text=settings.morph_note, translate=False)
        column = layout.column(align=True)
        for item in used:
            column.prop(item, "weight", text=item.name, slider=True, translate=False)
        layout.operator("csdf.interpolate", text="Weighted Blend", icon="MOD_MESHDEFORM").mode = "WEIGHTS"
        layout.separator()
        layout.prop(settings, "live_preview")
        row = layout.row()
        row.enabled = len(used) >= 2 and settings.live_preview
        row.prop(settings, "blend", slider=True)
        layout.prop(settings, "preview_resolution")
        if len(used) < 2:
            layout.label(text=iface_("Tick two or more shapes in the list"), icon="INFO")


class CSDF_PT_explore(_Panel, bpy.types.Panel):
    bl_idname = "CSDF_PT_explore"
    bl_label = "Explore"
    bl_parent_id = "CSDF_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        settings = context.scene.csdf
        layout.prop(settings, "explore_source")
        row = layout.row(align=True)
        row.prop(settings, "explore_seed")
        row.operator("csdf.explore_random", text=iface_("Random Variant"), icon="MOD_NOISE")
        if settings.explore_source == "RANDOM":
            layout.prop(settings, "explore_spread")
        count = recipe.variation_count(context)
        column = layout.column(align=True)
        column.active = settings.live_preview
        for index in range(count):
            column.prop(settings, "variation", index=index, text=iface_("Variation {:d}").format(index + 1),
                        slider=True, translate=False)
        if count:
            layout.operator("csdf.explore_reset", icon="LOOP_BACK")
        elif settings.shapes:
            layout.label(text=iface_("Variations need two or more shapes in the library"), icon="INFO")
        layout.prop(settings, "detail", slider=True)
        if not settings.live_preview:
            layout.label(text=iface_("Live Preview is off (Interpolate panel)"), icon="INFO")

        state = context.window_manager.csdf_explore
        if state.nearest and state.library == settings.library_path:
            box = layout.box()
            box.label(text=iface_("Nearest Shapes"), icon="VIEWZOOM")
            for item in state.nearest:
                line = box.row()
                line.label(text=item.name, icon="MESH_DATA", translate=False)
                line.label(text="{:.3f}".format(item.distance), translate=False)
        layout.prop(settings, "nearest_count")

        row = layout.row(align=True)
        keep = row.row(align=True)
        keep.enabled = preview.showing()
        keep.operator("csdf.explore_keep", icon="DUPLICATE")
        row.operator("csdf.explore_decode", icon="IMPORT")

        obj = context.active_object
        if obj is not None and recipe.RECIPE_KEY in obj:
            box = layout.box()
            box.label(text=iface_("Recipe of {}").format(obj.name), icon="OBJECT_DATA", translate=False)
            row = box.row(align=True)
            row.prop(settings, "redecode_resolution")
            row.operator("csdf.redecode", icon="FILE_REFRESH").resolution = settings.redecode_resolution


CLASSES = [
    CSDF_UL_shapes, CSDF_PT_main, CSDF_PT_library, CSDF_PT_encode, CSDF_PT_reconstruct, CSDF_PT_interpolate,
    CSDF_PT_explore,
]
