"""Scale-out (issue 12): a 2-rank gloo run under torchrun, kill -9 and resume, parallel sampling."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backend.api import decode, encode
from backend.field.checkpoint import checkpoint_path
from backend.config import get_preset
from backend.field.distributed import Cluster, check_shape_count
from backend.errors import BadInputError, Cancelled, CheckpointError
from backend.store.library import Library
from backend.geometry.meshes import Mesh, load_mesh, normalization
from backend.geometry.metrics import compare_meshes
from backend.geometry.procedural import procedural_collection, write_collection
from backend.progress import Reporter
from backend.geometry.sampling import sample_shapes

REPO = Path(__file__).resolve().parents[2]
#: One thread per process: two ranks on a 2-core runner do not oversubscribe it.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> tuple[Path, dict[str, Mesh]]:
    """Four procedural shapes written as OBJ files."""
    directory = tmp_path_factory.mktemp("collection")
    meshes = procedural_collection(4, seed=3, resolution=32)
    write_collection(meshes, directory)
    return directory, {name: load_mesh(directory / f"{name}.obj") for name in meshes}


def _encode_cli(collection: tuple[Path, dict[str, Mesh]], output: Path, *extra: str, ranks: int = 1,
                wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    directory, meshes = collection
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] if ranks > 1 else [sys.executable]
    cmd = [*launcher, "-m", "backend", "-q", "encode", *(str(directory / f"{n}.obj") for n in meshes), "-o", str(output),
           "--preset", "tiny", "--cache", str(output.parent / "cache"), *extra]
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)


def _mean_cd(library: Library, meshes: dict[str, Mesh]) -> float:
    cds = []
    for name, mesh in meshes.items():
        rec = decode(library, name, resolution=48)
        cds.append(compare_meshes(mesh, Mesh(rec.vertices, rec.faces), n_samples=20_000).cd_l1)
    return float(np.mean(cds))


@pytest.fixture(scope="module")
def single_run(collection, tmp_path_factory) -> tuple[Library, float]:
    """The reference: one process, the same shapes, preset and seed."""
    out = tmp_path_factory.mktemp("single") / "one.csdf"
    done = _encode_cli(collection, out)
    assert done.returncode == 0, done.stdout + done.stderr
    library = Library.load(out)
    return library, _mean_cd(library, collection[1])


def test_two_gloo_ranks_match_one_process(collection, single_run, tmp_path):
    out = tmp_path / "two.csdf"
    done = _encode_cli(collection, out, ranks=2)
    assert done.returncode == 0, done.stdout + done.stderr
    library = Library.load(out)
    assert library.names == single_run[0].names
    assert library.history[-1]["world_size"] == 2 and single_run[0].history[-1]["world_size"] == 1
    assert library.history[-1]["detail_steps"] == single_run[0].history[-1]["detail_steps"]
    assert abs(_mean_cd(library, collection[1]) / single_run[1] - 1) < 0.10
    assert not checkpoint_path(out).exists()


def test_kill_9_then_resume_ends_as_good_as_an_uninterrupted_run(collection, single_run, tmp_path):
    out = tmp_path / "resumed.csdf"
    ckpt = checkpoint_path(out)
    job = _encode_cli(collection, out, "--checkpoint-every", "0.002", wait=False)
    deadline = time.monotonic() + 300
    while not (ckpt / "latest.json").is_file() or json.loads((ckpt / "latest.json").read_text())["phase"] != "detail":
        assert job.poll() is None and time.monotonic() < deadline, "no detail-phase checkpoint before the run ended"
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert not out.exists() and ckpt.is_dir()
    again = _encode_cli(collection, out)
    assert again.returncode == 1 and "--resume" in again.stderr
    resumed = _encode_cli(collection, out, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert not ckpt.exists()  # a finished run removes its checkpoint
    library = Library.load(out)
    assert library.history[-1]["detail_steps"] == single_run[0].history[-1]["detail_steps"]
    assert abs(_mean_cd(library, collection[1]) / single_run[1] - 1) < 0.10


def test_resume_refuses_other_runs_and_broken_checkpoints(sphere_mesh, torus_mesh, tmp_path):
    shapes = {"sphere": sphere_mesh, "torus": torus_mesh}
    ckpt = tmp_path / "lib.csdf.ckpt"
    options = dict(preset="tiny", steps=30, cache_dir=tmp_path / "cache", checkpoint=ckpt, sampling_workers=1)
    encode(shapes, checkpoint_every_s=0.0, **options)  # the API leaves the checkpoint to its caller
    assert (ckpt / "latest.json").is_file()
    with pytest.raises(CheckpointError, match="resume it"):
        encode(shapes, **options)
    with pytest.raises(CheckpointError, match="another run"):
        encode(shapes, seed=1, resume=True, **options)
    latest = json.loads((ckpt / "latest.json").read_text())
    (ckpt / "latest.json").write_text(json.dumps({**latest, "world_size": 2}))
    with pytest.raises(CheckpointError, match="nproc-per-node 2"):
        encode(shapes, resume=True, **options)
    (ckpt / "latest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable"):
        encode(shapes, resume=True, **options)
    (ckpt / "latest.json").write_text(json.dumps(latest))
    next(ckpt.glob("*.safetensors")).write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="unreadable"):
        encode(shapes, resume=True, **options)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        encode(shapes, resume=True, **{**options, "checkpoint": tmp_path / "none.ckpt"})


def test_parallel_sampling_equals_serial_bit_for_bit(collection):
    config = get_preset("tiny").sample
    meshes = []
    for mesh in collection[1].values():
        t = normalization(mesh.vertices)
        meshes.append(Mesh(t.apply(mesh.vertices), mesh.faces))
    serial = sample_shapes(meshes, config, None, seed=5, workers=1)
    parallel = sample_shapes(meshes, config, None, seed=5, workers=2)
    for a, b in zip(serial, parallel):
        for field in ("band_index", "band_sdf", "points", "points_sdf"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), field
        assert a.near_count == b.near_count


def test_parallel_sampling_cancels(collection):
    config = get_preset("tiny").sample
    meshes = [Mesh(m.vertices / np.abs(m.vertices).max(), m.faces) for m in collection[1].values()]
    answers = itertools.chain([False], itertools.repeat(True))  # stop once the pool is running
    with pytest.raises(Cancelled):
        sample_shapes(meshes, config, None, workers=2, reporter=Reporter(should_stop=lambda: next(answers)))


def test_shapes_are_split_between_ranks():
    ranks = [Cluster(r, 3) for r in range(3)]
    owned = [c.owned(8) for c in ranks]
    assert sorted(sum(owned, [])) == list(range(8)) and owned[1] == [1, 4, 7]
    assert all(c.owner(s) == c.rank for c in ranks for s in c.owned(8))
    with pytest.raises(BadInputError, match="every process needs at least one shape"):
        check_shape_count(Cluster(0, 4), 3)
