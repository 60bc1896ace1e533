"""Inversion and shape editing on the tiny preset (sphere + torus).

The engine gives every shape its own detail grid: adding, removing, renaming or replacing shapes
must leave every other shape's decode bit-identical.
"""

import numpy as np
import pytest
import torch

from backend.api import decode, encode, invert, remove, rename, replace
from backend.errors import BadInputError, BadMeshError, BadNameError, LibraryError
from backend.store.library import _network_tensors
from backend.geometry.meshes import Mesh, load_mesh
from backend.geometry.metrics import compare_meshes, component_count, is_closed


@pytest.fixture(scope="module")
def spot_mesh(data_dir):
    return load_mesh(data_dir / "spot_low_resolution.obj")


@pytest.fixture(scope="module")
def grown(tiny_library, spot_mesh, tmp_path_factory):
    """``tiny_library`` plus the spot mesh, added (shared weights frozen)."""
    return encode({"spot": spot_mesh}, preset="tiny", library=tiny_library, device="cpu",
                  cache_dir=tmp_path_factory.mktemp("spot-cache"))


@pytest.fixture(scope="module")
def decoded(tiny_library):
    """Vertices and faces of each shape of ``tiny_library`` decoded at 40^3 (the reference for edits)."""
    return {name: decode(tiny_library, name, resolution=40) for name in tiny_library.names}


def _assert_same_decode(library, name, reference):
    mesh = decode(library, name, resolution=40)
    np.testing.assert_array_equal(mesh.vertices, reference.vertices)
    np.testing.assert_array_equal(mesh.faces, reference.faces)


def _assert_same_shape_state(a, name_a, b, name_b):
    """Code, grid nodes and grid features of shape ``name_a`` of ``a`` equal those of ``name_b`` of ``b``."""
    i, j = a.index(name_a), b.index(name_b)
    assert torch.equal(a.codes[i], b.codes[j])
    ga, gb = a.model.detail.grid, b.model.detail.grid
    assert torch.equal(ga.keys[i], gb.keys[j])
    assert torch.equal(ga.shape_features(i), gb.shape_features(j))


# -- adding, removing, renaming, replacing ------------------------------------------------------------------

def test_inversion_recovers_a_training_shape(tiny_library, torus_mesh):
    inverted = invert(tiny_library, torus_mesh, "torus again", device="cpu", seed=3)
    codes = inverted.codes
    fitted, torus, sphere = codes[2], codes[inverted.index("torus")], codes[inverted.index("sphere")]
    assert (fitted - torus).norm() < (fitted - sphere).norm()
    mesh = decode(inverted, "torus again", resolution=64)
    assert compare_meshes(torus_mesh, Mesh(mesh.vertices, mesh.faces), n_samples=20_000).cd_l1 < 0.01
    assert tiny_library.names == ["sphere", "torus"]  # the original object is untouched


def test_adding_leaves_every_old_shape_bit_identical(tiny_library, grown, decoded, sphere_mesh):
    assert grown.names == ["sphere", "torus", "spot"]
    assert grown.history[-1]["kind"] == "add" and grown.history[-1]["shapes"] == ["spot"]
    assert torch.equal(grown.codes[:2], tiny_library.codes)
    old, new = _network_tensors(tiny_library.model), _network_tensors(grown.model)
    assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)  # shared weights frozen
    for name in tiny_library.names:
        _assert_same_shape_state(tiny_library, name, grown, name)
        _assert_same_decode(grown, name, decoded[name])
    assert grown.model.detail.grid.node_count(2) > 0  # the new shape got its own grid
    with pytest.raises(BadMeshError, match="already in the library"):
        encode({"sphere": sphere_mesh}, preset="tiny", library=tiny_library, steps=1)


def test_added_shape_is_one_closed_piece_near_its_source(grown, spot_mesh):
    added = decode(grown, "spot", resolution=64)
    assert component_count(added.faces) == 1 and is_closed(added.faces)
    metrics = compare_meshes(spot_mesh, Mesh(added.vertices, added.faces), n_samples=10_000)
    assert metrics.cd_l1 < 0.08 and metrics.hausdorff < 0.3  # confined to its own stored band


