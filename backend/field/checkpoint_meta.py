"""A training checkpoint's state, read with the standard library only (no torch), and the files
that let Blender resume an encode its worker started.

``checkpoint`` writes the checkpoint itself (``<output>.ckpt``: one safetensors file per rank and
``latest.json``). This module names that directory and reads ``latest.json``'s phase, step and
fraction done, so the Blender panel can offer Resume (with the run's progress and age) without
the backend. An encode run by the worker also keeps its request (``job.json``) and its meshes
(``meshes.npz``) there, since Blender's job folder and the scene's objects may be gone by the
time it resumes (a crash, a restart, another file). Everything goes when the checkpoint does.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic_io import atomic_write
from ..errors import CheckpointError

CHECKPOINT_SUFFIX = ".ckpt"
#: The file naming the last complete generation (written last, atomically, by rank 0).
LATEST = "latest.json"
FORMAT = "compact-sdf-checkpoint/1"
#: The worker's encode request that started the run, as sent (``protocol.EncodeArgs``), and its meshes.
JOB_REQUEST = "job.json"
JOB_MESHES = "meshes.npz"
_PHASES = ("coarse", "detail")
_MAX_LATEST_BYTES = 64 * 1024
_MAX_REQUEST_BYTES = 16 * 1024 * 1024


def checkpoint_path(output: str | Path) -> Path:
    """Where the checkpoint of a run writing ``output`` lives: ``<output>.ckpt``."""
    output = Path(output)
    return output.with_name(output.name + CHECKPOINT_SUFFIX)


def remove_checkpoint(directory: str | Path) -> None:
    """Delete a finished (or discarded) run's checkpoint, job files included."""
    shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class CheckpointInfo:
    """What ``latest.json`` says of an interrupted run: its ``phase`` ("coarse" or "detail"),
    ``step`` steps done in it, ``fraction`` of it done (None in checkpoints older than the field),
    when it was saved (``saved_at``, seconds since the epoch) and, for a run the worker started,
    its ``request`` (a dict as ``protocol.EncodeArgs`` sends it; None otherwise)."""

    directory: Path
    phase: str
    step: int
    fraction: float | None
    saved_at: float
    request: dict[str, Any] | None

    @property
    def age_s(self) -> float:
        """Seconds since the checkpoint was saved."""
        return max(0.0, time.time() - self.saved_at)

    @property
    def meshes(self) -> Path:
        return self.directory / JOB_MESHES

    @property
    def resumable_by_worker(self) -> bool:
        """True when the request and meshes that started the run are kept beside it."""
        return self.request is not None and self.meshes.is_file()


def read_checkpoint(output: str | Path) -> CheckpointInfo | None:
    """The checkpoint of a run writing ``output``; None when it has none (no ``latest.json``),
    CheckpointError when its ``latest.json`` is unreadable or foreign."""
    directory = checkpoint_path(output)
    latest = directory / LATEST
    try:
        saved_at = latest.stat().st_mtime
        with latest.open("rb") as f:
            raw = f.read(_MAX_LATEST_BYTES + 1)
        if len(raw) > _MAX_LATEST_BYTES:
            raise ValueError("too large")
        data = json.loads(raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{latest} is unreadable ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{latest} is not a Compact SDF checkpoint")
    phase, step, fraction = data.get("phase"), data.get("step"), data.get("fraction")
    if phase not in _PHASES or not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{latest} names no valid phase and step")
    if not (isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and math.isfinite(fraction)):
        fraction = None
    else:
        fraction = min(max(float(fraction), 0.0), 1.0)
    return CheckpointInfo(directory, phase, step, fraction, saved_at, _read_request(directory / JOB_REQUEST))


def _read_request(path: Path) -> dict[str, Any] | None:
    """The kept request, or None if there is none or it is unreadable (the run then resumes only
    where it was started: the command line)."""
    try:
        if path.stat().st_size > _MAX_REQUEST_BYTES:
            return None
        request = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return request if isinstance(request, dict) else None


def write_job(directory: str | Path, request: dict[str, Any], meshes: str | Path) -> None:
    """Keep a worker run's ``request`` and a copy of its ``meshes`` in its checkpoint ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / JOB_MESHES, lambda tmp: shutil.copyfile(meshes, tmp))
    text = json.dumps({**request, "meshes": str(directory / JOB_MESHES)}, ensure_ascii=False, allow_nan=False)
    atomic_write(directory / JOB_REQUEST, lambda tmp: tmp.write_text(text, encoding="utf-8"))
