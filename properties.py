"""Property groups: ``Scene.csdf`` (saved with the file), ``WindowManager.csdf_job`` and
``WindowManager.csdf_backend`` (transient, never saved)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import bpy

from .backend.config import (DEFAULT_FRAME, DEFAULT_PRESET, DEFAULT_SIZE, FRAMES, PACES, PER_SHAPE_FRAME, PRESET_CHOICES,
                             SIZE_CHOICES, DecodeConfig, EncodeConfig, ExploreConfig, TrainConfig, setting)
from .backend.field.blend_modes import BLEND_MODES
from .backend.latent.recipes import MAX_VARIATIONS
from .operators import preview


def enum_items(choices: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """EnumProperty items of a config choice list (or the blend-mode registry): name, label, description."""
    return [(c.name, c.label, c.description) for c in choices.values()]


def from_config(settings: type, name: str, *, unset: int | None = None, **ui: Any) -> dict[str, Any]:
    """``default``, ``min`` and ``max`` of a property from the config setting ``settings.name``,
    plus ``ui`` (soft limits, update callbacks, …). ``unset``: the number the panel shows for the
    setting's None ("not set": the preset's steps, no decimation), which is then also its minimum."""
    s = setting(settings, name)
    limits: dict[str, Any] = {"default": s.default, "min": s.low, "max": s.high}
    if unset is not None:
        limits.update(default=unset, min=unset)
    return {**{k: v for k, v in limits.items() if v is not None}, **ui}


PRESET_ITEMS = enum_items(PRESET_CHOICES)
SIZE_ITEMS = enum_items(SIZE_CHOICES)
BLEND_MODE_ITEMS = enum_items(BLEND_MODES)
PACE_ITEMS = enum_items(PACES)
FRAME_ITEMS = enum_items(FRAMES)

ENCODE_MODE_ITEMS = [
    ("AUTO", "Auto", "Add to the library file if it exists, else create it"),
    ("NEW", "New Library", "Create a new library, replacing the file if it exists"),
    ("ADD", "Add to Library", "Add shapes to the existing library; its shapes keep their codes"),
]


def _preview_update(self: CSDF_PG_scene_settings, context: bpy.types.Context) -> None:
    preview.schedule(context)


def _blend_update(self: CSDF_PG_scene_settings, context: bpy.types.Context) -> None:
    """The Blend slider previews the position along the path (plus any variation)."""
    if self.explore_source != "PATH":
        self.explore_source = "PATH"  # its own update schedules the preview
    else:
        preview.schedule(context)


def _seed_update(self: CSDF_PG_scene_settings, context: bpy.types.Context) -> None:
    """A typed seed shows that random variant."""
    if self.explore_source != "RANDOM":
        self.explore_source = "RANDOM"
    else:
        preview.schedule(context)


def _detail_update(self: CSDF_PG_scene_settings, context: bpy.types.Context) -> None:
    """The detail dial refreshes a preview that is shown; it does not start one."""
    if preview.showing():
        preview.schedule(context)


EXPLORE_SOURCE_ITEMS = [
    ("SHAPE", "Active Shape", "Start from the active shape of the list"),
    ("PATH", "Blend Position", "Start from the position of the Blend slider along the ticked shapes"),
    ("WEIGHTS", "Weighted Blend", "Start from the ticked shapes mixed by their weights"),
    ("MEAN", "Library Mean", "Start from the average code of the library's shapes"),
    ("RANDOM", "Random Variant", "A new code drawn from the library's code distribution with the seed"),
]


class CSDF_PG_shape(bpy.types.PropertyGroup):
    """One shape of the open library (``name`` is the shape's name), as listed in the panel."""

    code_size: bpy.props.IntProperty(name="Code Size", description="Length of the shape's latent code")
    surface_error: bpy.props.FloatProperty(
        name="Surface Error",
        description=(
            "Mean signed-distance error near the surface, measured when the shape was encoded "
            "(units of the shape normalised to size 1.8; lower is better); -1 if unknown"
        ),
        default=-1.0,
    )
    far_error: bpy.props.FloatProperty(
        name="Far-Field Error", description="Mean signed-distance error away from the surface; -1 if unknown", default=-1.0
    )
    use: bpy.props.BoolProperty(
        name="Use", description="Include this shape in Reconstruct, Interpolate and the blend", default=False
    )
    weight: bpy.props.FloatProperty(
        name="Weight", description="Weight of this shape in a weighted blend", default=1.0, min=0.0, soft_max=1.0
    )
    matrix: bpy.props.FloatVectorProperty(
        name="Source Transform",
        description="World matrix of the object the shape was encoded from (reconstructions are placed with it)",
        size=(4, 4),
        subtype="MATRIX",
    )
    has_matrix: bpy.props.BoolProperty(default=False)
    frame: bpy.props.StringProperty(
        name="Frame",
        description="shared: encoded in the library's shared frame (in-betweens stay in place and at scale); "
        "per-shape: in its own bounding box",
        default=PER_SHAPE_FRAME,
    )


class CSDF_PG_scene_settings(bpy.types.PropertyGroup):
    """Persistent settings (saved in the .blend file)."""

    library_path: bpy.props.StringProperty(
        name="Library",
        description="Latent library file (.csdf); a path starting with // is relative to the saved .blend file",
        subtype="FILE_PATH",
        options={"PATH_SUPPORTS_BLEND_RELATIVE"},
        default="",
    )
    shapes: bpy.props.CollectionProperty(type=CSDF_PG_shape)
    active_shape: bpy.props.IntProperty(name="Active Shape", default=0)
    library_error: bpy.props.StringProperty(name="Library Error", description="Why the library could not be read")
    encode_mode: bpy.props.EnumProperty(name="Encode Into", items=ENCODE_MODE_ITEMS, default="AUTO")
    preset: bpy.props.EnumProperty(name="Preset", items=PRESET_ITEMS, default=DEFAULT_PRESET)
    size: bpy.props.EnumProperty(name="Size", items=SIZE_ITEMS, default=DEFAULT_SIZE)
    frame: bpy.props.EnumProperty(
        name="Frame",
        description="How the encoded objects are placed for blending: in one shared frame (poses or variants of one "
        "object, so in-betweens stay in place and at scale), each in its own, or chosen from the meshes (Auto)",
        items=FRAME_ITEMS,
        default=DEFAULT_FRAME,
    )
    steps: bpy.props.IntProperty(
        name="Steps", description="Training steps (0: the preset's default)",
        **from_config(TrainConfig, "steps", unset=0, soft_max=100_000),
    )
    seed: bpy.props.IntProperty(name="Seed", description="Random seed of the encoding", **from_config(EncodeConfig, "seed"))
    checkpoint_minutes: bpy.props.FloatProperty(
        name="Checkpoint Minutes",
        description=(
            "A long encode saves its training state beside the library file this often, so one cut short "
            "(a crash, Blender closed, the backend stopped) can be resumed from the Encode panel (0: never)"
        ),
        **from_config(EncodeConfig, "checkpoint_minutes", soft_max=60.0, precision=1),
    )
    resolution: bpy.props.IntProperty(
        name="Resolution",
        description="Decoding grid resolution: higher keeps thinner parts and finer detail, and is slower",
        **from_config(DecodeConfig, "interactive_resolution", soft_max=512),
    )
    target_faces: bpy.props.IntProperty(
        name="Target Faces",
        description=(
            "Decimate every result to about this many triangles after marching cubes "
            "(0: keep them all; a resolution of 128 gives tens of thousands)"
        ),
        **from_config(DecodeConfig, "target_faces", unset=0, soft_max=200_000),
    )
    replace_results: bpy.props.BoolProperty(
        name="Replace Previous",
        description=(
            "Put new results into the previous result of the same name (<shape>_csdf, csdf_blend, …), "
            "keeping its object, transform and modifiers, instead of adding a .001 copy"
        ),
        default=False,
    )
    blend_mode: bpy.props.EnumProperty(name="Blend", items=BLEND_MODE_ITEMS, default=DecodeConfig().mode)
    interp_count: bpy.props.IntProperty(
        name="Count", description="Number of shapes along the path, endpoints included",
        **from_config(DecodeConfig, "count", soft_max=64),
    )
    interp_pace: bpy.props.EnumProperty(name="Pace", items=PACE_ITEMS, default=DecodeConfig().pace)
    interp_shape_keys: bpy.props.BoolProperty(
        name="As Shape Keys",
        description=(
            "Morph the active object (the first ticked shape's own mesh) along the path instead of decoding new "
            "meshes: one shape key per in-between, played by the object's Blend property; its vertex count, UVs, "
            "materials and modifiers stay"
        ),
        default=False,
    )
    morph_note: bpy.props.StringProperty(
        name="Morph Note", description="Why the last morph fell back to a Spherical blend (empty: it morphed)")
    heatmap: bpy.props.BoolProperty(
        name="Fidelity Heatmap",
        description=(
            "Colour reconstructions by their distance to the source object of the same name "
            "(colour attribute 'csdf_fidelity', shown in Solid view and by the 'Compact SDF Fidelity' material)"
        ),
        default=False,
    )
    heatmap_range: bpy.props.FloatProperty(
        name="Heatmap Range",
        description="Distance shown as full red, as a fraction of the source's bounding-box diagonal",
        default=0.01,
        min=1e-5,
        soft_max=0.1,
        precision=4,
    )
    blend: bpy.props.FloatProperty(
        name="Blend",
        description="Position along the path through the shapes in use (0 = first, 1 = last)",
        default=0.0,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
        update=_blend_update,
    )
    detail: bpy.props.FloatProperty(
        name="Detail",
        description=(
            "Detail dial of blends and in-betweens: 0 decodes the coarse shape only, 1 adds each shape's "
            "full detail near its own code (a single shape at 1 decodes exactly)"
        ),
        **from_config(DecodeConfig, "detail", subtype="FACTOR", update=_detail_update),
    )
    explore_source: bpy.props.EnumProperty(
        name="Start From", items=EXPLORE_SOURCE_ITEMS, default="SHAPE", update=_preview_update,
        description="The code the variations move: a shape, a blend, the library mean or a random variant",
    )
    variation: bpy.props.FloatVectorProperty(
        name="Variation",
        description=(
            "Move along the library's principal directions of shape variation, in standard deviations "
            "of its codes (Variation 1 varies most)"
        ),
        size=MAX_VARIATIONS,
        **from_config(ExploreConfig, "amount", default=(ExploreConfig().amount,) * MAX_VARIATIONS, soft_min=-3.0,
                      soft_max=3.0, update=_preview_update),
    )
    explore_seed: bpy.props.IntProperty(
        name="Seed", description="Seed of the random variant: the same seed gives the same shape",
        **from_config(ExploreConfig, "seed", update=_seed_update),
    )
    explore_spread: bpy.props.FloatProperty(
        name="Spread",
        description="How far a random variant moves from its blend of library shapes, in standard deviations of the codes",
        **from_config(ExploreConfig, "spread", soft_max=3.0, update=_preview_update),
    )
    nearest_count: bpy.props.IntProperty(
        name="Nearest Shapes", description="How many library shapes closest to the current code to list",
        **from_config(ExploreConfig, "nearest"),
    )
    redecode_resolution: bpy.props.IntProperty(
        name="Resolution", description="Grid resolution of Re-decode (higher keeps finer detail and is slower)",
        **from_config(DecodeConfig, "resolution", soft_max=512),
    )
    live_preview: bpy.props.BoolProperty(
        name="Live Preview",
        description=(
            "Decode a low-resolution preview while the Blend, Variation or Seed sliders move, refined when they rest"
        ),
        default=True,
    )
    preview_resolution: bpy.props.IntProperty(
        name="Preview Resolution", description="Grid resolution while dragging", **from_config(DecodeConfig, "preview_resolution")
    )


class CSDF_PG_job_state(bpy.types.PropertyGroup):
    """The running job (transient)."""

    busy: bpy.props.BoolProperty(default=False)
    kind: bpy.props.StringProperty()
    stage: bpy.props.StringProperty()
    message: bpy.props.StringProperty()
    progress: bpy.props.FloatProperty(min=0.0, max=1.0, subtype="FACTOR")
    loss: bpy.props.FloatProperty(default=-1.0)
    eta_s: bpy.props.FloatProperty(default=-1.0)
    cancelling: bpy.props.BoolProperty(default=False)
    last_result: bpy.props.StringProperty(description="How the last job ended")
    last_failed: bpy.props.BoolProperty(description="The last job ended with an error")
    preview_busy: bpy.props.BoolProperty(default=False)


class CSDF_PG_backend_state(bpy.types.PropertyGroup):
    """What the last backend check found, and the one-click setup's progress (transient)."""

    state: bpy.props.EnumProperty(
        items=[
            ("UNKNOWN", "Unknown", "Not checked yet"),
            ("READY", "Ready", "The backend runs"),
            ("MISSING", "Missing", "The backend Python lacks torch or another dependency"),
            ("ERROR", "Error", "The backend failed to start"),
        ],
        default="UNKNOWN",
    )
    summary: bpy.props.StringProperty()
    setup_busy: bpy.props.BoolProperty(default=False)
    setup_progress: bpy.props.FloatProperty(min=0.0, max=1.0, subtype="FACTOR")
    setup_message: bpy.props.StringProperty()


class CSDF_PG_nearest(bpy.types.PropertyGroup):
    """A library shape near the previewed code (``name``) and its distance in code space."""

    distance: bpy.props.FloatProperty(name="Distance", description="Distance between the codes")


class CSDF_PG_explore_state(bpy.types.PropertyGroup):
    """What the last preview found about the code space (transient)."""

    library: bpy.props.StringProperty(description="Library the numbers below belong to")
    directions: bpy.props.IntProperty(default=-1, description="Principal directions of its codes; -1 if unknown")
    nearest: bpy.props.CollectionProperty(type=CSDF_PG_nearest)


CLASSES = [
    CSDF_PG_shape, CSDF_PG_scene_settings, CSDF_PG_job_state, CSDF_PG_backend_state, CSDF_PG_nearest,
    CSDF_PG_explore_state,
]

POINTERS = [
    (bpy.types.Scene, "csdf", CSDF_PG_scene_settings),
    (bpy.types.WindowManager, "csdf_job", CSDF_PG_job_state),
    (bpy.types.WindowManager, "csdf_backend", CSDF_PG_backend_state),
    (bpy.types.WindowManager, "csdf_explore", CSDF_PG_explore_state),
]


def register_pointers() -> None:
    for owner, attr, group in POINTERS:
        setattr(owner, attr, bpy.props.PointerProperty(type=group))


def unregister_pointers() -> None:
    for owner, attr, _group in reversed(POINTERS):
        delattr(owner, attr)
