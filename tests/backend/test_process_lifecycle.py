"""A job killed with SIGKILL leaves nothing running: its sampling pool and multiprocessing's resource
tracker end within seconds, whether the CLI, the Blender worker or Blender (the worker's client) died.

Each job runs in a session of its own, so every process it started, even re-parented after the kill,
is found by its session id in /proc (Linux). The moment of each kill is random, within a stage the
job's own progress output shows it has reached.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
WORKER = REPO / "backend" / "interfaces" / "worker.py"
#: Seconds the processes of a killed job may take to end.
GRACE_S = 5.0
#: Seconds a job may take to reach the stage it is killed in (slow, shared CI machines).
REACH_S = 120.0

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="lists processes from /proc (Linux)")


def _stat(pid: str) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state, ppid, pgrp, session, ...)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _alive(pid: int) -> bool:
    """Running (a zombie has ended; whoever adopted it may not have reaped it yet)."""
    fields = _stat(str(pid))
    return fields is not None and fields[0] not in ("Z", "X")


def _session(sid: int) -> dict[int, str]:
    """Live processes of session ``sid``: pid -> command line."""
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := _stat(entry.name)) and int(fields[3]) == sid and fields[0] not in "ZX":
            found[int(entry.name)] = _cmdline(int(entry.name))
    return found


def _pool_processes(sid: int) -> dict[int, str]:
    return {pid: cmd for pid, cmd in _session(sid).items() if "spawn_main" in cmd}


_STARTED: list[int] = []  #: sessions started by this module's tests, ended whatever the outcome


@pytest.fixture(autouse=True)
def _end_sessions():
    yield
    while _STARTED:
        _kill_all(_session(_STARTED.pop()))


def _kill_all(pids) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Job:
    """A process in a session of its own, its stdout and stderr collected as text."""

    def __init__(self, args: list[str], *, stdin: int | None = subprocess.DEVNULL) -> None:
        self.proc = subprocess.Popen(args, cwd=REPO, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.sid = self.proc.pid
        _STARTED.append(self.sid)
        self._chunks: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while chunk := self.proc.stdout.read1(65536):
            self._chunks.append(chunk)

    @property
    def output(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")

    def wait_until(self, done, what: str) -> None:
        deadline = time.monotonic() + REACH_S
        while not done():
            assert self.proc.poll() is None, f"the job ended before {what}:\n{self.output[-3000:]}"
            assert time.monotonic() < deadline, f"no {what} in {REACH_S:.0f} s:\n{self.output[-3000:]}"
            time.sleep(0.02)

    def wait_for(self, text: str) -> None:
        self.wait_until(lambda: text in self.output, repr(text))

    def wait_for_pool(self, not_among: set[int] = frozenset()) -> None:
        """Until a pool process runs that is not among ``not_among`` (an earlier pool's)."""
        self.wait_until(lambda: set(_pool_processes(self.sid)) - not_among, "pool")

    def kill(self, grace_s: float = GRACE_S) -> tuple[dict[int, str], float]:
        """SIGKILL the job's first process; wait until every process of its session has ended
        (within ``grace_s``); (the processes alive just before, seconds they took to end)."""
        before = _session(self.sid)
        os.kill(self.proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        self.proc.wait()
        while (left := _session(self.sid)) and time.monotonic() - killed < grace_s:
            time.sleep(0.05)
        took = time.monotonic() - killed
        _kill_all(left)  # leave nothing behind on failure either
        self.proc.kill()
        self.proc.wait()
        assert not left, f"still running {grace_s:.0f} s after the kill: {left}\n{self.output[-3000:]}"
        print(f"{len(before)} processes; all ended {took:.2f} s after the kill")
        return before, took


@pytest.fixture
def rng() -> random.Random:
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"random kill moments: seed {seed}")  # shown when a test fails
    return random.Random(seed)


def _encode_cli(tmp_path: Path) -> Job:
    return Job([sys.executable, "-m", "backend", "encode", str(DATA / "sphere.obj"), str(DATA / "torus.obj"),
                "-o", str(tmp_path / "lib.csdf"), "--preset", "tiny", "--steps", "150", "--sampling-workers", "2",
                "--device", "cpu",
                "--cache", str(tmp_path / "cache")])


@pytest.mark.parametrize("stage", ["sampling", "blend targets"])
def test_cli_killed_while_sampling_leaves_no_process(tmp_path, rng, stage):
    job = _encode_cli(tmp_path)
    job.wait_for("sampling ")  # the first report is always shown; later ones at most 5 a second
    sampling_pool: set[int] = set()
    if stage == "blend targets":  # the next pool after sampling's last report ("2/2", always shown)
        job.wait_until(lambda: sampling_pool.update(_pool_processes(job.sid)) or "2/2" in job.output, "sampling's end")
    job.wait_for_pool(not_among=sampling_pool)
    time.sleep(rng.uniform(0, 0.6))  # pool processes starting, importing or computing
    before, _ = job.kill()
    assert any("spawn_main" in cmd for cmd in before.values()), f"killed before the pool started: {before}"
    assert any("resource_tracker" in cmd for cmd in before.values()), before


def test_cli_killed_while_training_leaves_no_process(tmp_path, rng):
    """Only the resource tracker is left by then (the pools have been shut down); it must end too."""
    job = _encode_cli(tmp_path)
    job.wait_for("training coarse")
    time.sleep(rng.uniform(0, 1.0))  # 2 x 150 steps: a few seconds on 2 cores
    assert job.proc.poll() is None, f"the encode ended first:\n{job.output[-3000:]}"
    before, _ = job.kill()
    assert any("resource_tracker" in cmd for cmd in before.values()), before


def _meshes_npz(tmp_path: Path) -> Path:
    from backend.geometry.meshes import load_mesh
    from backend.interfaces import protocol

    path = tmp_path / "meshes.npz"
    meshes = [load_mesh(DATA / name) for name in ("sphere.obj", "torus.obj")]
    protocol.save_meshes(str(path), [{"vertices": m.vertices, "faces": m.faces} for m in meshes])
    return path


needs_pool = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 if hasattr(os, "sched_getaffinity") else True,
                                reason="the worker samples in-process on one core")


