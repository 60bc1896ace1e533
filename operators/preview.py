"""Live preview: low-resolution decodes while a slider moves (Blend, Variation, Seed), a refined one at rest.

The sliders' update callbacks call ``schedule``; a ``bpy.app.timers`` tick (``tick``) submits the
scene's current recipe (``recipe.current_recipe``: a shape, blend, mean or random variant, moved
along the principal directions) to the worker's ``explore`` command (latest value wins), polls it
and replaces the preview object's mesh. Once the sliders have rested for ``REFINE_DELAY_S`` the
same recipe is decoded at full resolution. Each result stores its recipe (with the raw code) on
the preview object, and its nearest shapes on ``WindowManager.csdf_explore``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import bpy
from bpy.app.translations import pgettext_rpt as rpt_
from mathutils import Matrix

from .. import mesh_bridge
from ..preferences import get_prefs
from ..worker_client import WorkerClient, WorkerError
from . import recipe as recipes
from . import session
from .results import COLLECTION_NAME, load_result, result_collection
from .redraw import tag_redraw
from .session import UserError

PREVIEW_NAME = "csdf_blend_preview"
REFINE_DELAY_S = 0.4
TICK_S = 0.05


@dataclass
class _Preview:
    dirty: bool = False
    changed_at: float = 0.0
    job_id: str | None = None
    client: WorkerClient | None = None
    folder: Path | None = None
    refined: bool = True
    showing_low_res: bool = False
    recipe: recipes.Recipe | None = None
    resolution: int = 0


_state = _Preview()


def showing() -> bool:
    """True while a preview object exists."""
    obj = bpy.data.objects.get(PREVIEW_NAME)
    return obj is not None and obj.type == "MESH"


def schedule(context: bpy.types.Context) -> None:
    """A slider moved: request a low-resolution preview soon."""
    if not context.scene.csdf.live_preview:
        return
    _state.dirty, _state.changed_at, _state.refined = True, time.monotonic(), False
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=TICK_S)


def cancel() -> None:
    """Forget pending preview work (unregister, file load)."""
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    if _state.folder is not None:
        shutil.rmtree(_state.folder, ignore_errors=True)
    _state.__init__()


def tick() -> float | None:
    """Timer body: returns the delay until the next tick, or None when the preview is up to date."""
    context = bpy.context
    state = context.window_manager.csdf_job
    if _state.job_id is not None:
        if not _collect(context):
            return TICK_S
    if state.busy:
        return 0.25
    if _state.dirty:
        _state.dirty = False
        _submit(context, context.scene.csdf.preview_resolution)
        return TICK_S
    if not _state.refined and time.monotonic() - _state.changed_at >= REFINE_DELAY_S:
        _state.refined = True
        _submit(context, context.scene.csdf.resolution)
        return TICK_S
    return None if _state.refined and _state.job_id is None else TICK_S


def _submit(context: bpy.types.Context, resolution: int) -> None:
    settings = context.scene.csdf
    state = context.window_manager.csdf_job
    try:
        recipe = recipes.current_recipe(context)
        client = session.get_client(context)
    except (UserError, WorkerError) as exc:
        state.message = rpt_("Preview: {}").format(exc)
        _state.refined = True
        return
    _state.folder = session.job_folder()
    request = recipes.explore_args(recipe, str(_state.folder / "preview.npz"), resolution, nearest=settings.nearest_count)
    request.device = get_prefs(context).device
    _state.client, _state.job_id = client, client.submit(request)
    _state.recipe, _state.resolution = recipe, resolution
    _state.showing_low_res = resolution < settings.resolution
    state.preview_busy = True


def _collect(context: bpy.types.Context) -> bool:
    """Apply the in-flight preview's result when it has arrived; True once it is done."""
    assert _state.job_id is not None and _state.client is not None
    state = context.window_manager.csdf_job
    for event in _state.client.poll(_state.job_id):
        if not event.terminal:
            continue
        if event.event == "result":
            item = event.get("data")
            arrays = load_result(item["out"])
            obj = show(context, arrays["vertices"], arrays["faces"])
            if _state.recipe is not None:
                recipes.store(obj, recipes.apply_result(context, _state.recipe, item, _state.resolution))
            state.message = rpt_("Preview: {} triangles").format(item["faces"]) + (
                rpt_(" (refining…)") if _state.showing_low_res else "")
        elif event.event == "error":
            state.message = rpt_("Preview failed: {}").format(event.get("message"))
        shutil.rmtree(_state.folder, ignore_errors=True)
        _state.job_id = _state.folder = _state.client = None
        state.preview_busy = False
        tag_redraw(context)
        return True
    return False


def show(context: bpy.types.Context, vertices, faces) -> bpy.types.Object:
    """Put the geometry into the preview object (created at the 3D cursor on first use)."""
    obj = bpy.data.objects.get(PREVIEW_NAME)
    if obj is None or obj.type != "MESH":
        mesh = mesh_bridge.arrays_to_mesh(PREVIEW_NAME, vertices, faces)
        obj = bpy.data.objects.new(PREVIEW_NAME, mesh)
        obj.matrix_world = Matrix.Translation(context.scene.cursor.location)
        obj["csdf"] = {"preview": True}
    else:
        mesh_bridge.fill_mesh(obj.data, vertices, faces)
    if COLLECTION_NAME not in {c.name for c in obj.users_collection}:
        result_collection(context).objects.link(obj)
    obj.data.update_tag()
    return obj
