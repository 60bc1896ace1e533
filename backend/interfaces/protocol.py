"""Worker protocol: UTF-8 JSON Lines between Blender (client) and ``backend/interfaces/worker.py``.

Stdlib only (and the stdlib-only ``config`` for defaults, ``field.blend_modes`` for the blend modes): Blender
imports this module without torch or numpy.

Every message is one JSON object on one line and carries ``"v": PROTOCOL_VERSION``.

* Requests (client → worker): ``{"v", "id", "cmd", "args"}`` with ``cmd`` in ``COMMANDS``.
  Each command's ``args`` is one dataclass below (``EncodeArgs``, ``DecodeArgs``, …): the client
  builds it, ``Request.of`` puts it on the wire and the worker reads it back with ``parse_args``,
  which checks every field's type. The dataclasses' defaults are config's. ``cancel`` names the
  job to stop (``CancelArgs.job``); ``shutdown`` ends the worker.
* Events (worker → client): ``{"v", "id", "event", ...}``. ``hello`` is sent once at start (id
  ``""``); ``progress`` any number of times per job; then exactly one terminal event per job id:
  ``result`` (``data``), ``error`` (``kind``, ``message``, ``traceback``) or ``cancelled``.

Arguments and results hold JSON scalars, lists, dicts and file paths only. Arrays travel as
``.npz`` files in a job folder (see ``MESH_KEYS``); nothing is ever pickled. Unknown keys are
ignored so that either side may add fields without a version bump.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..config import (DEFAULT_CHECKPOINT_MINUTES, DEFAULT_DEVICE, DEFAULT_FRAME, DEFAULT_PRESET, DEFAULT_SIZE, FRAMES,
                      PACES, DecodeConfig, EncodeConfig, ExploreConfig, setting)
from ..field.blend_modes import BLEND_MODES

#: Bumped only for incompatible changes; the client refuses a worker that says otherwise.
PROTOCOL_VERSION = 1

EVENTS = ("hello", "progress", "result", "error", "cancelled")
TERMINAL_EVENTS = ("result", "error", "cancelled")

#: Error kinds: what the client can tell the user without reading the traceback.
ERROR_KINDS = ("MissingDependency", "OutOfMemory", "BadInput", "LibraryError", "Protocol", "Internal", "WorkerCrashed")

#: Keys of a mesh ``.npz``: vertices (n,3) float32, faces (m,3) int32, optional normals (n,3)
#: float32 and per-vertex distance to a reference surface (n,) float32.
MESH_KEYS = ("vertices", "faces", "normals", "distance")


class ProtocolError(ValueError):
    """A line is not a valid protocol message."""


#: Defaults of a request that does not name them: the engine's, from its torch-free config.
DEFAULT_RESOLUTION = DecodeConfig().resolution
DEFAULT_BAND = DecodeConfig().band
DEFAULT_BLEND_MODE = DecodeConfig().mode
#: Detail dial of blends (0: coarse shape only, 1: full detail).
DEFAULT_DETAIL = DecodeConfig().detail
#: Triangles each decoded mesh is decimated to (None: all of them).
DEFAULT_TARGET_FACES = DecodeConfig().target_faces
DEFAULT_SEED = EncodeConfig().seed
DEFAULT_SPREAD = ExploreConfig().spread
#: Nearest library shapes an ``explore`` result lists.
DEFAULT_NEAREST = ExploreConfig().nearest
_DETAIL = setting(DecodeConfig, "detail")
_CHECKPOINT_MINUTES = setting(EncodeConfig, "checkpoint_minutes")

_Args = TypeVar("_Args", bound="RequestArgs")


class RequestArgs:
    """Base of the typed arguments of one command (``CMD``); subclasses are dataclasses."""

    CMD: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_Args], args: dict[str, Any]) -> _Args:
        """Build from a request's ``args``; ProtocolError names a missing or mistyped field."""
        return _build(cls, args, cls.CMD)


