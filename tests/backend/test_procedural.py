"""The procedural collection: deterministic, shape i independent of the count, every mesh one closed outward solid."""

import collections

import numpy as np
import pytest
import trimesh

from backend.interfaces.cli import EXIT_ERROR, main
from backend.errors import Cancelled
from backend.geometry.meshes import Mesh, load_mesh, validate_mesh
from backend.names import validate_shape_name
from backend.geometry.procedural import FAMILIES, SHAPE_RADIUS, is_closed_solid, procedural_collection, write_collection


@pytest.fixture(scope="module")
def thirty() -> dict[str, Mesh]:
    return procedural_collection(30, seed=1)


def _hashes(meshes: dict[str, Mesh]) -> dict[str, str]:
    return {name: mesh.content_hash() for name, mesh in meshes.items()}


def test_deterministic_and_prefix_stable():
    five, twelve = _hashes(procedural_collection(5, seed=7)), _hashes(procedural_collection(12, seed=7))
    assert dict(list(twelve.items())[:5]) == five
    assert _hashes(procedural_collection(5, seed=7)) == five
    assert set(_hashes(procedural_collection(5, seed=8)).values()).isdisjoint(five.values())


def test_every_mesh_is_one_closed_outward_solid_inside_the_lattice(thirty):
    for name, mesh in thirty.items():
        tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
        assert tm.is_watertight and tm.is_winding_consistent and tm.volume > 0, name
        assert tm.body_count == 1, name
        assert is_closed_solid(mesh), name
        assert len(validate_mesh(mesh, name).faces) == len(mesh.faces), name
        assert np.linalg.norm(mesh.vertices, axis=1).max() <= SHAPE_RADIUS + 2 / 47, name  # one step at resolution 48


def test_families_and_names(thirty):
    families = collections.Counter(name.rsplit("_", 1)[0] for name in thirty)
    assert set(families) == set(FAMILIES)
    assert all(validate_shape_name(name) == name for name in thirty)
    assert sorted(int(name.rsplit("_", 1)[1]) for name in thirty) == list(range(30))


def test_is_closed_solid_rejects_broken_meshes(thirty):
    mesh = next(iter(thirty.values()))
    V, F = mesh.vertices, mesh.faces
    assert not is_closed_solid(Mesh(V, F[:, ::-1]))  # inside out
    assert not is_closed_solid(Mesh(V, F[1:]))  # a hole
    assert not is_closed_solid(Mesh(np.concatenate([V, V + 3]), np.concatenate([F, F + len(V)])))  # two pieces


def test_two_hundred_shapes():
    meshes = procedural_collection(200, seed=3)
    assert len(meshes) == 200 and all(is_closed_solid(mesh) for mesh in meshes.values())


def test_cli_writes_loadable_files(tmp_path):
    assert main(["-q", "make-collection", "6", "-o", str(tmp_path / "ply"), "--seed", "2", "--resolution", "32",
                 "--format", "ply"]) == 0
    expected = procedural_collection(6, seed=2, resolution=32)
    paths = sorted((tmp_path / "ply").iterdir())
    assert [p.name for p in paths] == sorted(f"{name}.ply" for name in expected)
    for path in paths:
        loaded = load_mesh(path)
        assert is_closed_solid(loaded) and len(loaded.faces) == len(expected[path.stem].faces)
    written = write_collection(dict(list(expected.items())[:2]), tmp_path / "obj")
    assert [p.name for p in written] == [f"{name}.obj" for name in list(expected)[:2]]
    assert all(is_closed_solid(load_mesh(p)) for p in written)


def test_bad_arguments_and_cancel(tmp_path):
    with pytest.raises(ValueError, match="non-negative"):
        procedural_collection(-1)
    with pytest.raises(ValueError, match="resolution"):
        procedural_collection(1, resolution=8)
    with pytest.raises(Cancelled):
        procedural_collection(3, should_stop=lambda: True)
    assert main(["-q", "make-collection", "2", "-o", str(tmp_path), "--resolution", "8"]) == EXIT_ERROR
