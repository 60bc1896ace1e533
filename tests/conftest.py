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
