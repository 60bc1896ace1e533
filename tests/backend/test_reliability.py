"""Issue 11: every bad input and fault ends in a clear error or a correct result, nothing lost.

Unit tests of each audited case on real files; the property-based and fault-injection suites
live in ``test_reliability_props.py`` and ``test_reliability_faults.py``.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from safetensors.torch import save_file

from backend.api import _blend, decode, encode, invert
from backend.atomic_io import atomic_write, clean_stale_temps, file_lock, temp_files
from backend.interfaces.cli import EXIT_ERROR, main
from backend.errors import BadInputError, BadMeshError, BadNameError, Cancelled, CompactSdfError, LibraryError
from backend.store.library import Library
from backend.store.library_meta import read_library_meta
from backend.geometry.meshes import Mesh, load_mesh, normalization, validate_mesh
from backend.names import safe_file_stem, validate_shape_name
from backend.interfaces.protocol import ProtocolError, parse_request

REPO = Path(__file__).resolve().parents[2]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def sample_cache(tmp_path_factory) -> Path:
    """The ground-truth sample cache of this module's encodes (sphere, tiny preset, seed 0)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def small_library(data_dir, sample_cache) -> Path:
    """A one-shape 'tiny' library saved to disk (5 training steps: seconds)."""
    lib = encode({"sphere": load_mesh(data_dir / "sphere.obj")}, preset="tiny", steps=5, device="cpu", cache_dir=sample_cache)
    path = sample_cache.parent / "small.csdf"
    lib.save(path)
    return path


def _write_library(path: Path, meta: dict, tensors: dict[str, torch.Tensor]) -> Path:
    save_file(tensors, path, metadata={"compact_sdf": json.dumps(meta)})
    return path


def _forge(src: Path, dst: Path, change_meta=None, change_tensors=None) -> Path:
    """A copy of library ``src`` at ``dst`` with its metadata and/or tensors edited."""
    lib = Library.load(src)
    meta = lib.metadata()
    tensors, _ = lib.tensors()  # codes, network weights and each shape's stored detail (format 2)
    if change_meta:
        change_meta(meta)
    if change_tensors:
        change_tensors(tensors)
    return _write_library(dst, meta, tensors)


def _write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    """An OBJ file with full float64 precision (trimesh's exporter rounds to fixed decimals)."""
    with path.open("w") as handle:
        handle.writelines(f"v {x!r} {y!r} {z!r}\n" for x, y, z in np.asarray(vertices, dtype=np.float64).tolist())
        handle.writelines(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in np.asarray(faces).tolist())
    return path


# -- atomic saves ------------------------------------------------------------------------------

def test_new_file_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "new.bin", lambda tmp: tmp.write_bytes(b"x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o644


def test_replaced_file_keeps_mode_and_symlink_stays_a_link(tmp_path):
    target = tmp_path / "real.bin"
    target.write_bytes(b"old")
    target.chmod(0o640)
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    written = atomic_write(link, lambda tmp: tmp.write_bytes(b"new"))
    assert written == target.resolve()
    assert link.is_symlink() and target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert not temp_files(target)


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"old" and not temp_files(path)


def test_stale_temps_of_dead_writers_are_cleaned(tmp_path):
    path = tmp_path / "lib.csdf"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".lib.csdf.{int(dead.stdout)}.abcd.csdf-tmp"
    live = tmp_path / f".lib.csdf.{os.getpid()}.beef.csdf-tmp"
    old_live = tmp_path / f".lib.csdf.{os.getpid()}.0ld0.csdf-tmp"
    other = tmp_path / ".other.csdf.1.abcd.csdf-tmp"
    for p in (stale, live, old_live, other):
        p.write_bytes(b"leftover")
    os.utime(old_live, (time.time() - 3600, time.time() - 3600))
    atomic_write(path, lambda tmp: tmp.write_bytes(b"lib"))
    assert sorted(p.name for p in temp_files(path)) == [live.name]  # a live writer's fresh file is kept
    assert other.exists()  # another file's temporaries are not ours to judge
    assert clean_stale_temps(path, grace_s=0) == [live]


def test_lock_wait_can_be_cancelled(tmp_path):
    path = tmp_path / "lib.csdf"
    with file_lock(path):  # a second open file description conflicts even within one process
        with pytest.raises(Cancelled, match="waiting"):
            with file_lock(path, should_stop=lambda: True):
                pass
    with file_lock(path):  # released: free again
        pass


def test_library_save_is_atomic_write(tiny_library, tmp_path):
    path = tmp_path / "lib.csdf"
    link = tmp_path / "alias.csdf"
    path.write_bytes(b"placeholder")
    link.symlink_to(path)
    tiny_library.save(link)
    assert link.is_symlink() and Library.load(link).names == tiny_library.names


# -- names --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["", " pad", "pad ", "../../evil", "a/b", "a\\b", "/etc/passwd", "C:evil", "..",
                                  "x\x00y", "tab\there", "x" * 129, 5])