@needs_pool
def test_worker_killed_while_sampling_leaves_no_process(tmp_path, rng):
    from backend.interfaces import protocol

    job = Job([sys.executable, "-u", str(WORKER)], stdin=subprocess.PIPE)
    request = protocol.Request.of(protocol.EncodeArgs(str(_meshes_npz(tmp_path)), ["sphere", "torus"],
                                                      str(tmp_path / "lib.csdf"), preset="tiny", device="cpu"))
    job.proc.stdin.write(request.to_line().encode())
    job.proc.stdin.flush()
    job.wait_for("sampling: 2 shapes on 2 processes")
    job.wait_for_pool()
    time.sleep(rng.uniform(0, 0.6))
    before, _ = job.kill()
    assert any("spawn_main" in cmd for cmd in before.values()), before


#: Stands in for Blender: starts the worker through worker_client (as the extension does), starts an
#: encode and prints its events. worker_client is imported as part of a stand-in package (the
#: extension's own __init__ needs bpy).
BLENDER = textwrap.dedent("""
    import importlib, sys, types
    from pathlib import Path

    repo, meshes, library = sys.argv[1:4]
    package = types.ModuleType("csdf_extension")
    package.__path__ = [repo]
    sys.modules["csdf_extension"] = package
    wc = importlib.import_module("csdf_extension.worker_client")
    protocol = importlib.import_module("csdf_extension.backend.interfaces.protocol")
    client = wc.WorkerClient(sys.executable, Path(library).with_suffix(".log"))
    client.start()
    job = client.submit(protocol.EncodeArgs(meshes, ["sphere", "torus"], library, preset="tiny", device="cpu"))
    client.wait(job, on_event=lambda event: print(event.to_line(), end="", flush=True))
""")


@needs_pool
@pytest.mark.parametrize("stage", ["sampling", "training"])
def test_blender_killed_during_an_encode_leaves_no_process(tmp_path, rng, stage):
    """The worker reads end-of-file on stdin, cancels the encode (ending its pool) and exits: at
    the next check for cancellation (every 10 training steps), at the latest STOP_GRACE_S later."""
    from backend.interfaces.worker import STOP_GRACE_S

    script = tmp_path / "blender.py"
    script.write_text(BLENDER)
    job = Job([sys.executable, str(script), str(REPO), str(_meshes_npz(tmp_path)), str(tmp_path / "lib.csdf")])
    if stage == "sampling":
        job.wait_for("sampling: 2 shapes on 2 processes")
        job.wait_for_pool()
        time.sleep(rng.uniform(0, 0.6))
    else:
        job.wait_for("training coarse")
        time.sleep(rng.uniform(0, 1.0))
    before, _ = job.kill(STOP_GRACE_S + GRACE_S)
    assert any("worker.py" in cmd for cmd in before.values()), before
    assert stage != "sampling" or any("spawn_main" in cmd for cmd in before.values()), before


HELPER = textwrap.dedent("""
    import os, sys, time

    from backend import lifecycle


    def portable_only():
        '''The watch macOS and Windows get: no PR_SET_PDEATHSIG.'''
        lifecycle._kill_on_parent_death = lambda: None
        lifecycle.exit_with_parent()


    def nap(_):
        print(f"napping {os.getpid()}", flush=True)
        time.sleep(60)
""")

PARENT = textwrap.dedent("""
    import concurrent.futures, multiprocessing, sys, time

    sys.path[:0] = sys.argv[1:3]
    import helper
    from backend import lifecycle

    if __name__ == "__main__":
        initializer = getattr(helper, sys.argv[3], None) or getattr(lifecycle, sys.argv[3])
        pool = concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"),
                                                      initializer=initializer)
        futures = [pool.submit(helper.nap, i) for i in range(2)]
        time.sleep(60)
""")


@pytest.mark.parametrize("initializer", ["exit_with_parent", "portable_only"])
def test_pool_processes_end_with_their_parent(tmp_path, initializer):
    """Both watches, the Linux one and the one every platform has, end a pool's processes in seconds."""
    (tmp_path / "helper.py").write_text(HELPER)
    (tmp_path / "parent.py").write_text(PARENT)
    job = Job([sys.executable, str(tmp_path / "parent.py"), str(REPO), str(tmp_path), initializer])
    deadline = time.monotonic() + REACH_S
    while job.output.count("napping") < 2:  # both have run the initializer and sleep in a task
        assert job.proc.poll() is None and time.monotonic() < deadline, job.output
        time.sleep(0.02)
    children = [int(line.split()[1]) for line in job.output.splitlines() if line.startswith("napping")]
    _, took = job.kill()
    assert not any(_alive(pid) for pid in children)
    assert took < 3.0, f"the pool took {took:.1f} s to end"
