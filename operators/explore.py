"""Explore the library's code space: random variants, keep the live preview, decode a variant,
re-decode an object from its stored recipe (see ``recipe``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
from bpy.app.translations import pgettext_rpt as rpt_
from mathutils import Matrix

from .. import mesh_bridge
from ..backend.config import DecodeConfig, setting
from . import preview
from . import recipe as recipes
from .results import add_result_object, load_result, result_collection, select_only, target_faces
from .shape_list import shape_matrix
from .job_operator import JobOperator
from .session import JobSpec, UserError


def kept_name(recipe: recipes.Recipe) -> str:
    """Object name of a kept or decoded variant: ``csdf_random_<seed>``, else ``csdf_variant``."""
    return "csdf_random_{}".format(recipe.seed) if recipe.random else "csdf_variant"


class CSDF_OT_explore_random(bpy.types.Operator):
    bl_idname = "csdf.explore_random"
    bl_label = "Random Variant"
    bl_description = (
        "Preview a plausible new shape drawn from the library's code distribution: the Seed's variant, "
        "then the next seed on each press (the same seed always gives the same shape)"
    )
    bl_options = {"UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(context.scene.csdf.shapes)

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.csdf
        if settings.explore_source == "RANDOM":
            settings.explore_seed += 1  # the update callbacks schedule the preview
        else:
            settings.explore_source = "RANDOM"
        self.report({"INFO"}, rpt_("Random variant, seed {}").format(settings.explore_seed))
        return {"FINISHED"}


class CSDF_OT_explore_reset(bpy.types.Operator):
    bl_idname = "csdf.explore_reset"
    bl_label = "Reset Variations"
    bl_description = "Set every Variation slider back to 0 (the start shape itself)"
    bl_options = {"UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        context.scene.csdf.variation = (0.0,) * len(context.scene.csdf.variation)
        return {"FINISHED"}


class CSDF_OT_explore_keep(bpy.types.Operator):
    bl_idname = "csdf.explore_keep"
    bl_label = "Keep"
    bl_description = (
        "Turn the live preview into a new object in 'Compact SDF' that stores its recipe "
        "(shapes and weights, variation, seed, detail and the raw code), to re-decode it later at a higher resolution"
    )
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        obj = bpy.data.objects.get(preview.PREVIEW_NAME)
        return obj is not None and obj.type == "MESH" and recipes.RECIPE_KEY in obj

    def execute(self, context: bpy.types.Context) -> set[str]:
        source = bpy.data.objects.get(preview.PREVIEW_NAME)
        try:
            recipe = recipes.read(source)
            if recipe is None or source is None or source.type != "MESH":
                raise UserError(rpt_("No preview to keep: move a Blend, Variation or Seed slider first."))
        except UserError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        name = kept_name(recipe)
        mesh = source.data.copy()
        mesh.name = name
        obj = bpy.data.objects.new(name, mesh)
        obj.matrix_world = source.matrix_world.copy()
        obj["csdf"] = {"library": recipe.library, "kept": True, "resolution": recipe.resolution}
        recipes.store(obj, recipe)
        result_collection(context).objects.link(obj)
        select_only(context, [obj])
        self.report({"INFO"}, rpt_("Kept {} ({}, resolution {}): Re-decode it for more detail").format(
            obj.name, recipes.describe(recipe), recipe.resolution))
        return {"FINISHED"}


class CSDF_OT_explore_decode(JobOperator, bpy.types.Operator):
    bl_idname = "csdf.explore_decode"
    bl_label = "Decode Variant"
    bl_description = (
        "Decode the Explore start (shape, blend, library mean or random variant) moved by the Variation "
        "sliders, at full Resolution, into a new object that stores its recipe"
    )
    # Redo with unchanged settings reuses the decoded mesh (no backend run).
    bl_options = {"REGISTER", "UNDO"}

    object_name: bpy.props.StringProperty(
        name="Object Name", description="Name of the new object (empty: csdf_variant, or csdf_random_<seed>)", default="")

    def prepare(self, context: bpy.types.Context, folder: Path) -> JobSpec:
        settings = context.scene.csdf
        recipe = recipes.current_recipe(context)
        resolution = settings.resolution
        request = recipes.explore_args(recipe, str(folder / "variant.npz"), resolution, nearest=settings.nearest_count,
                                       target_faces=target_faces(settings))
        name = self.object_name or kept_name(recipe)
        basis = shape_matrix(settings, recipe.names[0]).to_3x3() if recipe.names else Matrix.Identity(3)
        matrix = Matrix.Translation(context.scene.cursor.location) @ basis.to_4x4()

        def finish(context: bpy.types.Context, data: dict[str, Any]) -> str:
            arrays = load_result(data["out"])
            if len(arrays["faces"]) == 0:
                raise UserError(rpt_("the variant has no surface at resolution {}").format(resolution))
            kept = recipes.apply_result(context, recipe, data, resolution)
            info = {"library": recipe.library, "resolution": resolution, "mode": recipe.mode}
            obj = add_result_object(context, name, arrays, matrix, info=info)
            recipes.store(obj, kept)
            select_only(context, [obj])
            message = rpt_("{}: {}, {} triangles").format(obj.name, recipes.describe(kept), data["faces"])
            if data.get("nearest"):
                message += "; " + rpt_("nearest shapes {}").format(recipes.format_nearest(data["nearest"]))
            return message

        return JobSpec(request, finish, rpt_("Decode variant"), reusable=True)


_RESOLUTION = setting(DecodeConfig, "resolution")


class CSDF_OT_redecode(JobOperator, bpy.types.Operator):
    bl_idname = "csdf.redecode"
    bl_label = "Re-decode"
    bl_description = (
        "Decode the active object's stored recipe again at this resolution, replacing its mesh "
        "(its transform, modifiers and materials stay)"
    )
    bl_options = {"REGISTER", "UNDO"}

    resolution: bpy.props.IntProperty(
        name="Resolution", description="Decoding grid resolution", default=_RESOLUTION.default,
        min=_RESOLUTION.low, soft_max=512, max=_RESOLUTION.high,
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        obj = context.active_object
        return super().poll(context) and obj is not None and obj.type == "MESH" and recipes.RECIPE_KEY in obj

    def prepare(self, context: bpy.types.Context, folder: Path) -> JobSpec:
        obj = context.active_object
        recipe = recipes.read(obj)
        if recipe is None:
            raise UserError(rpt_("The active object has no Compact SDF recipe: keep a preview or decode a variant first."))
        if not Path(recipe.library).is_file():
            raise UserError(rpt_("The library of {} is missing: {}").format(obj.name, recipe.library))
        resolution = self.resolution
        request = recipes.explore_args(recipe, str(folder / "redecode.npz"), resolution, nearest=0,
                                       target_faces=target_faces(context.scene.csdf), use_code=True)
        name = obj.name

        def finish(context: bpy.types.Context, data: dict[str, Any]) -> str:
            target = bpy.data.objects.get(name)
            if target is None or target.type != "MESH":
                raise UserError(rpt_("the object {} is gone").format(name))
            arrays = load_result(data["out"])
            if len(arrays["faces"]) == 0:
                raise UserError(rpt_("the recipe has no surface at resolution {}").format(resolution))
            replace_mesh(target, arrays)
            recipes.store(target, recipe.with_result(resolution=resolution))
            info = target.get("csdf")
            target["csdf"] = {**(info.to_dict() if hasattr(info, "to_dict") else {}), "resolution": resolution}
            return rpt_("Re-decoded {} at resolution {}: {} triangles").format(name, resolution, data["faces"])

        return JobSpec(request, finish, rpt_("Re-decode {}").format(name), reusable=True)


def replace_mesh(obj: bpy.types.Object, arrays: dict[str, Any]) -> None:
    """Give ``obj`` a new mesh from decoded arrays, keeping its material slots; the old mesh goes if unused."""
    old = obj.data
    mesh = mesh_bridge.arrays_to_mesh(old.name, arrays["vertices"], arrays["faces"])
    for material in old.materials:
        mesh.materials.append(material)
    obj.data = mesh
    if old.users == 0:
        bpy.data.meshes.remove(old)
    mesh.name = obj.name


CLASSES = [CSDF_OT_explore_random, CSDF_OT_explore_reset, CSDF_OT_explore_keep, CSDF_OT_explore_decode, CSDF_OT_redecode]
