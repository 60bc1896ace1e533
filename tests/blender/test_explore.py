"""Issue 9, items 2 and 3 in Blender: the detail dial, the Explore panel (variations with the live
preview, random variants, nearest shapes, Keep, Re-decode) and ``--command compact_sdf explore``."""

from __future__ import annotations

import time

import bpy
import numpy as np
import pytest

from backend.config import ExploreConfig

RESOLUTION = 40


@pytest.fixture
def lib(tiny_library):
    tiny_library.open()
    bpy.context.scene.csdf.resolution = RESOLUTION
    return tiny_library


def _vertices(addon, obj) -> np.ndarray:
    return addon.mesh_bridge.mesh_to_arrays(obj.data).vertices


def _settle(preview) -> list[int]:
    """Run the preview's timer until it is idle; the preview object's triangle counts on the way."""
    triangles = []
    deadline = time.monotonic() + 120
    while (delay := preview.tick()) is not None:
        obj = bpy.data.objects.get(preview.PREVIEW_NAME)
        if obj is not None and (not triangles or triangles[-1] != len(obj.data.polygons)):
            triangles.append(len(obj.data.polygons))
        assert time.monotonic() < deadline
        time.sleep(delay)
    triangles.append(len(bpy.data.objects[preview.PREVIEW_NAME].data.polygons))
    return triangles


def test_detail_dial_reaches_blends_and_is_recorded(addon, lib):
    from backend.config import DecodeConfig

    settings = bpy.context.scene.csdf
    assert settings.detail == DecodeConfig().detail
    for item in settings.shapes:
        item.use = item.name in ("ball", "brick")
        item.weight = 0.8 if item.name == "ball" else 0.2
    meshes = {}
    for detail in (0.0, 1.0):
        settings.detail = detail
        assert bpy.ops.csdf.interpolate(mode="WEIGHTS") == {"FINISHED"}
        obj = bpy.data.objects["csdf_blend"]
        assert obj["csdf"]["detail"] == detail
        recipe = addon.operators.recipe.read(obj)
        assert recipe.names == ["ball", "brick"] and recipe.weights == pytest.approx([0.8, 0.2])
        assert recipe.detail == detail and recipe.resolution == RESOLUTION
        meshes[detail] = _vertices(addon, obj)
        obj.name = f"blend_{detail}"
    assert meshes[0.0].shape != meshes[1.0].shape or not np.allclose(meshes[0.0], meshes[1.0]), "detail has no effect"
    settings.detail, settings.interp_count = 0.5, 3
    assert bpy.ops.csdf.interpolate(mode="PATH") == {"FINISHED"}
    middle = addon.operators.recipe.read(bpy.data.objects["csdf_interp_01"])
    assert middle.weights == pytest.approx([0.5, 0.5]) and middle.detail == 0.5
    # an evenly paced path stores the weights of where each in-between really sits
    settings.interp_pace = "even"
    assert bpy.ops.csdf.interpolate(mode="PATH") == {"FINISHED"}
    paced = bpy.data.objects["csdf_interp_01.001"]
    position = paced["csdf"]["position"]
    assert addon.operators.recipe.read(paced).weights == pytest.approx([1 - position, position])
    settings.interp_pace = "uniform"


def test_variation_previews_live_then_keep_and_redecode(addon, lib, h):
    """Variation sliders move the active shape along the principal directions (live preview, low-res
    then refined); Keep makes an object with the recipe; Re-decode replaces its mesh at a new resolution."""
    from backend import api
    from backend.store.library import Library

    preview, recipe_module = addon.operators.preview, addon.operators.recipe
    settings = bpy.context.scene.csdf
    settings.active_shape = [item.name for item in settings.shapes].index("ball")
    settings.explore_source = "SHAPE"
    preview.cancel()
    settings.preview_resolution, settings.resolution = 24, RESOLUTION
    settings.variation[0] = 1.5  # the update callback schedules the preview
    assert preview._state.dirty
    triangles = _settle(preview)
    assert len(set(triangles)) >= 2 and triangles[0] < triangles[-1], triangles

    shown = bpy.data.objects[preview.PREVIEW_NAME]
    recipe = recipe_module.read(shown)
    assert recipe.names == ["ball"] and recipe.amounts == [1.5, 0.0] and not recipe.random
    assert recipe.resolution == RESOLUTION and len(recipe.code) == settings.shapes["ball"].code_size
    stored = shown[recipe_module.RECIPE_KEY].to_dict()  # the plain form older .blend files hold
    assert stored == recipe.to_dict() and recipe_module.Recipe.from_dict(stored) == recipe
    state = bpy.context.window_manager.csdf_explore
    assert state.directions == 2 and recipe_module.variation_count(bpy.context) == 2
    assert [item.name for item in state.nearest][:1] and state.nearest[0].distance > 0

    calls = h.draw(addon.panels.main.CSDF_PT_explore.draw, bpy.context)
    assert calls.count(("prop", "variation")) == 2, "Variation 1..N with N = min(4, principal directions)"
    assert ("operator", "csdf.explore_random") in calls and ("operator", "csdf.explore_keep") in calls
    labels = [c[1] for c in calls if c[0] == "label"]
    assert "Nearest Shapes" in labels and state.nearest[0].name in labels

    assert bpy.ops.csdf.explore_keep() == {"FINISHED"}
    kept = bpy.data.objects["csdf_variant"]
    assert kept.data is not shown.data and len(kept.data.polygons) == len(shown.data.polygons)
    assert recipe_module.read(kept) == recipe
    assert np.allclose(np.array(kept.matrix_world), np.array(shown.matrix_world))
    preview.cancel()

    h.select(kept)
    assert ("operator", "csdf.redecode") in h.draw(addon.panels.main.CSDF_PT_explore.draw, bpy.context)
    assert bpy.ops.csdf.redecode(resolution=48) == {"FINISHED"}
    assert bpy.data.objects.get("csdf_variant") is kept and recipe_module.read(kept).resolution == 48
    direct = api.decode(Library.load(lib.path), np.array(recipe.code, dtype=np.float32), like={"ball": 1.0},
                        resolution=48, device="cpu")
    np.testing.assert_allclose(_vertices(addon, kept), direct.vertices, atol=1e-5)


