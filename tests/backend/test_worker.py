"""The real worker, started by script path (as Blender starts it): hello, probe, jobs, cancel, errors."""

from __future__ import annotations

import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from backend.interfaces import protocol

REPO = Path(__file__).resolve().parents[2]
WORKER = REPO / "backend" / "interfaces" / "worker.py"


class Worker:
    """A worker subprocess with a reader thread; stdout must hold protocol lines only."""

    def __init__(self, *python_flags: str, cwd: Path) -> None:
        # Not run from the repo and without PYTHONPATH: the script must find ``backend`` by itself.
        env = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, *python_flags, "-u", str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
        )
        self.events: queue.Queue[protocol.Event] = queue.Queue()
        self.stray: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            try:
                self.events.put(protocol.parse_event(raw))
            except protocol.ProtocolError:
                self.stray.append(raw)

    def send(self, request: protocol.Request) -> str:
        self.proc.stdin.write(request.to_line().encode())
        self.proc.stdin.flush()
        return request.id

    def next(self, timeout: float = 120.0) -> protocol.Event:
        return self.events.get(timeout=timeout)

    def until_terminal(self, job_id: str, timeout: float = 300.0) -> tuple[protocol.Event, list[protocol.Event]]:
        progress = []
        while True:
            event = self.next(timeout)
            assert event.id == job_id, f"event for another job: {event}"
            if event.terminal:
                return event, progress
            progress.append(event)

    def close(self) -> int:
        if self.proc.poll() is None:
            try:
                self.send(protocol.Request("shutdown"))
            except OSError:
                pass
        code = self.proc.wait(30)
        assert not self.stray, f"non-protocol output on stdout: {self.stray[:3]}"
        return code


@pytest.fixture
def worker(tmp_path):
    w = Worker(cwd=tmp_path)
    hello = w.next(60)
    assert hello.event == "hello"
    w.hello = hello
    yield w
    assert w.close() == 0


def _sphere(radius: float, n: int = 24) -> dict[str, np.ndarray]:
    """A UV sphere as arrays (closed, consistently wound)."""
    theta, phi = np.meshgrid(np.linspace(0, np.pi, n), np.linspace(0, 2 * np.pi, 2 * n, endpoint=False), indexing="ij")
    v = radius * np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1).reshape(-1, 3)
    faces = []
    m = 2 * n
    for i in range(n - 1):
        for j in range(m):
            a, b, c, d = i * m + j, i * m + (j + 1) % m, (i + 1) * m + (j + 1) % m, (i + 1) * m + j
            faces += [[a, b, c], [a, c, d]]
    return {"vertices": v.astype(np.float32), "faces": np.array(faces, np.int32)}


def _box(size=(1.0, 0.6, 0.4)) -> dict[str, np.ndarray]:
    s = np.array(size) / 2
    v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float) * s
    f = [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4],
         [1, 5, 7], [1, 7, 3]]
    return {"vertices": v.astype(np.float32), "faces": np.array(f, np.int32)}


def test_hello_is_first_and_describes_the_interpreter(worker):
    assert worker.hello.get("protocol") == protocol.PROTOCOL_VERSION
    assert worker.hello.get("python") == sys.executable
    assert worker.hello.get("pid") == worker.proc.pid


def test_malformed_request_gives_protocol_error_and_worker_survives(worker):
    worker.proc.stdin.write(b"this is not json\n")
    worker.proc.stdin.flush()
    event = worker.next()
    assert (event.event, event.id, event.get("kind")) == ("error", "", "Protocol")
    job = worker.send(protocol.Request("decode", {"library": "/nonexistent/lib.csdf", "items": []}))
    event, _ = worker.until_terminal(job)
    assert event.event == "error" and event.get("kind") == "LibraryError"
    assert "no such library" in event.get("message")


def test_missing_torch_is_reported_as_missing_dependency(tmp_path):
    w = Worker("-S", cwd=tmp_path)  # no site-packages: numpy and torch are absent
    assert w.next(60).event == "hello"
    job = w.send(protocol.Request("probe", {}))
    event, _ = w.until_terminal(job)
    assert event.event == "error" and event.get("kind") == "MissingDependency"
    assert "lacks the module" in event.get("message") and "Set up backend" in event.get("message")
    assert "Traceback" in event.get("traceback")
    assert w.close() == 0


def test_probe_reports_torch_and_device(worker):
    torch = pytest.importorskip("torch")
    job = worker.send(protocol.Request("probe", {"device": "cpu"}))
    event, _ = worker.until_terminal(job)
    assert event.event == "result", event.fields
    data = event.get("data")
    assert data["torch"] == torch.__version__ and data["device"] == "cpu" and data["python"] == sys.executable


def test_bad_mesh_gives_bad_input_error(worker, tmp_path):
    pytest.importorskip("backend.api")
    meshes = tmp_path / "in.npz"
    protocol.save_meshes(str(meshes), [{"vertices": np.zeros((0, 3), np.float32), "faces": np.zeros((0, 3), np.int32)}])
    out = tmp_path / "lib.csdf"
    job = worker.send(
        protocol.Request("encode", {"meshes": str(meshes), "names": ["empty"], "library_out": str(out), "preset": "tiny"})
    )
    event, _ = worker.until_terminal(job)
    assert event.event == "error" and event.get("kind") == "BadInput", event.fields
    assert "empty" in event.get("message")
    assert not out.exists()


