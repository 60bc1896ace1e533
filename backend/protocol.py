"""Worker protocol: UTF-8 JSON Lines between Blender (client) and ``backend/worker.py``.

Stdlib only: Blender imports this module without torch or numpy.

Every message is one JSON object on one line and carries ``"v": PROTOCOL_VERSION``.

* Requests (client → worker): ``{"v", "id", "cmd", "args"}`` with ``cmd`` in ``COMMANDS``.
  ``cancel`` names the job to stop in ``args["job"]``; ``shutdown`` ends the worker.
* Events (worker → client): ``{"v", "id", "event", ...}``. ``hello`` is sent once at start (id
  ``""``); ``progress`` any number of times per job; then exactly one terminal event per job id:
  ``result`` (``data``), ``error`` (``kind``, ``message``, ``traceback``) or ``cancelled``.

Arguments and results hold JSON scalars, lists, dicts and file paths only. Arrays travel as
``.npz`` files in a job folder (see ``MESH_KEYS``); nothing is ever pickled. Unknown keys are
ignored so that either side may add fields without a version bump.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

#: Bumped only for incompatible changes; the client refuses a worker that says otherwise.
PROTOCOL_VERSION = 1

COMMANDS = ("probe", "info", "encode", "decode", "interpolate", "invert", "cancel", "shutdown")
EVENTS = ("hello", "progress", "result", "error", "cancelled")
TERMINAL_EVENTS = ("result", "error", "cancelled")

#: Error kinds: what the client can tell the user without reading the traceback.
ERROR_KINDS = ("MissingDependency", "OutOfMemory", "BadInput", "LibraryError", "Protocol", "Internal", "WorkerCrashed")

#: Keys of a mesh ``.npz``: vertices (n,3) float32, faces (m,3) int32, optional normals (n,3)
#: float32 and per-vertex distance to a reference surface (n,) float32.
MESH_KEYS = ("vertices", "faces", "normals", "distance")


class ProtocolError(ValueError):
    """A line is not a valid protocol message."""


@dataclass
class Request:
    """A command for the worker."""

    cmd: str
    args: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def to_line(self) -> str:
        return dumps({"v": PROTOCOL_VERSION, "id": self.id, "cmd": self.cmd, "args": self.args})


@dataclass
class Event:
    """A message from the worker; ``fields`` holds everything but ``v``, ``id`` and ``event``."""

    event: str
    id: str = ""
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.event in TERMINAL_EVENTS

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def to_line(self) -> str:
        return dumps({**self.fields, "v": PROTOCOL_VERSION, "id": self.id, "event": self.event})


def dumps(message: dict[str, Any]) -> str:
    """One JSON line (no embedded newlines, non-ASCII kept as UTF-8, NaN refused)."""
    return json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"


def _load(line: str | bytes) -> dict[str, Any]:
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"message is not UTF-8: {exc}") from exc
    try:
        message = json.loads(line)
    except RecursionError as exc:
        raise ProtocolError("message is nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, or an integer over Python's digit limit
        raise ProtocolError(f"message is not JSON ({exc}): {line[:200]!r}") from exc
    if not isinstance(message, dict):
        raise ProtocolError(f"message is not a JSON object: {line[:200]!r}")
    if message.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {message.get('v')!r}, expected {PROTOCOL_VERSION}")
    if not isinstance(message.get("id"), str):
        raise ProtocolError("message has no string 'id'")
    return message


def parse_request(line: str | bytes) -> Request:
    """Decode a request line; raise ProtocolError when it is malformed."""
    message = _load(line)
    cmd, args = message.get("cmd"), message.get("args", {})
    if cmd not in COMMANDS:
        raise ProtocolError(f"unknown command {cmd!r}")
    if not isinstance(args, dict):
        raise ProtocolError("'args' must be an object")
    return Request(cmd=cmd, args=args, id=message["id"])


def parse_event(line: str | bytes) -> Event:
    """Decode an event line; raise ProtocolError when it is malformed."""
    message = _load(line)
    event = message.pop("event", None)
    if event not in EVENTS:
        raise ProtocolError(f"unknown event {event!r}")
    job_id = message.pop("id")
    message.pop("v")
    return Event(event=event, id=job_id, fields=message)


def hello(**info: Any) -> Event:
    """First line the worker prints: protocol and environment facts (python, torch, cuda, device)."""
    return Event("hello", "", {"protocol": PROTOCOL_VERSION, **info})


def progress(
    job_id: str,
    *,
    stage: str,
    step: int,
    total: int,
    loss: float | None = None,
    eta_s: float | None = None,
    message: str = "",
) -> Event:
    """Intermediate state of a job; ``step/total`` is the fraction done within ``stage``."""
    loss = float(loss) if loss is not None and math.isfinite(loss) else None
    eta_s = float(eta_s) if eta_s is not None and math.isfinite(eta_s) else None
    return Event(
        "progress",
        job_id,
        {"stage": stage, "step": int(step), "total": int(total), "loss": loss, "eta_s": eta_s, "message": message},
    )


def result(job_id: str, data: dict[str, Any]) -> Event:
    return Event("result", job_id, {"data": data})


def error(job_id: str, kind: str, message: str, traceback: str = "") -> Event:
    if kind not in ERROR_KINDS:
        raise ValueError(f"unknown error kind {kind!r}")
    return Event("error", job_id, {"kind": kind, "message": message, "traceback": traceback})


def cancelled(job_id: str, message: str = "Cancelled; nothing was written.") -> Event:
    return Event("cancelled", job_id, {"message": message})


def save_meshes(path: str, meshes: list[dict[str, Any]]) -> None:
    """Write meshes (dicts keyed by ``MESH_KEYS``) to one uncompressed ``.npz`` (numpy imported lazily)."""
    import numpy as np

    arrays = {}
    for index, mesh in enumerate(meshes):
        for key in MESH_KEYS:
            if mesh.get(key) is not None:
                arrays[f"{key}_{index}"] = np.ascontiguousarray(mesh[key])
    np.savez(path, **arrays)


def load_meshes(path: str, count: int) -> list[dict[str, Any]]:
    """Read ``count`` meshes written by ``save_meshes`` (never unpickles)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        missing = [f"{k}_{i}" for i in range(count) for k in ("vertices", "faces") if f"{k}_{i}" not in data]
        if missing:
            raise ProtocolError(f"{path}: missing arrays {', '.join(missing[:4])}")
        return [{key: data[f"{key}_{i}"] for key in MESH_KEYS if f"{key}_{i}" in data} for i in range(count)]
