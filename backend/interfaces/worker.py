"""Backend worker process: runs engine jobs for Blender over the JSON Lines protocol.

Start it by script path (Blender runs Python isolated, so PYTHONPATH is ignored)::

    <python-with-torch> -u path/to/backend/interfaces/worker.py [--log-level INFO]

Stdout carries protocol lines only (see ``protocol``); every ``print``, log record and C-level
write goes to stderr. A reader thread takes requests from stdin, so ``cancel`` reaches the
running job at once; jobs run one after another in the main thread. End of stdin (the client
died) cancels the running job and exits (at the latest ``STOP_GRACE_S`` later); sampling processes
end with the worker however it ends (``lifecycle``).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ in ("__main__", "__mp_main__") and not __package__:
    # Run by script path (or re-imported by a spawned sampling process as __mp_main__): make
    # ``import backend`` work and resolve this module's relative imports.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    __package__ = "backend.interfaces"  # noqa: A001 - PEP 366
    import backend.interfaces  # noqa: F401

import argparse
import logging
import os
import platform
import queue
import threading
import time
import traceback
from collections.abc import Callable
from typing import IO, Any

from .. import __version__
from . import protocol
from ..atomic_io import file_lock
from ..errors import BadMeshError, Cancelled, CheckpointError, CompactSdfError, LibraryError
from ..lifecycle import exit_after

log = logging.getLogger("compact_sdf.worker")
#: Seconds the running job has to stop once the client has left (end of stdin or ``shutdown``).
STOP_GRACE_S = 10.0


class Worker:
    """Dispatches requests to the engine and writes events to ``out``."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._write_lock = threading.Lock()
        self._jobs: queue.Queue[protocol.Request | None] = queue.Queue()
        self._cancelled: set[str] = set()
        self._cancel_lock = threading.Lock()
        self._library_cache: tuple[tuple[str, int, int], Any] | None = None

    # -- wire ---------------------------------------------------------------------------------
    def send(self, event: protocol.Event) -> None:
        with self._write_lock:
            self._out.write(event.to_line())
            self._out.flush()

    def read_requests(self, stream: IO[bytes]) -> None:
        """Reader thread: queue jobs, apply ``cancel`` at once, stop on ``shutdown`` or EOF."""
        for raw in stream:
            if not raw.strip():
                continue
            try:
                request = protocol.parse_request(raw)
                if request.cmd == "cancel":
                    self.cancel(protocol.CancelArgs.from_dict(request.args).job)
                    continue
            except protocol.ProtocolError as exc:
                self.send(protocol.error("", "Protocol", str(exc)))
                continue
            if request.cmd == "shutdown":
                break
            self._jobs.put(request)
        self.cancel_all()
        # The client is done or gone (Blender closed or crashed): a job that does not stop in time
        # (a long call that cannot check for cancellation) must not keep this process running. Armed
        # before the main thread may end: a thread still starting (and allocating, so maybe running
        # the GC and freeing tensors) while the interpreter finalizes can abort the process.
        exit_after(STOP_GRACE_S, f"the running job did not stop within {STOP_GRACE_S:.0f} s of the client's leaving")
        self._jobs.put(None)

    def cancel(self, job_id: str) -> None:
        with self._cancel_lock:
            self._cancelled.add(job_id)

    def cancel_all(self) -> None:
        self.cancel("*")

    def is_cancelled(self, job_id: str) -> bool:
        with self._cancel_lock:
            return job_id in self._cancelled or "*" in self._cancelled

    # -- loop ---------------------------------------------------------------------------------
    def serve(self, stream: IO[bytes]) -> None:
        self.send(
            protocol.hello(
                backend_version=__version__,
                python=sys.executable,
                python_version=platform.python_version(),
                pid=os.getpid(),
            )
        )
        reader = threading.Thread(target=self.read_requests, args=(stream,), name="csdf-reader", daemon=True)
        reader.start()
        while (request := self._jobs.get()) is not None:
            self.run(request)

    def run(self, request: protocol.Request) -> None:
        """Run one job and send exactly one terminal event for it."""
        job_id = request.id
        if self.is_cancelled(job_id):
            self.send(protocol.cancelled(job_id))
            return
        started = time.perf_counter()
        try:
            args = protocol.parse_args(request)
            handler: Callable[[str, Any], dict[str, Any]] = getattr(self, f"cmd_{request.cmd}")
            out = getattr(args, "library_out", None)
            if out:  # a library-changing job holds the library's lock from load to save (CLI adds wait too)
                with file_lock(out, should_stop=self._should_stop(job_id)):
                    data = handler(job_id, args)
            else:
                data = handler(job_id, args)
        except Cancelled:
            self.send(protocol.cancelled(job_id))
        except BaseException as exc:  # every failure becomes an error event; the worker lives on
            kind, message = classify(exc)
            log.error("job %s (%s) failed: %s", job_id, request.cmd, message)
            self.send(protocol.error(job_id, kind, message, traceback.format_exc()))
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        else:
            data["elapsed_s"] = round(time.perf_counter() - started, 3)
            self.send(protocol.result(job_id, data))
        finally:
            with self._cancel_lock:
                self._cancelled.discard(job_id)

    # -- helpers ------------------------------------------------------------------------------
    def _should_stop(self, job_id: str) -> Callable[[], bool]:
        return lambda: self.is_cancelled(job_id)

    def _on_progress(self, job_id: str, part: int = 0, parts: int = 1, label: str = "") -> Callable[[Any], None]:
        """Forward engine Progress as events; ``part`` of ``parts`` scales it into one overall bar."""

        def report(p: Any) -> None:
            self.send(
                protocol.progress(
                    job_id,
                    stage=p.stage,
                    step=part * p.total + p.step,
                    total=parts * p.total,
                    loss=p.loss,
                    eta_s=p.eta_s,
                    message=f"{label}: {p.message}" if label else p.message,
                )
            )

        return report

    def _engine(self, job_id: str, device: str) -> dict[str, Any]:
        """The keyword arguments every long engine call takes: device, progress and cancellation."""
        return {"device": device, "on_progress": self._on_progress(job_id), "should_stop": self._should_stop(job_id)}

    def _library(self, path: str) -> Any:
        """Load a library, reusing the last one while its file is unchanged (live previews)."""
        if not Path(path).is_file():
            raise LibraryError(f"{path}: no such library file")
        from ..store.library import Library

        stat = Path(path).stat()
        key = (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)
        if self._library_cache is None or self._library_cache[0] != key:
            self._library_cache = (key, Library.load(path))
        return self._library_cache[1]

    def _save_library(self, job_id: str, library: Any, out: str, names: list[str]) -> dict[str, Any]:
        """Write ``library`` to ``out`` unless the job was cancelled; the result names ``names``' info."""
        if self.is_cancelled(job_id):
            raise Cancelled("cancelled before the library was written")
        library.save(out)
        known = [n for n in names if n in library.names]
        return {"library": out, "names": list(library.names), "shapes": {n: library.shape_info(n) for n in known}}

    # -- commands -----------------------------------------------------------------------------
    def cmd_probe(self, job_id: str, args: protocol.ProbeArgs) -> dict[str, Any]:
        """Python, numpy, torch, CUDA and the device jobs will use; MissingDependency if absent."""
        import numpy
        import torch

        from .. import api  # noqa: F401 - proves the engine imports with this interpreter

        from ..field.device import pick_device

        device = pick_device(args.device)
        cuda = torch.cuda.is_available()
        return {
            "python": sys.executable,
            "python_version": platform.python_version(),
            "backend_version": __version__,
            "numpy": numpy.__version__,
            "torch": torch.__version__,
            "cuda": torch.version.cuda if cuda else None,
            "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
            "device": str(device),
            "threads": torch.get_num_threads(),
        }

    def cmd_info(self, job_id: str, args: protocol.InfoArgs) -> dict[str, Any]:
        from ..store.library_meta import read_library_meta

        return read_library_meta(args.library)

    def cmd_encode(self, job_id: str, args: protocol.EncodeArgs) -> dict[str, Any]:
        """Encode (or add) as the CLI does: checkpoints every ``checkpoint_minutes`` in
        ``<library_out>.ckpt``, kept with the request and meshes (so Blender can resume the run
        after a crash) until the library is written; ``resume`` continues from them."""
        from .. import api
        from ..field.checkpoint_meta import LATEST, checkpoint_path, remove_checkpoint, write_job

        ckpt = checkpoint_path(args.library_out)
        checkpointing = args.resume or args.checkpoint_minutes > 0
        every_s = args.checkpoint_minutes * 60 if args.checkpoint_minutes > 0 else float("inf")
        if checkpointing and not args.resume and (ckpt / LATEST).is_file():  # before its job files are overwritten
            raise CheckpointError(f"an interrupted encode of {Path(args.library_out).name} left a checkpoint: "
                                  "resume it, or discard it to start over")
        try:
            if checkpointing and not args.resume:
                write_job(ckpt, args.to_dict(), args.meshes)
            shapes = dict(zip(args.names, _load_meshes(args.meshes, len(args.names))))
            base = self._library(args.library_in) if args.library_in else None
            library = api.encode(shapes, preset=args.preset, size=args.size, steps=args.steps, library=base,
                                 seed=args.seed, frame=args.frame, checkpoint=ckpt if checkpointing else None,
                                 checkpoint_every_s=every_s, resume=args.resume, **self._engine(job_id, args.device))
            done = self._save_library(job_id, library, args.library_out, args.names)
            done["frame"] = library.history[-1].get("frame")  # what the new shapes got (auto: what it chose)
        except BaseException:
            if checkpointing and not args.resume and not (ckpt / LATEST).is_file():
                remove_checkpoint(ckpt)  # no training state saved yet: nothing to resume
            raise
        remove_checkpoint(ckpt)  # a finished run leaves no checkpoint
        return done

    def cmd_invert(self, job_id: str, args: protocol.InvertArgs) -> dict[str, Any]:
        from .. import api

        (mesh,) = _load_meshes(args.meshes, 1)
        library = api.invert(self._library(args.library_in), mesh, args.name, steps=args.steps,
                             **self._engine(job_id, args.device))
        return self._save_library(job_id, library, args.library_out, [args.name])

    def cmd_replace(self, job_id: str, args: protocol.ReplaceArgs) -> dict[str, Any]:
        from .. import api

        (mesh,) = _load_meshes(args.meshes, 1)
        library = api.replace(self._library(args.library), args.name, mesh, steps=args.steps, seed=args.seed,
                              **self._engine(job_id, args.device))
        return self._save_library(job_id, library, args.library_out, [args.name])

    def cmd_remove(self, job_id: str, args: protocol.RemoveArgs) -> dict[str, Any]:
        from .. import api

        library = api.remove(self._library(args.library), args.names)
        return self._save_library(job_id, library, args.library_out, [])

    def cmd_rename(self, job_id: str, args: protocol.RenameArgs) -> dict[str, Any]:
        from .. import api

        library = api.rename(self._library(args.library), args.old, args.new)
        return self._save_library(job_id, library, args.library_out, [args.new])

    def cmd_decode(self, job_id: str, args: protocol.DecodeArgs) -> dict[str, Any]:
        """Decode each item's target (a name or ``{name: weight}``) into its ``out`` .npz."""
        from .. import api

        library = self._library(args.library)
        should_stop = self._should_stop(job_id)
        done = []
        for index, item in enumerate(args.items):
            mesh = api.decode(
                library, item.target, resolution=args.resolution, band=args.band, mode=args.mode, detail=args.detail,
                device=args.device, on_progress=self._on_progress(job_id, index, len(args.items), _describe(item.target)),
                should_stop=should_stop,
            )
            done.append(_write_decoded(mesh, item, args.target_faces))
            if should_stop():
                raise Cancelled("cancelled")
        return {"items": done}

    def cmd_interpolate(self, job_id: str, args: protocol.InterpolateArgs) -> dict[str, Any]:
        """``count`` meshes along the path through ``names`` (endpoints included) into ``out_dir``;
        each item's stats hold its blend ``weights`` and ``path_position``."""
        from .. import api

        meshes = api.interpolate(
            self._library(args.library), args.names, args.count, mode=args.mode, resolution=args.resolution,
            band=args.band, detail=args.detail, pace=args.pace, **self._engine(job_id, args.device),
        )
        out_dir = Path(args.out_dir)
        target_faces = args.target_faces
        if target_faces is not None and all("morph" in m.stats for m in meshes):
            _decimate_morph(meshes, target_faces)  # once for the whole path: it keeps one face list
            target_faces = None
        items = [
            _write_decoded(mesh, protocol.DecodeItem(str(i), str(out_dir / f"interp_{i:03d}.npz")), target_faces)
            for i, mesh in enumerate(meshes)
        ]
        return {"items": items}

    def cmd_carry(self, job_id: str, args: protocol.CarryArgs) -> dict[str, Any]:
        """The vertices of ``points`` carried along the morph path (see ``CarryArgs``) into ``out``."""
        import numpy as np

        from .. import api

        (mesh,) = protocol.load_meshes(args.points, 1)
        carried = api.carry(self._library(args.library), args.names, mesh["vertices"], args.count,
                            resolution=args.resolution, **self._engine(job_id, args.device))
        if carried.positions is None:
            return {"out": None, "failure": carried.failure, "fits": _jsonable(carried.fits)}
        protocol.save_meshes(args.out, [{"vertices": p.astype(np.float32), "faces": mesh["faces"]} for p in carried.positions])
        return {"out": args.out, "count": len(carried.positions), "failure": None,
                "path_positions": [float(t) for t in carried.path_positions], "fits": _jsonable(carried.fits)}

    def cmd_explore(self, job_id: str, args: protocol.ExploreArgs) -> dict[str, Any]:
        """One point of the code space (see ``ExploreArgs``) into ``out``, with its code and nearest shapes."""
        from .. import api

        result = api.explore(
            self._library(args.library), args.base, args.amounts, seed=args.seed, spread=args.spread, code=args.code,
            nearest=args.nearest, resolution=args.resolution, band=args.band, mode=args.mode, detail=args.detail,
            **self._engine(job_id, args.device),
        )
        if self.is_cancelled(job_id):
            raise Cancelled("cancelled")
        target = args.base if result.exact else "variant"
        item = _write_decoded(result.mesh, protocol.DecodeItem(target, args.out), args.target_faces)  # type: ignore[arg-type]
        return {**item, "code": [float(v) for v in result.code],
                "nearest": [[name, round(d, 6)] for name, d in result.nearest], "directions": result.directions}