def test_tiny_encode_then_decode(worker, tmp_path):
    pytest.importorskip("backend.api")
    meshes = tmp_path / "in.npz"
    protocol.save_meshes(str(meshes), [_sphere(0.5), _box()])
    library = tmp_path / "lib.csdf"
    args = {"meshes": str(meshes), "names": ["ball", "brick"], "library_out": str(library), "preset": "tiny",
            "size": "small", "steps": 30, "device": "cpu"}
    event, progress = worker.until_terminal(worker.send(protocol.Request("encode", args)))
    assert event.event == "result", event.fields
    assert library.is_file() and event.get("data")["names"] == ["ball", "brick"]
    from backend.config import SIZES
    from backend.store.library import Library

    stored = Library.load(library)  # the size setting arrived
    small = SIZES["small"]
    assert (stored.model.detail.grid.channels, stored.preset.storage.band_cells) == (small.channels, small.band)
    assert stored.preset.storage.distance_bits == small.distance_bits
    assert progress and all(p.get("total") > 0 for p in progress)

    out = tmp_path / "ball.npz"
    reference = tmp_path / "ref.npz"
    protocol.save_meshes(str(reference), [_sphere(0.5)])
    items = [{"target": "ball", "out": str(out), "reference": str(reference), "heatmap": True}]
    decode = {"library": str(library), "items": items, "resolution": 48, "device": "cpu"}
    event, _ = worker.until_terminal(worker.send(protocol.Request("decode", decode)))
    assert event.event == "result", event.fields
    (item,) = event.get("data")["items"]
    (arrays,) = protocol.load_meshes(str(out), 1)
    assert arrays["vertices"].dtype == np.float32 and arrays["faces"].dtype == np.int32
    assert item["faces"] == len(arrays["faces"]) > 0
    assert len(arrays["distance"]) == len(arrays["vertices"])
    assert 0 < item["stats"]["fidelity"]["cd_l1"] < 0.2


def test_cancel_mid_run_writes_nothing_and_worker_goes_on(worker, tmp_path):
    pytest.importorskip("backend.api")
    meshes = tmp_path / "in.npz"
    protocol.save_meshes(str(meshes), [_sphere(0.5)])
    library = tmp_path / "lib.csdf"
    args = {"meshes": str(meshes), "names": ["ball"], "library_out": str(library), "preset": "tiny",
            "steps": 100_000, "device": "cpu"}
    job = worker.send(protocol.Request("encode", args))
    while not (event := worker.next()).get("stage", "").startswith("train"):
        assert event.event == "progress", f"the job ended before training: {event.fields}"
    worker.send(protocol.Request("cancel", {"job": job}))
    event, _ = worker.until_terminal(job, timeout=60)
    assert event.event == "cancelled"
    assert not library.exists()
    probe = worker.send(protocol.Request("probe", {"device": "cpu"}))
    assert worker.until_terminal(probe)[0].event == "result"


def test_encode_keeps_a_resumable_checkpoint_until_the_library_is_written(worker, tmp_path):
    """Issue 22 item 2: the worker checkpoints as the CLI does, and keeps the request and meshes with
    the checkpoint (Blender's job folder may be gone when it resumes); a finished run removes it all."""
    pytest.importorskip("backend.api")
    import json
    import time

    from backend.field.checkpoint_meta import JOB_MESHES, JOB_REQUEST, LATEST, checkpoint_path, read_checkpoint

    meshes = tmp_path / "job" / "in.npz"
    meshes.parent.mkdir()
    protocol.save_meshes(str(meshes), [_box()])
    library = tmp_path / "lib.csdf"
    ckpt = checkpoint_path(library)
    encode = protocol.EncodeArgs(str(meshes), ["brick"], str(library), preset="tiny", steps=60, device="cpu",
                                 checkpoint_minutes=0.001)
    job = worker.send(protocol.Request.of(encode))
    deadline = time.monotonic() + 120
    while not (ckpt / LATEST).is_file():
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.02)
    worker.send(protocol.Request("cancel", {"job": job}))
    assert worker.until_terminal(job, timeout=60)[0].event == "cancelled"
    assert not library.exists()
    info = read_checkpoint(library)
    assert info is not None and info.phase in ("coarse", "detail") and info.fraction is not None and info.age_s < 60
    assert info.resumable_by_worker and info.request["names"] == ["brick"]
    assert json.loads((ckpt / JOB_REQUEST).read_text())["meshes"] == str(ckpt / JOB_MESHES)
    shutil.rmtree(meshes.parent)  # as Blender's job folder is, once the job ends

    again, _ = worker.until_terminal(worker.send(protocol.Request.of(encode)))
    assert again.event == "error" and "resume it" in again.get("message"), again.fields
    assert read_checkpoint(library).request == info.request, "a refused encode overwrote the kept request"

    resume = protocol.EncodeArgs.from_dict({**info.request, "resume": True})
    event, _ = worker.until_terminal(worker.send(protocol.Request.of(resume)))
    assert event.event == "result", event.fields
    assert library.is_file() and not ckpt.exists()  # a finished run leaves no checkpoint
    from backend.store.library import Library

    assert Library.load(library).history[-1]["coarse_steps"] == 60


