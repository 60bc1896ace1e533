"""Sidebar UI: View3D → N panel → "Compact SDF"."""

from __future__ import annotations

from pathlib import Path

import bpy

from ..preferences import draw_backend_status


class CSDF_UL_shapes(bpy.types.UIList):
    """Library shapes: use tick, name, code size, surface error measured at encode time."""

    bl_idname = "CSDF_UL_shapes"

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        row = layout.row(align=True)
        row.prop(item, "use", text="")
        row.label(text=item.name, icon="MESH_DATA")
        sub = row.row()
        sub.alignment = "RIGHT"
        sub.label(text=f"{item.code_size}d")
        sub.label(text=f"±{item.surface_error:.1e}" if item.surface_error >= 0 else "±?")


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
            box.progress(factor=job.progress, text=f"{job.kind}: {job.message}" if job.message else job.kind)
            box.operator("csdf.cancel_job", icon="CANCEL")
        elif job.last_result:
            layout.label(text=job.last_result, icon="INFO")


class CSDF_PT_library(_Panel, bpy.types.Panel):
    bl_idname = "CSDF_PT_library"
    bl_label = "Library"
    bl_parent_id = "CSDF_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.csdf
        row = layout.row(align=True)
        row.label(text=Path(settings.library_path).name or "No library", icon="FILE")
        row.operator("csdf.library_new", text="", icon="FILE_NEW")
        row.operator("csdf.library_open", text="", icon="FILE_FOLDER")
        row.operator("csdf.library_refresh", text="", icon="FILE_REFRESH")
        if settings.library_error:
            layout.label(text=settings.library_error, icon="ERROR")
        row = layout.row()
        row.template_list("CSDF_UL_shapes", "", settings, "shapes", settings, "active_shape", rows=4)
        row.operator("csdf.shapes_use_all", text="", icon="CHECKBOX_HLT")


class CSDF_PT_encode(_Panel, bpy.types.Panel):
    bl_idname = "CSDF_PT_encode"
    bl_label = "Encode"
    bl_parent_id = "CSDF_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        settings = context.scene.csdf
        layout.prop(settings, "encode_mode")
        layout.prop(settings, "preset")
        layout.prop(settings, "steps")
        count = sum(1 for obj in context.selected_objects if obj.type == "MESH")
        layout.operator("csdf.encode_selected", text=f"Encode {count} Selected", icon="EXPORT")


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
        layout.prop(settings, "interp_count")
        layout.operator("csdf.interpolate", text="In-Betweens", icon="MOD_ARRAY").mode = "PATH"
        column = layout.column(align=True)
        for item in used:
            column.prop(item, "weight", text=item.name, slider=True)
        layout.operator("csdf.interpolate", text="Weighted Blend", icon="MOD_MESHDEFORM").mode = "WEIGHTS"
        layout.separator()
        layout.prop(settings, "live_preview")
        row = layout.row()
        row.enabled = len(used) >= 2 and settings.live_preview
        row.prop(settings, "blend", slider=True)
        layout.prop(settings, "preview_resolution")
        if len(used) < 2:
            layout.label(text="Tick two or more shapes in the list", icon="INFO")


CLASSES = [CSDF_UL_shapes, CSDF_PT_main, CSDF_PT_library, CSDF_PT_encode, CSDF_PT_reconstruct, CSDF_PT_interpolate]