def _load_meshes(path: str, count: int) -> list[Any]:
    """The engine's Mesh for each of the ``count`` meshes of a mesh .npz."""
    from ..geometry.meshes import Mesh

    return [Mesh(a["vertices"], a["faces"]) for a in protocol.load_meshes(path, count)]


def _decimate_morph(meshes: list[Any], target_faces: int) -> None:
    """Decimate a morph path's meshes in place to about ``target_faces``, keeping their one face list."""
    import numpy as np

    from ..geometry.meshes import vertex_normals
    from ..geometry.simplify import decimate_path

    stations, faces = decimate_path([m.vertices for m in meshes], meshes[0].faces, target_faces)
    for mesh, vertices in zip(meshes, stations):
        mesh.stats["decoded_faces"] = int(len(mesh.faces))
        mesh.vertices, mesh.faces = vertices, faces.astype(np.int32)
        mesh.normals = vertex_normals(vertices, faces)


def _write_decoded(mesh: Any, item: protocol.DecodeItem, target_faces: int | None) -> dict[str, Any]:
    """Save a DecodedMesh (decimated to ``target_faces`` if given) as ``item.out``; with a reference,
    add its fidelity to the stats and, for a heatmap, per-vertex distances to the .npz."""
    import numpy as np

    from ..geometry.fidelity import measure_fidelity, vertex_distance

    vertices, faces = np.asarray(mesh.vertices, dtype=np.float32), np.asarray(mesh.faces, dtype=np.int32)
    arrays: dict[str, Any] = {"normals": np.asarray(mesh.normals, dtype=np.float32)}
    stats = _jsonable(getattr(mesh, "stats", {}))
    if target_faces is not None and len(faces) > target_faces:
        from ..geometry.simplify import decimate

        stats["decoded_faces"] = int(len(faces))
        vertices, faces = decimate(vertices, faces, target_faces)
        arrays = {}  # marching-cubes normals no longer match the vertices
    arrays.update(vertices=vertices, faces=faces)
    if item.reference and len(faces):
        (ref,) = protocol.load_meshes(item.reference, 1)
        source = (ref["vertices"], ref["faces"])
        stats["fidelity"] = _jsonable(measure_fidelity((vertices, faces), source))
        if item.heatmap:
            arrays["distance"] = vertex_distance(vertices, source)
    protocol.save_meshes(item.out, [arrays])
    return {"target": item.target, "out": item.out, "vertices": int(len(vertices)), "faces": int(len(faces)),
            "stats": stats}


