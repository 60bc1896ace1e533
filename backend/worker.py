"""Backend worker process: runs engine jobs for Blender over the JSON Lines protocol.

Start it by script path (Blender runs Python isolated, so PYTHONPATH is ignored)::

    <python-with-torch> -u path/to/backend/worker.py [--log-level INFO]

Stdout carries protocol lines only (see ``protocol``); every ``print``, log record and C-level
write goes to stderr. A reader thread takes requests from stdin, so ``cancel`` reaches the
running job at once; jobs run one after another in the main thread. End of stdin (the client
died) cancels the running job and exits.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run by script path: make ``import backend`` work and resolve this module's relative imports.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "backend"  # noqa: A001 - PEP 366
    import backend  # noqa: F401

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

from . import __version__, protocol
from .atomic_io import file_lock
from .errors import BadMeshError, Cancelled, CompactSdfError, LibraryError

log = logging.getLogger("compact_sdf.worker")

#: Surface samples per mesh when a decode is compared with its source (DESIGN §3 metrics).
FIDELITY_SAMPLES = 50_000


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
            except protocol.ProtocolError as exc:
                self.send(protocol.error("", "Protocol", str(exc)))
                continue
            if request.cmd == "cancel":
                self.cancel(str(request.args.get("job", "")))
            elif request.cmd == "shutdown":
                break
            else:
                self._jobs.put(request)
        self.cancel_all()
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
        handler: Callable[[protocol.Request], dict[str, Any]] = getattr(self, f"cmd_{request.cmd}")
        started = time.perf_counter()
        try:
            data = handler(request)
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

    def _library(self, path: str) -> Any:
        """Load a library, reusing the last one while its file is unchanged (live previews)."""
        if not Path(path).is_file():
            raise LibraryError(f"{path}: no such library file")
        from .library import Library

        stat = Path(path).stat()
        key = (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)
        if self._library_cache is None or self._library_cache[0] != key:
            self._library_cache = (key, Library.load(path))
        return self._library_cache[1]

    # -- commands -----------------------------------------------------------------------------
    def cmd_probe(self, request: protocol.Request) -> dict[str, Any]:
        """Python, numpy, torch, CUDA and the device jobs will use; MissingDependency if absent."""
        import numpy
        import torch

        from . import api  # noqa: F401 - proves the engine imports with this interpreter

        from .device import pick_device

        device = pick_device(str(request.args.get("device", "auto")))
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

    def cmd_info(self, request: protocol.Request) -> dict[str, Any]:
        from .library_meta import read_library_meta

        return read_library_meta(str(request.args["library"]))

    def cmd_encode(self, request: protocol.Request) -> dict[str, Any]:
        """Encode meshes into a new library, or add them to ``library_in``; write ``library_out``."""
        from . import api
        from .meshes import Mesh

        args = request.args
        names = [str(n) for n in args["names"]]
        arrays = protocol.load_meshes(args["meshes"], len(names))
        shapes = {name: Mesh(a["vertices"], a["faces"]) for name, a in zip(names, arrays)}
        with file_lock(str(args["library_out"]), should_stop=self._should_stop(request.id)):
            base = self._library(args["library_in"]) if args.get("library_in") else None
            library = api.encode(
                shapes,
                preset=str(args.get("preset", "fast")),
                steps=args.get("steps"),
                library=base,
                seed=int(args.get("seed", 0)),
                device=str(args.get("device", "auto")),
                on_progress=self._on_progress(request.id),
                should_stop=self._should_stop(request.id),
            )
            return self._save_library(request, library, names)

    def cmd_invert(self, request: protocol.Request) -> dict[str, Any]:
        """Add one unseen shape to a library with the shared weights frozen."""
        from . import api
        from .meshes import Mesh

        args = request.args
        name = str(args["name"])
        (arrays,) = protocol.load_meshes(args["meshes"], 1)
        with file_lock(str(args["library_out"]), should_stop=self._should_stop(request.id)):
            library = api.invert(
                self._library(args["library_in"]),
                Mesh(arrays["vertices"], arrays["faces"]),
                name,
                steps=args.get("steps"),
                device=str(args.get("device", "auto")),
                on_progress=self._on_progress(request.id),
                should_stop=self._should_stop(request.id),
            )
            return self._save_library(request, library, [name])

    def _save_library(self, request: protocol.Request, library: Any, names: list[str]) -> dict[str, Any]:
        """Write the job's ``library_out`` unless it was cancelled; the result names ``names``' info."""
        if self.is_cancelled(request.id):
            raise Cancelled("cancelled before the library was written")
        out = str(request.args["library_out"])
        library.save(out)
        return {"library": out, "names": list(library.names), "shapes": {n: library.shape_info(n) for n in names}}

    def cmd_decode(self, request: protocol.Request) -> dict[str, Any]:
        """Decode each item's target (a name or ``{name: weight}``) into its ``out`` .npz."""
        args = request.args
        library = self._library(args["library"])
        from . import api

        items = args["items"]
        should_stop = self._should_stop(request.id)
        done = []
        for index, item in enumerate(items):
            report = self._on_progress(request.id, index, len(items), _describe(item["target"]))
            mesh = api.decode(
                library,
                item["target"],
                resolution=int(args.get("resolution", 256)),
                band=float(args.get("band", 3.0)),
                mode=str(args.get("mode", "slerp")),
                device=str(args.get("device", "auto")),
                on_progress=report,
                should_stop=should_stop,
            )
            done.append(self._write_decoded(mesh, item))
            if should_stop():
                raise Cancelled("cancelled")
        return {"items": done}

    def cmd_interpolate(self, request: protocol.Request) -> dict[str, Any]:
        """``count`` meshes along the path through ``names`` (endpoints included) into ``out_dir``."""
        args = request.args
        library = self._library(args["library"])
        from . import api

        names = [str(n) for n in args["names"]]
        count = int(args["count"])
        meshes = api.interpolate(
            library,
            names,
            count,
            mode=str(args.get("mode", "slerp")),
            resolution=int(args.get("resolution", 256)),
            band=float(args.get("band", 3.0)),
            device=str(args.get("device", "auto")),
            on_progress=self._on_progress(request.id),
            should_stop=self._should_stop(request.id),
        )
        out_dir = Path(args["out_dir"])
        items = [
            self._write_decoded(mesh, {"target": i, "out": str(out_dir / f"interp_{i:03d}.npz")})
            for i, mesh in enumerate(meshes)
        ]
        return {"items": items}

    def _write_decoded(self, mesh: Any, item: dict[str, Any]) -> dict[str, Any]:
        """Save a DecodedMesh as a mesh .npz. With ``item['reference']`` (a mesh .npz of the source)
        also measure fidelity against it, and with ``item['heatmap']`` store per-vertex distances."""
        import numpy as np

        arrays = {
            "vertices": np.asarray(mesh.vertices, dtype=np.float32),
            "faces": np.asarray(mesh.faces, dtype=np.int32),
            "normals": np.asarray(mesh.normals, dtype=np.float32),
        }
        stats = _jsonable(getattr(mesh, "stats", {}))
        if item.get("reference") and len(arrays["faces"]):
            from .metrics import compare_meshes, point_to_mesh_distance

            (ref,) = protocol.load_meshes(item["reference"], 1)
            gt = (ref["vertices"], ref["faces"])
            stats["fidelity"] = _jsonable(compare_meshes(gt, (arrays["vertices"], arrays["faces"]), FIDELITY_SAMPLES).to_dict())
            if item.get("heatmap"):
                distance = point_to_mesh_distance(arrays["vertices"], *gt).distance
                arrays["distance"] = distance.astype(np.float32)
        protocol.save_meshes(item["out"], [arrays])
        return {
            "target": item["target"],
            "out": item["out"],
            "vertices": int(len(arrays["vertices"])),
            "faces": int(len(arrays["faces"])),
            "stats": stats,
        }


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
