"""One-click backend setup: commands chosen, offline refusal, a real failing run cleaned up."""

from __future__ import annotations

import sys

import bpy
import pytest


@pytest.fixture
def setup(addon):
    return addon.operators.setup_backend


@pytest.fixture
def online():
    system = bpy.context.preferences.system
    before = system.use_online_access
    system.use_online_access = True
    yield
    system.use_online_access = before


def test_torch_comes_from_the_cpu_index_without_nvidia(setup, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# engine\ntorch==2.13.0\nnumpy==1.26.4\n")
    torch, rest = setup.install_commands(tmp_path / "py", requirements, cuda=False, extra_pip_args=[])
    assert torch[-3:] == ["--index-url", setup.TORCH_CPU_INDEX, "torch==2.13.0"]
    assert rest[-2:] == ["-r", str(requirements)] and str(tmp_path / "py") == rest[0]
    torch, _ = setup.install_commands(tmp_path / "py", requirements, cuda=True, extra_pip_args=["-q"])
    assert "--index-url" not in torch and torch[-2:] == ["-q", "torch==2.13.0"]
    monkeypatch.setattr(sys, "platform", "win32")
    torch, _ = setup.install_commands(tmp_path / "py", requirements, cuda=True, extra_pip_args=[])
    assert setup.TORCH_CUDA_INDEX_WINDOWS in torch


def test_failures_are_explained(setup):
    offline = ["Collecting torch", "WARNING: Retrying ... NewConnectionError('...: Failed to establish a new connection')"]
    assert "no connection to the package index" in setup.explain_failure("Installing torch", 1, offline)
    missing = ["ERROR: No matching distribution found for torch==2.13.0"]
    assert "no wheel for this platform" in setup.explain_failure("Installing torch", 1, missing)
    assert "exit code 2" in setup.explain_failure("Creating environment", 2, ["boom"])


def test_refused_when_online_access_is_off(addon, setup):
    bpy.context.preferences.system.use_online_access = False
    with pytest.raises(RuntimeError, match="Online access is disabled"):
        bpy.ops.csdf.setup_backend()
    assert not addon.preferences.user_path(addon.preferences.ENV_FOLDER, create=False).exists()
    assert setup._task is None


def test_failed_install_removes_the_environment(addon, setup, online, tmp_path):
    """A real run: venv creation, then pip with no index at all fails like an offline machine."""
    env_dir = addon.preferences.user_path(addon.preferences.ENV_FOLDER, create=False)
    wheels = tmp_path / "no-wheels"
    wheels.mkdir()
    with pytest.raises(RuntimeError, match="pip found no wheel|no connection"):
        bpy.ops.csdf.setup_backend(extra_pip_args=f"--no-index --find-links {wheels}")
    assert not env_dir.exists(), "the partial environment was removed"
    backend = bpy.context.window_manager.csdf_backend
    assert not backend.setup_busy and "failed" in backend.setup_message
    assert setup._task is None