def _check_detail(args: Any) -> None:
    """ProtocolError unless ``args.detail`` is a number in its range (0..1: the dial of blends)."""
    if not (isinstance(args.detail, (int, float)) and _DETAIL.contains(args.detail)):
        raise ProtocolError(f"{args.CMD}.detail: expected a number in {_DETAIL.low}..{_DETAIL.high}, got {args.detail!r}")


def _check_mode(args: Any) -> None:
    """ProtocolError unless ``args.mode`` names a registered blend mode (``field.blend_modes``)."""
    if not (isinstance(args.mode, str) and args.mode in BLEND_MODES):
        raise ProtocolError(f"{args.CMD}.mode: expected one of {', '.join(BLEND_MODES)}, got {args.mode!r}")


def _check_finite(where: str, values: list[float]) -> None:
    if not all(math.isfinite(v) for v in values):
        raise ProtocolError(f"{where}: expected finite numbers")


@dataclass
class ProbeArgs(RequestArgs):
    CMD: ClassVar[str] = "probe"
    device: str = DEFAULT_DEVICE


@dataclass
class InfoArgs(RequestArgs):
    CMD: ClassVar[str] = "info"
    library: str


@dataclass
class EncodeArgs(RequestArgs):
    """Encode the meshes of a mesh .npz (one per name) into ``library_out`` (added to ``library_in``)."""

    CMD: ClassVar[str] = "encode"
    meshes: str
    names: list[str]
    library_out: str
    library_in: str | None = None
    preset: str = DEFAULT_PRESET
    size: str = DEFAULT_SIZE  #: bytes each shape's detail may use (config.SIZES); an add keeps the library's
    steps: int | None = None
    seed: int = DEFAULT_SEED
    device: str = DEFAULT_DEVICE
    #: shared, per-shape or auto (config.FRAMES): one frame for the new shapes, or each its own (api.encode)
    frame: str = DEFAULT_FRAME
    #: Save the training state to ``<library_out>.ckpt`` this often (0: never); the run's request and
    #: meshes are kept there too, so Blender can resume it after a crash (``field.checkpoint_meta``).
    checkpoint_minutes: float = DEFAULT_CHECKPOINT_MINUTES
    resume: bool = False  #: continue the interrupted run whose checkpoint is ``<library_out>.ckpt``

    def __post_init__(self) -> None:
        if self.frame not in FRAMES:
            raise ProtocolError(f"encode.frame: expected one of {', '.join(FRAMES)}, got {self.frame!r}")
        if not (math.isfinite(self.checkpoint_minutes) and _CHECKPOINT_MINUTES.contains(self.checkpoint_minutes)):
            raise ProtocolError(f"encode.checkpoint_minutes: expected a number >= {_CHECKPOINT_MINUTES.low}, "
                                f"got {self.checkpoint_minutes!r}")


@dataclass
class InvertArgs(RequestArgs):
    """Fit one unseen shape (the mesh .npz's only mesh) into ``library_in`` with everything shared frozen."""

    CMD: ClassVar[str] = "invert"
    meshes: str
    name: str
    library_in: str
    library_out: str
    steps: int | None = None
    device: str = DEFAULT_DEVICE


@dataclass
class DecodeItem:
    """One decode: a shape name or ``{name: weight}`` blend into the mesh .npz ``out``.

    With ``reference`` (a mesh .npz of the source) fidelity is measured against it, and with
    ``heatmap`` per-vertex distances are stored too.
    """

    target: str | dict[str, float]
    out: str
    reference: str | None = None
    heatmap: bool = False


@dataclass
class DecodeArgs(RequestArgs):
    """Decode each item; ``target_faces`` decimates every result to about that many triangles."""

    CMD: ClassVar[str] = "decode"
    library: str
    items: list[DecodeItem]
    resolution: int = DEFAULT_RESOLUTION
    band: float = DEFAULT_BAND
    mode: str = DEFAULT_BLEND_MODE
    device: str = DEFAULT_DEVICE
    target_faces: int | None = DEFAULT_TARGET_FACES
    detail: float = DEFAULT_DETAIL

    def __post_init__(self) -> None:
        _check_detail(self)
        _check_mode(self)


