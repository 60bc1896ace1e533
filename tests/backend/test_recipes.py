"""Recipes and blend arithmetic (``backend.latent.recipes``), and ``api.explore`` behind the CLI and the worker."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.errors import BadInputError
from backend.latent.recipes import MAX_VARIATIONS, Recipe, normalized_weights, path_weights, variation_count

REPO = Path(__file__).resolve().parents[2]


def test_recipes_module_imports_neither_torch_nor_numpy():
    """Blender imports it directly: no torch, and nothing heavy at import."""
    code = "import sys, backend.latent.recipes; print([m for m in ('torch', 'numpy', 'bpy') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_path_weights():
    names = ["a", "b", "c"]
    assert path_weights(names, 0) == {"a": 1.0, "b": 0.0}
    assert path_weights(names, 0.25) == {"a": 0.75, "b": 0.25}
    assert path_weights(names, 1.5) == {"b": 0.5, "c": 0.5}
    assert path_weights(names, 2) == {"b": 0.0, "c": 1.0}
    assert path_weights(names, 7) == path_weights(names, 2) and path_weights(names, -1) == path_weights(names, 0)
    assert path_weights(["a", "a", "b"], 0.5) == {"a": 1.0}, "a shape that follows itself is whole"
    with pytest.raises(BadInputError):
        path_weights(["a"], 0)


def test_normalized_weights():
    assert normalized_weights({"a": 3.0, "b": 1.0}) == {"a": 0.75, "b": 0.25}
    assert normalized_weights({"a": 2.0, "b": 0.0}) == {"a": 1.0, "b": 0.0}
    for bad in ({}, {"a": 0.0}, {"a": -1.0, "b": 2.0}, {"a": float("nan")}, {"a": float("inf")}, {"a": 1e308, "b": 1e308}):
        with pytest.raises(BadInputError, match="blend weights"):
            normalized_weights(bad)


def test_variation_count():
    assert [variation_count(d) for d in (-1, 0, 2, MAX_VARIATIONS, 40)] == [0, 0, 2, MAX_VARIATIONS, MAX_VARIATIONS]


def test_recipe_round_trips_through_its_stored_form():
    recipe = Recipe("/lib.csdf", ["ball", "brick"], [0.5, 0.5], [1.0, -0.5], random=False, seed=3, spread=0.5,
                    detail=0.25, mode="linear", code=[0.1, 0.2], resolution=64)
    stored = recipe.to_dict()
    assert set(stored) == {"library", "names", "weights", "amounts", "random", "seed", "spread", "detail", "mode",
                           "code", "resolution"}, "the keys old .blend files hold"
    assert Recipe.from_dict(stored) == recipe
    assert recipe.base == {"ball": 0.5, "brick": 0.5} and recipe.moved
    assert not Recipe.of_blend("/lib.csdf", {"ball": 1.0}, 32).moved
    assert Recipe.from_dict({"library": "/lib.csdf"}).base is None, "missing keys take their defaults"
    assert recipe.with_result(code=[1, 2], resolution=128).code == [1.0, 2.0]
    for bad in ({}, {"library": "x", "names": ["a"]}, {"library": "x", "weights": ["w"]},
                {"library": "x", "amounts": [float("nan")]}, {"library": "x", "seed": None}):
        with pytest.raises(ValueError):
            Recipe.from_dict(bad)


def test_api_explore_decodes_an_unmoved_base_exactly(tiny_library):
    from backend import api

    exact = api.decode(tiny_library, "sphere", resolution=32)
    result = api.explore(tiny_library, "sphere", [0.0, 0.0, 0.0], resolution=32)  # zeros past the directions: unused
    assert result.exact and result.directions == 1 and result.nearest[0][0] == "sphere"
    np.testing.assert_array_equal(result.mesh.vertices, exact.vertices)
    np.testing.assert_array_equal(result.code, api.code_of(tiny_library, "sphere"))
    moved = api.explore(tiny_library, "sphere", [1.0], nearest=0, decode_mesh=False)
    assert not moved.exact and moved.mesh is None and moved.nearest == [] and not np.allclose(moved.code, result.code)


def test_cli_explore_of_an_unmoved_base_decodes_the_exact_shape(tiny_library, tmp_path, capsys):
    """Issue 19 item 3: the CLI decodes an unmoved base as ``decode`` does, not its raw code's coarse shape."""
    import trimesh

    from backend import api
    from backend.interfaces.cli import main

    path = tmp_path / "lib.csdf"
    tiny_library.save(path)
    assert main(["-q", "explore", str(path), "--base", "sphere", "-o", str(tmp_path / "out"), "--resolution", "32",
                 "--format", "ply"]) == 0
    assert "variation: nearest shapes sphere (0.000)" in capsys.readouterr().out
    written = trimesh.load(tmp_path / "out" / "variation.ply", process=False)
    exact = api.decode(tiny_library, "sphere", resolution=32)
    np.testing.assert_array_equal(np.asarray(written.faces), exact.faces)
    np.testing.assert_allclose(np.asarray(written.vertices), exact.vertices, atol=1e-6)
    coarse = api.decode(tiny_library, api.code_of(tiny_library, "sphere"), like="sphere", resolution=32)
    assert coarse.vertices.shape != exact.vertices.shape or not np.allclose(coarse.vertices, exact.vertices, atol=1e-4), \
        "the raw code's coarse shape is another mesh, so the check above tells them apart"
