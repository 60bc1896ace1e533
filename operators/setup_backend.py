"""One-click backend setup: a separate virtual environment in the extension's user directory.

Blender's own Python and the extension folder are never touched. The environment is created
with Blender's Python (``venv``), then pip installs the pinned requirements, with torch from the
CPU wheel index unless an NVIDIA GPU is present. The work runs in a background thread (UI) or
inline (background mode); the thread only fills a queue, Blender's main thread reads it.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from ..preferences import ENV_FOLDER, managed_python, user_path
from .redraw import tag_redraw

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: CUDA wheels for Windows (PyPI's Windows torch is CPU-only); Linux PyPI torch already has CUDA.
TORCH_CUDA_INDEX_WINDOWS = "https://download.pytorch.org/whl/cu128"
_OFFLINE = re.compile(
    r"(NewConnectionError|Temporary failure in name resolution|Failed to establish a new connection|"
    r"Network is unreachable|ConnectTimeout|ReadTimeout|ProxyError)",
    re.IGNORECASE,
)
_NO_WHEEL = re.compile(r"(No matching distribution found for .*|Could not find a version that satisfies .*)")


def has_nvidia_gpu() -> bool:
    """An NVIDIA driver is installed (``nvidia-smi`` on PATH)."""
    return shutil.which("nvidia-smi") is not None


def install_commands(python: Path, requirements: Path, *, cuda: bool, extra_pip_args: list[str]) -> list[list[str]]:
    """pip commands run by the setup, in order (torch first: by far the largest download)."""
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off", *extra_pip_args]
    torch_line = next(line.strip() for line in requirements.read_text().splitlines() if line.startswith("torch"))
    if sys.platform == "darwin" or (cuda and sys.platform.startswith("linux")):
        torch_index = []
    elif cuda and sys.platform == "win32":
        torch_index = ["--index-url", TORCH_CUDA_INDEX_WINDOWS]
    else:
        torch_index = ["--index-url", TORCH_CPU_INDEX]
    return [pip + torch_index + [torch_line], pip + ["-r", str(requirements)]]


def explain_failure(title: str, code: int, output: list[str]) -> str:
    """A user message for a failed setup step, from the tail of its output."""
    text = "\n".join(output[-60:])
    if _OFFLINE.search(text):
        return (
            "Could not download packages: no connection to the package index (offline, proxy or firewall). "
            "Connect and retry, or set Backend Python to an existing environment with torch."
        )
    if match := _NO_WHEEL.search(text):
        return f"{title} failed: pip found no wheel for this platform and Python ({match.group(1).strip()})."
    return f"{title} failed (exit code {code}): {output[-1] if output else 'no output'}"


@dataclass
class SetupTask:
    """A running setup: ``messages`` receives (fraction, text) and finally (1.0, None) plus ``error``."""

    env_dir: Path
    python: Path
    messages: queue.Queue[tuple[float, str | None]] = field(default_factory=queue.Queue)
    error: str = ""
    cancelled: threading.Event = field(default_factory=threading.Event)
    process: subprocess.Popen[str] | None = None

    def run(self, extra_pip_args: list[str]) -> None:
        """Create the environment and install into it; sets ``error`` on failure."""
        steps: list[tuple[str, list[str]]] = [
            ("Creating environment", [sys.executable, "-m", "venv", "--clear", str(self.env_dir)]),
        ]
        for index, command in enumerate(
            install_commands(self.python, REQUIREMENTS, cuda=has_nvidia_gpu(), extra_pip_args=extra_pip_args)
        ):
            steps.append(("Installing torch (large download)" if index == 0 else "Installing other packages", command))
        tail: list[str] = []
        try:
            for number, (title, command) in enumerate(steps):
                fraction = number / len(steps)
                self.messages.put((fraction, title))

                def on_line(line: str, title: str = title, fraction: float = fraction) -> None:
                    tail.append(line)
                    self.messages.put((fraction, f"{title}: {line[:80]}"))

                code = self._run(command, on_line)
                if self.cancelled.is_set():
                    self.error = "Setup cancelled; the partial environment was removed."
                    break
                if code != 0:
                    self.error = explain_failure(title, code, tail)
                    break
        finally:
            if self.error:
                shutil.rmtree(self.env_dir, ignore_errors=True)
            self.messages.put((1.0, None))

    def _run(self, command: list[str], on_line: Callable[[str], None]) -> int:
        env = {**os.environ, "PIP_NO_INPUT": "1", "PYTHONNOUSERSITE": "1"}
        env.pop("PYTHONPATH", None)
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip():
                on_line(line.strip())
            if self.cancelled.is_set():
                self.process.terminate()
        return self.process.wait()


_task: SetupTask | None = None


def _drain(context: bpy.types.Context) -> bool:
    """Move the task's messages to ``csdf_backend``; True once it has finished."""
    backend = context.window_manager.csdf_backend
    assert _task is not None
    done = False
    while True:
        try:
            fraction, text = _task.messages.get_nowait()
        except queue.Empty:
            break
        backend.setup_progress = fraction
        if text is None:
            done = True
        else:
            backend.setup_message = text
    return done