def test_added_unseen_shape_fidelity(grown, spot_mesh):
    """An unseen shape added through the frozen networks is stored exactly (measured 0.001, joint encode 0.0009)."""
    added = decode(grown, "spot", resolution=64)
    assert compare_meshes(spot_mesh, Mesh(added.vertices, added.faces), n_samples=10_000).cd_l1 < 0.003


def test_remove_drops_the_shape_and_leaves_the_others_identical(grown, decoded, tmp_path):
    spot = decode(grown, "spot", resolution=40)
    smaller = remove(grown, ["torus"])
    assert smaller.names == ["sphere", "spot"] and len(smaller.codes) == 2
    assert len(smaller.model.detail.grid.keys) == 2
    grid = smaller.model.detail.grid
    assert grid.features.shape[0] == 1 + grid.node_count(0) + grid.node_count(1)  # the torus's rows are gone
    _assert_same_shape_state(grown, "sphere", smaller, "sphere")
    _assert_same_shape_state(grown, "spot", smaller, "spot")
    _assert_same_decode(smaller, "sphere", decoded["sphere"])
    _assert_same_decode(smaller, "spot", spot)
    assert grown.names == ["sphere", "torus", "spot"]  # the original object is untouched
    assert smaller.history[-1]["kind"] == "remove"
    tensors, _ = smaller.tensors()
    assert sorted(k for k in tensors if k.startswith("shape")) == [f"shape{i}.{k}" for i in (0, 1)
                                                                     for k in ("features", "nodes", "scales", "streams")]
    path = tmp_path / "smaller.csdf"
    smaller.save(path)
    from backend.store.library import Library

    back = Library.load(path)
    _assert_same_decode(back, "spot", spot)
    with pytest.raises(LibraryError, match="no shape named"):
        remove(grown, ["cube"])
    empty = remove(tiny_library_of(grown), ["sphere", "torus"])
    assert empty.names == [] and len(empty.codes) == 0


def tiny_library_of(grown):
    """The first two shapes of ``grown`` (sphere, torus) as their own library."""
    return remove(grown, ["spot"])


def test_rename_keeps_everything_but_the_name(tiny_library, decoded):
    renamed = rename(tiny_library, "torus", "ring")
    assert renamed.names == ["sphere", "ring"] and tiny_library.names == ["sphere", "torus"]
    _assert_same_shape_state(tiny_library, "torus", renamed, "ring")
    _assert_same_decode(renamed, "ring", decoded["torus"])
    assert renamed.shape_info("ring")["source_sha256"] == tiny_library.shape_info("torus")["source_sha256"]
    assert renamed.history[-1]["kind"] == "rename" and renamed.history[-1]["shapes"] == ["torus", "ring"]
    assert rename(tiny_library, "torus", "torus").names == ["sphere", "torus"]
    with pytest.raises(BadInputError, match="already in the library"):
        rename(tiny_library, "torus", "sphere")
    with pytest.raises(BadNameError):
        rename(tiny_library, "torus", "../ring")
    with pytest.raises(LibraryError, match="no shape named"):
        rename(tiny_library, "cube", "box")


def test_replace_keeps_the_name_and_changes_the_source(tiny_library, decoded, spot_mesh, tmp_path):
    replaced = replace(tiny_library, "torus", spot_mesh, device="cpu", cache_dir=tmp_path)
    assert sorted(replaced.names) == ["sphere", "torus"]
    info, before = replaced.shape_info("torus"), tiny_library.shape_info("torus")
    assert info["source_sha256"] == spot_mesh.content_hash() != before["source_sha256"]
    assert info["transform"] != before["transform"]  # the spot's own normalisation
    _assert_same_shape_state(tiny_library, "sphere", replaced, "sphere")
    _assert_same_decode(replaced, "sphere", decoded["sphere"])
    assert [h["kind"] for h in replaced.history[-2:]] == ["remove", "add"]
    with pytest.raises(LibraryError, match="no shape named"):
        replace(tiny_library, "cube", spot_mesh)

