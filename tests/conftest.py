"""Shared fixtures: bundled test meshes and one tiny library built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def sphere_mesh():
    from backend.geometry.meshes import load_mesh

    return load_mesh(DATA / "sphere.obj")


@pytest.fixture(scope="session")
def torus_mesh():
    from backend.geometry.meshes import load_mesh

    return load_mesh(DATA / "torus.obj")


@pytest.fixture(scope="session")
def tiny_library(sphere_mesh, torus_mesh, tmp_path_factory):
    """A 'tiny' preset library of a sphere and a torus (a few seconds on a CPU)."""
    from backend.api import encode

    cache = tmp_path_factory.mktemp("sample-cache")
    return encode({"sphere": sphere_mesh, "torus": torus_mesh}, preset="tiny", seed=0, device="cpu", cache_dir=cache)


@pytest.fixture
def saved(tiny_library, tmp_path) -> Path:
    """The tiny library saved to a file of its own."""
    path = tmp_path / "lib.csdf"
    tiny_library.save(path)
    return path


@pytest.fixture(scope="session")
def forge():
    """``forge(saved, path, change_meta=None, change_tensors=None)``: write a copy of the library file
    ``saved`` to ``path`` after the callables change its metadata dict and tensor dict in place."""

    def _forge(saved, path, change_meta=None, change_tensors=None):
        import json

        from safetensors.torch import save_file

        from backend.store.library import Library

        lib = Library.load(saved)
        meta = lib.metadata()
        tensors, _ = lib.tensors()
        if change_meta:
            change_meta(meta)
        if change_tensors:
            change_tensors(tensors)
        save_file({k: v.clone() for k, v in tensors.items()}, path, metadata={"compact_sdf": json.dumps(meta)})
        return path

    return _forge