def _describe(target: Any) -> str:
    if isinstance(target, dict):
        return " + ".join(f"{w:.2f}·{n}" for n, w in target.items())
    return str(target)


def _jsonable(value: Any) -> Any:
    """Numbers, strings, lists and dicts only (numpy scalars become floats, NaN/inf become None)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if number == number and abs(number) != float("inf") else None


def classify(exc: BaseException) -> tuple[str, str]:
    """Protocol error kind and a one-line user message for an exception."""
    if isinstance(exc, ModuleNotFoundError) and not (exc.name or "").startswith(__package__ or "backend"):
        return "MissingDependency", (
            f"The backend Python ({sys.executable}) lacks the module '{exc.name}'. "
            "Use Preferences → Set up backend, or point 'Backend Python' at an environment with torch."
        )
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return "OutOfMemory", "Out of memory: lower the resolution or the preset, or use the CPU device."
    if isinstance(exc, protocol.ProtocolError):
        return "Protocol", f"Bad request: {exc}"
    if isinstance(exc, LibraryError):
        return "LibraryError", str(exc)
    if isinstance(exc, (BadMeshError, CompactSdfError)):
        return "BadInput", str(exc)
    return "Internal", f"Internal error: {type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    # Keep the protocol stream for ourselves; everything else that writes to fd 1 lands on stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", newline="\n")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    Worker(out).serve(sys.stdin.buffer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