def test_end_of_input_stops_the_worker(tmp_path):
    w = Worker(cwd=tmp_path)
    assert w.next(60).event == "hello"
    w.proc.stdin.close()
    assert w.proc.wait(30) == 0


def test_explore_and_the_detail_dial(worker, tmp_path):
    """Issue 9: ``detail`` reaches api.decode; ``explore`` varies, draws seeded variants, lists nearest shapes."""
    pytest.importorskip("backend.api")
    meshes = tmp_path / "in.npz"
    protocol.save_meshes(str(meshes), [_sphere(0.5), _box(), _sphere(0.3)])
    library = str(tmp_path / "lib.csdf")
    encode = protocol.EncodeArgs(str(meshes), ["ball", "brick", "pea"], library, preset="tiny", steps=30, device="cpu")
    assert worker.until_terminal(worker.send(protocol.Request.of(encode)))[0].event == "result"

    def run(args: protocol.RequestArgs) -> dict:
        event, _ = worker.until_terminal(worker.send(protocol.Request.of(args)))
        assert event.event == "result", event.fields
        return event.get("data")

    def vertices(path) -> np.ndarray:
        return protocol.load_meshes(str(path), 1)[0]["vertices"]

    blend = {"ball": 0.8, "brick": 0.2}
    decoded = {}
    for detail in (0.0, 1.0):
        out = tmp_path / f"blend_{detail}.npz"
        run(protocol.DecodeArgs(library, [protocol.DecodeItem(blend, str(out))], resolution=32, detail=detail, device="cpu"))
        decoded[detail] = vertices(out)
    assert decoded[0.0].shape != decoded[1.0].shape or not np.allclose(decoded[0.0], decoded[1.0]), "detail has no effect"
    strip = run(protocol.InterpolateArgs(library, ["ball", "brick"], 3, str(tmp_path), resolution=32,
                                         detail=0.0, device="cpu", pace="even"))
    assert len(strip["items"]) == 3
    middle = strip["items"][1]["stats"]
    assert 0 < middle["path_position"] < 1 and middle["weights"]["brick"] == pytest.approx(middle["path_position"])

    def explore(name: str, **kwargs) -> dict:
        return run(protocol.ExploreArgs(library, str(tmp_path / f"{name}.npz"), resolution=32, device="cpu", **kwargs))

    shape = run(protocol.DecodeArgs(library, [protocol.DecodeItem("ball", str(tmp_path / "ball.npz"))], resolution=32,
                                    device="cpu"))
    same = explore("same", base="ball", amounts=[0.0, 0.0, 0.0, 0.0, 0.0])  # zeros past the directions are ignored
    assert np.array_equal(vertices(tmp_path / "same.npz"), vertices(tmp_path / "ball.npz")), "an unmoved shape is exact"
    assert same["faces"] == shape["items"][0]["faces"]
    assert same["nearest"][0] == ["ball", 0.0] and len(same["nearest"]) == 3 and same["directions"] == 2
    moved = explore("moved", base="ball", amounts=[2.0, -1.0], nearest=2)
    assert len(moved["code"]) == len(same["code"]) and not np.allclose(moved["code"], same["code"])
    assert len(moved["nearest"]) == 2 and moved["nearest"][0][1] > 0
    again = explore("again", base="ball", code=moved["code"], amounts=[2.0, -1.0])
    assert again["code"] == moved["code"]
    assert np.array_equal(vertices(tmp_path / "again.npz"), vertices(tmp_path / "moved.npz")), "a raw code re-decodes"
    seeds = [explore(f"seed{i}", seed=seed, base="brick")["code"] for i, seed in enumerate((7, 7, 8))]
    assert seeds[0] == seeds[1] and seeds[0] != seeds[2]
    assert np.array_equal(vertices(tmp_path / "seed0.npz"), vertices(tmp_path / "seed1.npz"))
    mean = explore("mean")
    assert mean["faces"] > 0 and mean["target"] == "variant"

    bad = protocol.Request("explore", {"library": library, "out": str(tmp_path / "x.npz"), "detail": 2})
    event, _ = worker.until_terminal(worker.send(bad))
    assert event.event == "error" and event.get("kind") == "Protocol" and "detail" in event.get("message")
    too_many = protocol.ExploreArgs(library, str(tmp_path / "y.npz"), amounts=[0, 0, 1.0], resolution=32, device="cpu")
    event, _ = worker.until_terminal(worker.send(protocol.Request.of(too_many)))
    assert event.event == "error" and event.get("kind") == "BadInput" and "principal directions" in event.get("message")