def _finish(context: bpy.types.Context) -> tuple[str, str]:
    global _task
    assert _task is not None
    task, _task = _task, None
    backend = context.window_manager.csdf_backend
    backend.setup_busy = False
    if task.error:
        backend.setup_message = task.error
        return "ERROR", task.error
    backend.setup_message = f"Backend environment ready: {task.env_dir}"
    backend.state, backend.summary = "UNKNOWN", "Set up finished; press Check Backend."
    return "INFO", backend.setup_message


class CSDF_OT_setup_backend(bpy.types.Operator):
    bl_idname = "csdf.setup_backend"
    bl_label = "Set Up Backend"
    bl_description = (
        "Create a separate Python environment in the extension's user folder and install torch and the "
        "other backend packages into it (needs internet; several GB with CUDA)"
    )

    extra_pip_args: bpy.props.StringProperty(
        name="Extra pip Arguments", description="Added to every pip command (e.g. a local --find-links)", default=""
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _task is None and not context.window_manager.csdf_job.busy

    def execute(self, context: bpy.types.Context) -> set[str]:
        global _task
        if not bpy.app.online_access:
            self.report(
                {"ERROR"},
                "Online access is disabled (Preferences → System → Network). Allow it to download the backend, "
                "or set Backend Python to an environment that has torch.",
            )
            return {"CANCELLED"}
        _task = SetupTask(user_path(ENV_FOLDER, create=False), managed_python())
        backend = context.window_manager.csdf_backend
        backend.setup_busy, backend.setup_progress, backend.setup_message = True, 0.0, "Starting…"
        extra = self.extra_pip_args.split()
        if bpy.app.background:
            _task.run(extra)
            _drain(context)
            level, message = _finish(context)
            self.report({level}, message)
            return {"FINISHED"} if level == "INFO" else {"CANCELLED"}
        threading.Thread(target=_task.run, args=(extra,), name="csdf-setup", daemon=True).start()
        bpy.app.timers.register(_poll_setup, first_interval=0.2)
        self.report({"INFO"}, "Setting up the backend in the background…")
        return {"FINISHED"}


def _poll_setup() -> float | None:
    context = bpy.context
    if _task is None:
        return None
    if not _drain(context):
        tag_redraw(context)
        return 0.2
    level, message = _finish(context)
    print(f"Compact SDF: {message}")
    tag_redraw(context)
    return None


class CSDF_OT_cancel_setup(bpy.types.Operator):
    bl_idname = "csdf.cancel_setup"
    bl_label = "Cancel Setup"
    bl_description = "Stop the backend setup and remove the partial environment"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _task is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        assert _task is not None
        _task.cancelled.set()
        self.report({"INFO"}, "Cancelling the backend setup…")
        return {"FINISHED"}


def stop_setup() -> None:
    """Cancel a running setup (unregister)."""
    if _task is not None:
        _task.cancelled.set()
        if bpy.app.timers.is_registered(_poll_setup):
            bpy.app.timers.unregister(_poll_setup)


CLASSES = [CSDF_OT_setup_backend, CSDF_OT_cancel_setup]