@dataclass
class InterpolateArgs(RequestArgs):
    """``count`` meshes along the path through ``names`` (endpoints included) into ``out_dir``."""

    CMD: ClassVar[str] = "interpolate"
    library: str
    names: list[str]
    count: int
    out_dir: str
    resolution: int = DEFAULT_RESOLUTION
    band: float = DEFAULT_BAND
    mode: str = DEFAULT_BLEND_MODE
    device: str = DEFAULT_DEVICE
    target_faces: int | None = DEFAULT_TARGET_FACES
    detail: float = DEFAULT_DETAIL
    pace: str = DecodeConfig().pace  #: uniform or even (see api.interpolate)

    def __post_init__(self) -> None:
        _check_detail(self)
        _check_mode(self)
        if self.pace not in PACES:
            raise ProtocolError(f"interpolate.pace: expected one of {', '.join(PACES)}, got {self.pace!r}")


@dataclass
class CarryArgs(RequestArgs):
    """Carry the vertices of the mesh .npz ``points`` (an artist's mesh of ``names[0]``, in its source's
    units) along the morph path through ``names``: ``count`` positions, endpoints included, into the
    .npz ``out`` (``positions`` float32 (count, n, 3), ``path_positions`` (count,)). The result holds
    ``failure`` (why the shapes cannot correspond, or None) and each registration's ``fits``."""

    CMD: ClassVar[str] = "carry"
    library: str
    names: list[str]
    count: int
    points: str
    out: str
    resolution: int = DEFAULT_RESOLUTION
    device: str = DEFAULT_DEVICE


@dataclass
class ExploreArgs(RequestArgs):
    """Decode one point of the library's code space into the mesh .npz ``out``.

    The code is ``code`` when given (a raw code kept from an earlier result), else the seeded
    random variant ``seed`` (``spread`` standard deviations wide), else ``base`` (a shape name or
    ``{name: weight}`` blend; None: the library's mean code), moved by ``amounts`` standard
    deviations along the principal directions 1, 2, …. ``base`` also gives the units of every
    raw code (None: the working cube). A base that is neither moved nor replaced decodes exactly
    like ``decode``, with the ``detail`` dial; raw codes decode their coarse shape. The result
    holds the mesh entry of ``decode``'s items plus ``code``, the ``nearest`` shapes
    (``[name, distance]``) and the number of principal ``directions``.
    """

    CMD: ClassVar[str] = "explore"
    library: str
    out: str
    base: str | dict[str, float] | None = None
    amounts: list[float] = field(default_factory=list)
    seed: int | None = None
    spread: float = DEFAULT_SPREAD
    code: list[float] | None = None
    nearest: int = DEFAULT_NEAREST
    resolution: int = DEFAULT_RESOLUTION
    band: float = DEFAULT_BAND
    mode: str = DEFAULT_BLEND_MODE
    detail: float = DEFAULT_DETAIL
    device: str = DEFAULT_DEVICE
    target_faces: int | None = DEFAULT_TARGET_FACES

    def __post_init__(self) -> None:
        _check_detail(self)
        _check_mode(self)
        _check_finite("explore.amounts", self.amounts)
        _check_finite("explore.code", self.code or [])
        for name in ("spread", "nearest"):
            allowed, value = setting(ExploreConfig, name), getattr(self, name)
            if not (allowed.contains(value) and math.isfinite(value)):  # range first: a huge int overflows isfinite
                raise ProtocolError(f"explore.{name}: expected {allowed.low}..{allowed.high}, got {value!r}")


@dataclass
class RemoveArgs(RequestArgs):
    """Write ``library`` without the shapes ``names`` to ``library_out``."""

    CMD: ClassVar[str] = "remove"
    library: str
    names: list[str]
    library_out: str


@dataclass
class RenameArgs(RequestArgs):
    """Write ``library`` with shape ``old`` renamed ``new`` to ``library_out``."""

    CMD: ClassVar[str] = "rename"
    library: str
    old: str
    new: str
    library_out: str