def test_random_variant_is_reproducible_and_lists_its_nearest_shapes(addon, lib):
    recipe_module = addon.operators.recipe
    settings = bpy.context.scene.csdf
    settings.live_preview = False
    settings.explore_seed = 5  # typing a seed switches to its random variant
    assert settings.explore_source == "RANDOM"
    settings.explore_source = "SHAPE"
    assert bpy.ops.csdf.explore_random() == {"FINISHED"}
    assert (settings.explore_source, settings.explore_seed) == ("RANDOM", 5), "first press: the Seed's variant"
    assert bpy.ops.csdf.explore_decode() == {"FINISHED"}
    first = bpy.data.objects["csdf_random_5"]
    assert bpy.ops.csdf.explore_decode(object_name="again") == {"FINISHED"}
    again = bpy.data.objects["again"]
    codes = [recipe_module.read(obj).code for obj in (first, again)]
    assert codes[0] == codes[1] and len(codes[0]) == settings.shapes[0].code_size
    np.testing.assert_array_equal(_vertices(addon, first), _vertices(addon, again))
    assert recipe_module.read(first).random and recipe_module.read(first).seed == 5
    assert "nearest shapes" in bpy.context.window_manager.csdf_job.last_result

    assert bpy.ops.csdf.explore_random() == {"FINISHED"} and settings.explore_seed == 6, "next press: next seed"
    assert bpy.ops.csdf.explore_decode() == {"FINISHED"}
    assert recipe_module.read(bpy.data.objects["csdf_random_6"]).code != codes[0]

    settings.explore_source = "SHAPE"
    settings.active_shape = [item.name for item in settings.shapes].index("brick")
    settings.variation = (0.0,) * 4
    assert bpy.ops.csdf.explore_decode() == {"FINISHED"}
    state = bpy.context.window_manager.csdf_explore
    assert state.nearest[0].name == "brick" and state.nearest[0].distance == pytest.approx(0.0, abs=1e-6)
    assert len(state.nearest) == settings.nearest_count == ExploreConfig().nearest


def test_explore_needs_a_start(addon, lib):
    settings = bpy.context.scene.csdf
    settings.live_preview = False
    for item in settings.shapes:
        item.use = False
    settings.explore_source = "PATH"
    with pytest.raises(RuntimeError, match="Tick at least two shapes"):
        bpy.ops.csdf.explore_decode()
    assert not bpy.ops.csdf.explore_keep.poll(), "nothing to keep without a preview"
    assert not bpy.ops.csdf.redecode.poll(), "no active object with a recipe"


def test_cli_explore_and_interpolate_detail(addon, lib, tmp_path, capsys):
    run = addon.cli_command.run
    recipe_module = addon.operators.recipe
    library = str(lib.path)
    bpy.ops.wm.read_homefile(use_empty=True)
    out = tmp_path / "objs"
    argv = ["explore", "--library", library, "--base", "ball", "--vary", "1", "-0.5", "--resolution", "32",
            "--export-dir", str(out)]
    assert run(argv) == 0, capsys.readouterr()
    assert "nearest shapes" in capsys.readouterr().out
    variant = bpy.data.objects["csdf_variant"]
    recipe = recipe_module.read(variant)
    assert recipe.names == ["ball"] and recipe.amounts == [1.0, -0.5] and recipe.resolution == 32
    assert (out / "csdf_variant.obj").is_file()
    assert bpy.context.scene.csdf.live_preview, "the CLI restores Live Preview"

    bpy.ops.wm.read_homefile(use_empty=True)
    assert run(["explore", "--library", library, "--random", "3", "4", "--resolution", "32"]) == 0
    assert sorted(o.name for o in bpy.data.objects) == ["csdf_random_3", "csdf_random_4"]
    assert recipe_module.read(bpy.data.objects["csdf_random_3"]).seed == 3

    bpy.ops.wm.read_homefile(use_empty=True)
    argv = ["interpolate", "--library", library, "--shapes", "ball", "brick", "--weights", "0.7", "0.3",
            "--detail", "0.25", "--resolution", "32"]
    assert run(argv) == 0
    assert recipe_module.read(bpy.data.objects["csdf_blend"]).detail == 0.25

    assert run(["explore", "--library", library, "--detail", "2"]) == 2
    assert run(["explore", "--library", library, "--vary", "1", "1", "1", "1", "1"]) == 2
    assert run(["explore", "--library", library, "--base", "nope"]) == 2
    assert "not in tiny.csdf: nope" in capsys.readouterr().err
