"""Client side of the backend worker: starts ``backend/interfaces/worker.py``, sends requests, collects events.

No ``bpy`` here. A reader thread parses the worker's stdout into per-job queues; Blender's main
thread drains them (``poll``) from a timer or blocks on them (``wait``) in background mode. When the
worker dies, every pending job gets a synthetic terminal event, so no caller waits forever.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backend.interfaces import protocol

WORKER_SCRIPT = Path(__file__).resolve().parent / "backend" / "interfaces" / "worker.py"


class WorkerError(RuntimeError):
    """The worker could not be started or spoke an incompatible protocol."""


@dataclass
class CancelGrace:
    """When a job was asked to stop, and whether it has had ``grace_s`` seconds to do so."""

    grace_s: float
    sent_at: float | None = None

    @property
    def sent(self) -> bool:
        return self.sent_at is not None

    def start(self) -> None:
        """Note that the cancel was sent now (the first time only)."""
        if self.sent_at is None:
            self.sent_at = time.monotonic()

    def expired(self) -> bool:
        """The cancel was sent longer than ``grace_s`` ago: time to kill the worker."""
        return self.sent_at is not None and time.monotonic() - self.sent_at > self.grace_s


class WorkerClient:
    """One backend worker process and its event queues."""

    def __init__(self, python: str, log_path: Path, *, startup_timeout: float = 60.0) -> None:
        self.python = python
        self.log_path = Path(log_path)
        self.startup_timeout = startup_timeout
        self.hello: dict[str, Any] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._queues: dict[str, queue.Queue[protocol.Event]] = {}
        self._open: set[str] = set()  # jobs still waiting for their terminal event
        self._lock = threading.Lock()
        self._hello_ready = threading.Event()
        self._stopping = False

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> dict[str, Any]:
        """Launch the worker and wait for its ``hello``; raise WorkerError with a user message."""
        if not Path(self.python).is_file():
            raise WorkerError(f"Backend Python not found: {self.python}. Fix it in the add-on preferences.")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        env.pop("PYTHONPATH", None)
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.python} {WORKER_SCRIPT}\n".encode())
            self._proc = subprocess.Popen(
                [self.python, "-u", str(WORKER_SCRIPT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=str(WORKER_SCRIPT.parents[2]),
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
            )
        threading.Thread(target=self._read, name="csdf-client-reader", daemon=True).start()
        if not self._hello_ready.wait(self.startup_timeout) or not self.hello:
            code = self._proc.poll()
            self.kill()
            reason = f"exited with code {code}" if code is not None else f"sent no greeting in {self.startup_timeout:.0f} s"
            raise WorkerError(f"The backend worker {reason}. {self.log_tail()}")
        if self.hello.get("protocol") != protocol.PROTOCOL_VERSION:
            self.kill()
            raise WorkerError(
                f"The backend speaks protocol {self.hello.get('protocol')}, this add-on {protocol.PROTOCOL_VERSION}."
            )
        return self.hello

    def stop(self, timeout: float = 3.0) -> None:
        """Ask the worker to exit, then terminate and kill it if it does not."""
        if self._proc is None:
            return
        self._stopping = True
        if self.alive:
            try:
                self._send(protocol.Request.of(protocol.ShutdownArgs()))
                self._proc.wait(timeout)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        self._close_pipes()

    def kill(self) -> None:
        """Stop the worker at once (used when a cancel is not honoured in time)."""
        if self._proc is None:
            return
        self._stopping = True
        if self.alive:
            self._proc.terminate()
            try:
                self._proc.wait(2.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        assert self._proc is not None
        if self._proc.stdin and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except OSError:
                pass

    def log_tail(self, lines: int = 6) -> str:
        """Last lines of the worker log, for error messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return ""
        tail = " | ".join(line.strip() for line in text[-lines:] if line.strip())
        return f"Log ({self.log_path}): {tail}" if tail else ""

    # -- jobs ---------------------------------------------------------------------------------
    def submit(self, args: protocol.RequestArgs) -> str:
        """Send a job request; return its id."""
        request = protocol.Request.of(args)
        with self._lock:
            self._queues[request.id] = queue.Queue()
            self._open.add(request.id)
        if not self.alive:
            self._finish_pending()
        else:
            try:
                self._send(request)
            except OSError:
                self._finish_pending()
        return request.id

    def cancel(self, job_id: str) -> None:
        if self.alive:
            try:
                self._send(protocol.Request.of(protocol.CancelArgs(job_id)))
            except OSError:
                pass

    def poll(self, job_id: str) -> list[protocol.Event]:
        """Events of a job received so far (non-blocking); forget the job after its terminal event."""
        with self._lock:
            q = self._queues.get(job_id)
        if q is None:
            return []
        events = []
        while True:
            try:
                events.append(q.get_nowait())
            except queue.Empty:
                break
        if events and events[-1].terminal:
            with self._lock:
                self._queues.pop(job_id, None)
        return events

    def wait(
        self,
        job_id: str,
        *,
        on_event: Callable[[protocol.Event], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        cancel_grace_s: float = 30.0,
    ) -> protocol.Event:
        """Block until the job's terminal event; ``should_cancel`` is polled and honoured."""
        grace = CancelGrace(cancel_grace_s)
        while True:
            for event in self.poll(job_id):
                if on_event is not None:
                    on_event(event)
                if event.terminal:
                    return event
            if should_cancel is not None and not grace.sent and should_cancel():
                self.cancel(job_id)
                grace.start()
            if grace.expired():
                self.kill()
            time.sleep(0.02)

    # -- internals ----------------------------------------------------------------------------
    def _send(self, request: protocol.Request) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(request.to_line().encode("utf-8"))
        self._proc.stdin.flush()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            try:
                event = protocol.parse_event(raw)
            except protocol.ProtocolError as exc:
                print(f"Compact SDF: ignoring worker output ({exc})", file=sys.stderr)
                continue
            if event.event == "hello":
                self.hello = event.fields
                self._hello_ready.set()
                continue
            with self._lock:
                q = self._queues.get(event.id)
                if event.terminal:
                    self._open.discard(event.id)
            if q is not None:
                q.put(event)
            elif event.event == "error":
                print(f"Compact SDF worker: {event.get('message')}", file=sys.stderr)
        self._proc.wait()
        self._hello_ready.set()
        self._finish_pending()

    def _finish_pending(self) -> None:
        """Give every open job a terminal event once the worker is gone."""
        code = self._proc.poll() if self._proc is not None else None
        with self._lock:
            pending = [(job_id, self._queues[job_id]) for job_id in self._open if job_id in self._queues]
            self._open.clear()
        for job_id, q in pending:
            if self._stopping:
                q.put(protocol.cancelled(job_id, "Cancelled; the backend worker was stopped and nothing was written."))
            else:
                message = f"The backend worker stopped unexpectedly (exit code {code}); nothing was written. {self.log_tail()}"
                q.put(protocol.error(job_id, "WorkerCrashed", message.strip()))