@dataclass
class ReplaceArgs(RequestArgs):
    """Re-encode shape ``name`` of ``library`` from the mesh .npz's only mesh; write ``library_out``."""

    CMD: ClassVar[str] = "replace"
    library: str
    name: str
    meshes: str
    library_out: str
    steps: int | None = None
    seed: int = DEFAULT_SEED
    device: str = DEFAULT_DEVICE


@dataclass
class CancelArgs(RequestArgs):
    CMD: ClassVar[str] = "cancel"
    job: str


@dataclass
class ShutdownArgs(RequestArgs):
    CMD: ClassVar[str] = "shutdown"


REQUEST_TYPES: dict[str, type[RequestArgs]] = {
    cls.CMD: cls
    for cls in (
        ProbeArgs, InfoArgs, EncodeArgs, InvertArgs, DecodeArgs, InterpolateArgs, CarryArgs, ExploreArgs,
        RemoveArgs, RenameArgs, ReplaceArgs, CancelArgs, ShutdownArgs,
    )
}
COMMANDS = tuple(REQUEST_TYPES)


def _build(cls: type, data: Any, where: str) -> Any:
    """An instance of dataclass ``cls`` from a JSON object; unknown keys are ignored."""
    if not isinstance(data, dict):
        raise ProtocolError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            values[f.name] = _convert(data[f.name], hints[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ProtocolError(f"{where}: missing '{f.name}'")
    return cls(**values)


def _convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against (and shaped as) the type ``hint``; ProtocolError if it does not fit."""
    origin, params = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for option in params:
            try:
                return _convert(value, option, where)
            except ProtocolError:
                continue
        raise ProtocolError(f"{where}: expected {hint}, got {type(value).__name__}")
    if origin is list:
        if not isinstance(value, list):
            raise ProtocolError(f"{where}: expected a list, got {type(value).__name__}")
        return [_convert(v, params[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ProtocolError(f"{where}: expected an object, got {type(value).__name__}")
        return {_convert(k, params[0], where): _convert(v, params[1], f"{where}[{k!r}]") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if hint is type(None):
        if value is None:
            return None
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:  # an integer beyond float range (JSON allows 4300 digits)
                raise ProtocolError(f"{where}: {str(value)[:20]}... is too large a number") from None
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, hint):
        return value
    raise ProtocolError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {type(value).__name__}")


@dataclass
class Request:
    """A command for the worker: ``args`` as sent on the wire (see ``parse_args``)."""

    cmd: str
    args: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @classmethod
    def of(cls, args: RequestArgs) -> Request:
        """The request that runs ``args``' command."""
        return cls(args.CMD, args.to_dict())

    def to_line(self) -> str:
        return dumps({"v": PROTOCOL_VERSION, "id": self.id, "cmd": self.cmd, "args": self.args})


def parse_args(request: Request) -> RequestArgs:
    """The typed arguments of a request; ProtocolError when a field is missing or mistyped."""
    return REQUEST_TYPES[request.cmd].from_dict(request.args)


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
    """Write meshes (dicts keyed by ``MESH_KEYS``) to one uncompressed ``.npz`` (numpy imported
    lazily), atomically: a worker killed mid-write leaves no partial file for Blender to read."""
    import numpy as np

    from ..atomic_io import atomic_write

    arrays = {}
    for index, mesh in enumerate(meshes):
        for key in MESH_KEYS:
            if mesh.get(key) is not None:
                arrays[f"{key}_{index}"] = np.ascontiguousarray(mesh[key])

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a handle: np.savez would append ".npz" to the temporary's name
            np.savez(handle, **arrays)

    atomic_write(path, write)


def load_meshes(path: str, count: int) -> list[dict[str, Any]]:
    """Read ``count`` meshes written by ``save_meshes`` (never unpickles)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        missing = [f"{k}_{i}" for i in range(count) for k in ("vertices", "faces") if f"{k}_{i}" not in data]
        if missing:
            raise ProtocolError(f"{path}: missing arrays {', '.join(missing[:4])}")
        return [{key: data[f"{key}_{i}"] for key in MESH_KEYS if f"{key}_{i}" in data} for i in range(count)]
