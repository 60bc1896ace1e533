"""WorkerClient (the Blender side of the protocol) against the real worker and scripted fakes."""

from __future__ import annotations

import os
import signal
import sys

import pytest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="fake interpreters are shell scripts")


@pytest.fixture
def wc(addon):
    return addon.worker_client


@pytest.fixture
def protocol(addon):
    return addon.backend.interfaces.protocol


def _fake_python(tmp_path, script: str):
    """An 'interpreter' that ignores its arguments and runs a shell script instead."""
    path = tmp_path / "fake-python"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return str(path)


def test_real_worker_hello_jobs_and_stop(wc, protocol, tmp_path):
    client = wc.WorkerClient(sys.executable, tmp_path / "worker.log")
    hello = client.start()
    assert hello["protocol"] == 1 and hello["python"] == sys.executable and client.alive
    job = client.submit(protocol.DecodeArgs(str(tmp_path / "missing.csdf"), []))
    seen = []
    event = client.wait(job, on_event=seen.append)
    assert event.event == "error" and event.get("kind") == "LibraryError" and seen[-1] is event
    assert client.poll(job) == [], "a finished job is forgotten"
    bad = client.submit(protocol.DecodeArgs(str(tmp_path / "lib.csdf"), [], resolution="high"))
    event = client.wait(bad)
    assert event.event == "error" and event.get("kind") == "Protocol" and "decode.resolution" in event.get("message")
    client.stop()
    assert not client.alive


def test_protocol_mismatch_is_refused(wc, tmp_path):
    python = _fake_python(tmp_path, """echo '{"v":1,"id":"","event":"hello","protocol":7}'
sleep 30
""")
    client = wc.WorkerClient(python, tmp_path / "worker.log", startup_timeout=10)
    with pytest.raises(wc.WorkerError, match="protocol 7"):
        client.start()
    assert not client.alive


def test_worker_that_dies_at_start_is_explained(wc, tmp_path):
    python = _fake_python(tmp_path, "echo 'ImportError: something broke' >&2\nexit 3\n")
    client = wc.WorkerClient(python, tmp_path / "worker.log", startup_timeout=10)
    with pytest.raises(wc.WorkerError, match=r"exited with code 3.*something broke"):
        client.start()


def test_silent_worker_times_out(wc, tmp_path):
    client = wc.WorkerClient(_fake_python(tmp_path, "sleep 30\n"), tmp_path / "worker.log", startup_timeout=0.5)
    with pytest.raises(wc.WorkerError, match="sent no greeting"):
        client.start()
    assert not client.alive


def test_missing_interpreter(wc, tmp_path):
    with pytest.raises(wc.WorkerError, match="Backend Python not found"):
        wc.WorkerClient(str(tmp_path / "nope"), tmp_path / "worker.log").start()


def test_crash_and_kill_finish_pending_jobs(wc, protocol, tmp_path):
    python = _fake_python(tmp_path, """echo '{"v":1,"id":"","event":"hello","protocol":1}'
cat >/dev/null
""")
    client = wc.WorkerClient(python, tmp_path / "worker.log", startup_timeout=10)
    client.start()
    job = client.submit(protocol.ProbeArgs())
    os.kill(client._proc.pid, signal.SIGKILL)
    event = client.wait(job)
    assert event.event == "error" and event.get("kind") == "WorkerCrashed" and "-9" in event.get("message")
    late = client.submit(protocol.ProbeArgs())
    assert client.wait(late).get("kind") == "WorkerCrashed", "submitting to a dead worker still ends"

    client = wc.WorkerClient(python, tmp_path / "worker.log", startup_timeout=10)
    client.start()
    job = client.submit(protocol.ProbeArgs())
    client.kill()
    event = client.wait(job)
    assert event.event == "cancelled" and "nothing was written" in event.get("message")


def test_wait_sends_cancel_and_kills_after_the_grace_period(wc, protocol, tmp_path):
    python = _fake_python(tmp_path, """echo '{"v":1,"id":"","event":"hello","protocol":1}'
cat >/dev/null
""")
    client = wc.WorkerClient(python, tmp_path / "worker.log", startup_timeout=10)
    client.start()
    job = client.submit(protocol.EncodeArgs("m.npz", ["a"], "out.csdf"))
    event = client.wait(job, should_cancel=lambda: True, cancel_grace_s=0.3)
    assert event.event == "cancelled"
    assert not client.alive