def test_bad_shape_names_rejected(name):
    with pytest.raises(BadNameError, match="shape name") as info:
        validate_shape_name(name)
    assert "use a plain label" in str(info.value)


@pytest.mark.parametrize("name", ["chair_01", "Suzanne.001", "stool (old)", "Ä-π", "x" * 128])
def test_good_shape_names_kept(name):
    assert validate_shape_name(name) == name


@pytest.mark.parametrize("name", ["../../evil", "/abs/path", "..", "a:b", "CON", "  ", "x\x00y", "..\\..\\w"])
def test_safe_file_stem_stays_in_its_directory(tmp_path, name):
    stem = safe_file_stem(name)
    assert stem and (tmp_path / f"{stem}.obj").resolve().parent == tmp_path.resolve()


def test_api_refuses_path_names(sphere_mesh, tiny_library):
    with pytest.raises(BadNameError, match="path separator"):
        encode({"../../evil": sphere_mesh}, preset="tiny", steps=1, device="cpu")
    with pytest.raises(BadNameError, match="'..'"):
        invert(tiny_library, sphere_mesh, "..", steps=1, device="cpu")


def test_cli_invert_refuses_traversal_name(small_library, tmp_path, data_dir, capsys):
    out = tmp_path / "out.csdf"
    code = main(["-q", "invert", str(small_library), str(data_dir / "torus.obj"), "--name", "../../evil", "-o", str(out)])
    assert code == EXIT_ERROR and "path separator" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("bad", ["../../evil", "/tmp/evil", "a\x01b", ""])
def test_library_with_bad_name_refused_on_load(small_library, tmp_path, bad):
    path = _forge(small_library, tmp_path / "evil.csdf", lambda m: m["shapes"][0].update(name=bad))
    for read in (read_library_meta, Library.load):
        with pytest.raises(LibraryError, match="invalid shape name"):
            read(path)


def test_decode_all_writes_only_inside_output_dir(small_library, tmp_path):
    out = tmp_path / "out"
    assert main(["-q", "decode", str(small_library), "--all", "-o", str(out), "--resolution", "32", "--format", "ply"]) == 0
    assert [p.name for p in out.iterdir()] == ["sphere.ply"]


# -- library metadata -----------------------------------------------------------------------------

def _meta_only(path: Path, meta_text: str) -> Path:
    """A safetensors file with no tensors and ``meta_text`` as the library metadata."""
    header = json.dumps({"__metadata__": {"compact_sdf": meta_text}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


def test_deeply_nested_metadata(tmp_path):
    nested = '{"format": "compact-sdf-library", "format_version": 1, "shapes": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(LibraryError, match="nested too deeply"):
        read_library_meta(_meta_only(tmp_path / "deep.csdf", nested))
    header = ("[" * 100_000 + "]" * 100_000).encode()
    deep_header = tmp_path / "deep-header.csdf"
    deep_header.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(LibraryError, match="nested too deeply"):
        Library.load(deep_header)


@pytest.mark.parametrize("change", [
    lambda m: m.update(shapes="sphere"),
    lambda m: m.update(shapes=[["sphere"]]),
    lambda m: m.update(model=[64]),
    lambda m: m.update(history=7),
    lambda m: m["shapes"][0].update(stats=[1, 2]),
    lambda m: m["shapes"][0].update(transform=[0, 0, 0]),
    lambda m: m["shapes"][0].pop("transform"),
    lambda m: m["model"].update(code_size="16"),
    lambda m: m["model"].update(code_size=True),
    lambda m: m.pop("model"),
    lambda m: m.update(format_version="1"),
])
def test_wrong_types_and_missing_keys(small_library, tmp_path, change):
    path = _forge(small_library, tmp_path / "bad.csdf", change)
    with pytest.raises(LibraryError) as info:
        Library.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("section, key, value", [
    ("model", "coarse_width", 200_000), ("model", "grid_resolution", 4096), ("model", "code_size", 10**9),
    ("model", "coarse_depth", 1000), ("model", "grid_channels", -1), ("sample", "uniform_points", 10**12),
    ("train", "detail_batch", 10**10),
])
def test_absurd_declared_sizes_refused_before_allocation(small_library, tmp_path, section, key, value):
    path = _forge(small_library, tmp_path / "big.csdf", lambda m: m[section].update({key: value}))
    start = time.perf_counter()
    with pytest.raises(LibraryError, match=f"{section}.{key}"):
        Library.load(path)
    assert time.perf_counter() - start < 1.0


def test_declared_networks_larger_than_file_refused(small_library, tmp_path):
    """Within the bounds, yet a few-hundred-kB file cannot hold 8 layers of 8192 x 8192 weights."""
    path = _forge(small_library, tmp_path / "wide.csdf", lambda m: m["model"].update(coarse_width=8192, coarse_depth=8))
    with pytest.raises(LibraryError, match="more than the whole file"):
        read_library_meta(path)


def test_misleading_tensor_messages_fixed(small_library, tmp_path):
    def int_bias(t: dict) -> None:
        t["coarse.out.bias"] = t["coarse.out.bias"].to(torch.int32)

    def int64_nodes(t: dict) -> None:
        t["shape0.nodes"] = t["shape0.nodes"].to(torch.int64)

    with pytest.raises(LibraryError, match="dtype") as info:
        Library.load(_forge(small_library, tmp_path / "a.csdf", change_tensors=int_bias))
    assert "int32" in str(info.value) and "float16" in str(info.value)  # networks are float16 from format 4
    with pytest.raises(LibraryError, match="dtype") as info:
        Library.load(_forge(small_library, tmp_path / "b.csdf", change_tensors=int64_nodes))
    assert "shape0.nodes" in str(info.value) and "int64" in str(info.value) and "missing" not in str(info.value)
    with pytest.raises(LibraryError, match="codes .*float32"):
        Library.load(_forge(small_library, tmp_path / "c.csdf", change_tensors=lambda t: t.update(codes=t["codes"].double())))
    with pytest.raises(LibraryError, match="scales"):  # a shape's feature scales must be float32 too
        Library.load(_forge(small_library, tmp_path / "d.csdf",
                            change_tensors=lambda t: t.update({"shape0.scales": t["shape0.scales"].double()})))


def test_info_on_incomplete_metadata(small_library, tmp_path, capsys):
    path = _forge(small_library, tmp_path / "nobytes.csdf", lambda m: m.pop("bytes"))
    assert main(["info", str(path)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "incomplete or malformed" in err and "bytes" in err and "Traceback" not in err


# -- meshes -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("transform", [lambda v: v * 1e30, lambda v: v * 1e-30, lambda v: v + 1e12, lambda v: v * 1e-30 - 5e-28])
def test_extreme_scales_and_offsets_load_correctly(tmp_path, transform):
    ico = trimesh.creation.icosphere(subdivisions=2)
    path = _write_obj(tmp_path / "ico.obj", transform(ico.vertices), ico.faces)
    mesh = validate_mesh(load_mesh(path))
    assert len(mesh.vertices) == len(ico.vertices) and len(mesh.faces) == len(ico.faces)
    ref = normalization(ico.vertices).apply(ico.vertices)
    got = normalization(mesh.vertices).apply(mesh.vertices)
    np.testing.assert_allclose(np.sort(got, axis=0), np.sort(ref, axis=0), atol=1e-3)


def test_split_vertices_still_merged(tmp_path, data_dir):
    """Vertices repeated per face (as exporters write them for UVs) merge back into a closed mesh."""
    ico = trimesh.creation.icosphere(subdivisions=1)
    soup = ico.vertices[ico.faces].reshape(-1, 3)
    mesh = load_mesh(_write_obj(tmp_path / "soup.obj", soup, np.arange(len(soup)).reshape(-1, 3)))
    assert len(mesh.vertices) == len(ico.vertices)


@pytest.mark.parametrize("vertices, faces, match", [
    ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], "no volume"),
    ([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], [[0, 1, 2], [1, 3, 2], [0, 2, 3]], "all faces lie in one plane"),
    ([[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]], [[0, 1, 2]], "NaN or infinite"),
    ([[0, 0, 0], [1, 0, 0], [np.inf, 1, 0]], [[0, 1, 2]], "NaN or infinite"),
    ([[0, 0, 0], [1e200, 0, 0], [0, 1, 0]], [[0, 1, 2]], "scale the mesh down"),
    ([[1, 1, 1]] * 3, [[0, 1, 2]], "no size"),
    ([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 1, 2]], "degenerate"),
    ([[0, 0, 0], [1e-320, 0, 0], [0, 1e-320, 0]], [[0, 1, 2]], "too small"),
])
def test_unusable_meshes_rejected(vertices, faces, match):
    with pytest.raises(BadMeshError, match=match):
        validate_mesh(Mesh(np.array(vertices, dtype=np.float64), np.array(faces)))


def test_flat_mesh_rejected_at_encode(tmp_path, capsys):
    flat = _write_obj(tmp_path / "plane.obj", [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], [[0, 1, 2], [1, 3, 2]])
    out = tmp_path / "plane.csdf"
    assert main(["-q", "encode", str(flat), "-o", str(out), "--preset", "tiny", "--steps", "1"]) == EXIT_ERROR
    assert "no volume" in capsys.readouterr().err and not out.exists()


def test_mesh_path_is_a_directory(tmp_path):
    folder = tmp_path / "meshes.obj"
    folder.mkdir()
    with pytest.raises(BadMeshError, match="is a directory, not a mesh file"):
        load_mesh(folder)


@pytest.mark.parametrize("vertices, faces", [([1, 2], [[0, 1, 2]]), ([[0, 0, 0]], [0, 1]), ([["a", "b", "c"]], [[0, 0, 0]])])
def test_malformed_arrays(vertices, faces):
    with pytest.raises(BadMeshError):
        Mesh(vertices, faces)


# -- CLI output paths ---------------------------------------------------------------------------------

def test_encode_output_is_a_directory(tmp_path, data_dir, capsys):
    code = main(["-q", "encode", str(data_dir / "sphere.obj"), "-o", str(tmp_path), "--preset", "tiny", "--steps", "1"])
    assert code == EXIT_ERROR and "is a directory" in capsys.readouterr().err


def test_encode_output_under_a_file(tmp_path, data_dir, capsys):
    (tmp_path / "file").write_text("x")
    start = time.perf_counter()
    code = main(["-q", "encode", str(data_dir / "sphere.obj"), "-o", str(tmp_path / "file" / "lib.csdf"), "--preset", "tiny",
                 "--cache", str(tmp_path / "cache")])
    assert code == EXIT_ERROR and "not a directory" in capsys.readouterr().err
    assert time.perf_counter() - start < 5 and not (tmp_path / "cache").exists()  # refused before sampling


@pytest.mark.skipif(IS_ROOT or os.name == "nt", reason="root may write anywhere; POSIX permissions")
def test_encode_unwritable_directory_checked_before_training(tmp_path, data_dir, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code = main(["-q", "encode", str(data_dir / "sphere.obj"), "-o", str(locked / "lib.csdf"), "--preset", "tiny",
                     "--cache", str(tmp_path / "cache")])
    finally:
        locked.chmod(0o700)
    assert code == EXIT_ERROR and "no write permission" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


@pytest.mark.skipif(os.name == "nt", reason="RLIMIT_FSIZE is POSIX")
def test_disk_full_while_saving(small_library, sample_cache, tmp_path, data_dir):
    """A write limit below the library's size (as a full disk): exit 1, a clear message, nothing left.

    The sphere's samples are already cached, so the first large write is the library's.
    """
    out = tmp_path / "out.csdf"
    # Half the incompressible network weights: any library of this preset is larger, however well
    # its (barely trained, 1-step) detail features compress.
    limit = Library.load(small_library).shared_bytes() // 2
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "from backend.interfaces.cli import main\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit},) * 2)\n"
        f"sys.exit(main(['-q', 'encode', {str(data_dir / 'sphere.obj')!r}, '-o', {str(out)!r}, '--preset', 'tiny',"
        f" '--steps', '1', '--cache', {str(sample_cache)!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == EXIT_ERROR, proc.stderr
    assert "could not write" in proc.stderr and "File too large" in proc.stderr and "Traceback" not in proc.stderr
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


# -- blends and the worker protocol ---------------------------------------------------------------------

@pytest.mark.parametrize("weights", [{"sphere": 1e308, "torus": 1e308}, {"sphere": float("nan")}, {"sphere": float("inf")},
                                     {"sphere": -1.0, "torus": 2.0}, {"sphere": 0.0}])
def test_bad_blend_weights(tiny_library, weights):
    with pytest.raises(BadInputError, match="blend weights"):
        _blend(tiny_library, weights, "slerp")
    with pytest.raises(CompactSdfError):
        decode(tiny_library, weights, resolution=16)


@pytest.mark.parametrize("line", ["[" * 100_000, '{"v": 1, "id": "a", "cmd": "probe", "args": ' + "[" * 50_000 + "]" * 50_000 + "}",
                                  '{"v": 1, "id": "a", "cmd": "probe", "x": ' + "9" * 5000 + "}", b"\xff\xfe", "NaN", "{}",
                                  '{"v": 1, "id": 3, "cmd": "probe"}', '{"v": 1, "id": "a", "cmd": ["probe"]}',
                                  '{"v": 1, "id": "a", "cmd": {"x": 1}}', '{"v": 1, "id": "a", "cmd": "probe", "args": []}'])
def test_malformed_requests_are_protocol_errors(line):
    with pytest.raises(ProtocolError):
        parse_request(line)
