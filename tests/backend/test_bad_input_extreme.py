"""Bad inputs that used to get through (issue 22, item 5): meshes far from the origin or tiny, lattices
larger than memory, newer library formats, forged per-shape data, and full disks."""

import errno
import struct

import numpy as np
import pytest
import torch
import zstandard

import backend.memory
from backend.api import decode, encode
from backend.config import SampleConfig
from backend.errors import BadInputError, BadMeshError, LibraryError
from backend.field.codec import DetailCodec
from backend.geometry.meshes import Mesh, Normalization, load_mesh, normalization, save_mesh, validate_mesh
from backend.geometry.sampling import cached_samples
from backend.interfaces.cli import EXIT_ERROR, main
from backend.store.library import Library
from backend.store.library_meta import FORMAT_VERSION, read_library_meta


def _box_error(vertices, source):
    """Largest distance between the corners of two bounding boxes, relative to the source's extent."""
    lo, hi = source.min(0), source.max(0)
    return max(np.abs(vertices.min(0) - lo).max(), np.abs(vertices.max(0) - hi).max()) / np.ptp(source, axis=0).max()


# -- far from the origin, or tiny: coordinates stay exact end to end ---------------------------------------------

@pytest.mark.parametrize("name, move", [("far", lambda v: v + 1e12), ("farish", lambda v: v + (5e10, -5e10, 5e10)),
                                        ("tiny", lambda v: v * 1e-30)])
def test_extreme_meshes_come_back_with_their_box(sphere_mesh, tmp_path, name, move):
    source = move(sphere_mesh.vertices)
    lib = encode({name: Mesh(source, sphere_mesh.faces)}, preset="tiny", steps=30, device="cpu")
    mesh = decode(lib, name, resolution=48)
    assert mesh.vertices.dtype == np.float64
    assert _box_error(mesh.vertices, source) < 0.02  # was 0.5 to 2,050 extents off through float32
    for fmt in ("obj", "ply", "off"):  # written with every digit the mesh needs, and read back
        path = tmp_path / f"{name}.{fmt}"
        save_mesh(path, mesh.vertices, mesh.faces, mesh.normals)
        assert _box_error(load_mesh(path).vertices, source) < 0.02, fmt
    if name == "tiny":  # float32 holds a 1e-30 scale, not a 1e12 offset: STL is refused there, with the reason
        save_mesh(tmp_path / "tiny.stl", mesh.vertices, mesh.faces)
        assert _box_error(load_mesh(tmp_path / "tiny.stl").vertices, source) < 0.02
    else:
        with pytest.raises(BadMeshError, match="STL stores 32-bit coordinates.*write OBJ, PLY or OFF"):
            save_mesh(tmp_path / f"{name}.stl", mesh.vertices, mesh.faces)
        assert not list(tmp_path.glob("*.stl")) and not list(tmp_path.glob(".*"))


def test_obj_text_is_exact_to_the_mesh_size(tmp_path):
    local = np.array([[0.123456789, 0, 0], [0, 1.5, 0], [0, 0, 1.25], [1, 1, 1]])
    faces = np.array([[0, 1, 2], [0, 3, 1], [1, 3, 2], [0, 2, 3]])
    save_mesh(tmp_path / "t.obj", local + 1e12, faces)
    back = np.array([[float(x) for x in line.split()[1:]] for line in (tmp_path / "t.obj").read_text().splitlines()
                     if line.startswith("v ")])
    np.testing.assert_array_equal(back, local + 1e12)  # 17 digits where the offset needs them
    save_mesh(tmp_path / "u.obj", local, faces)
    assert (tmp_path / "u.obj").read_text().splitlines()[1] == "v 0.123456789 0 0"  # no more digits than needed


def test_mesh_too_small_for_float64_is_refused_with_the_reason(sphere_mesh):
    with pytest.raises(BadMeshError, match="too small to normalise"):
        validate_mesh(Mesh(sphere_mesh.vertices * 1e-200, sphere_mesh.faces))
    validate_mesh(Mesh(sphere_mesh.vertices * 1e-100, sphere_mesh.faces))


# -- lattices larger than memory: refused before anything is allocated --------------------------------------------

def test_available_memory_is_known_here():
    available = backend.memory.available_bytes()
    assert available is None or available > 0


@pytest.mark.parametrize("target, mode, kind", [("sphere", "slerp", "shape"), ({"sphere": 0.5, "torus": 0.5}, "slerp", "codes"),
                                                ({"sphere": 0.5, "torus": 0.5}, "distance", "fields")])
def test_decode_larger_than_memory_is_refused(tiny_library, monkeypatch, target, mode, kind):
    monkeypatch.setattr(backend.memory, "available_bytes", lambda: 200 * 10**6)
    with pytest.raises(BadInputError, match=r"decoding at 1024³ needs about .* GB of memory, but only 200.0 MB is "
                                            r"available; lower the resolution \(about \d+ fits now\)"):
        decode(tiny_library, target, resolution=1024, mode=mode)
    monkeypatch.setattr(backend.memory, "available_bytes", lambda: None)  # unknown: never guessed, not refused
    assert len(decode(tiny_library, target, resolution=24, mode=mode).faces)


def test_cli_decode_and_eval_larger_than_memory_fail_clearly(saved, tmp_path, data_dir, monkeypatch, capsys):
    monkeypatch.setattr(backend.memory, "available_bytes", lambda: 2 * 10**9)
    out = tmp_path / "out"
    assert main(["-q", "decode", str(saved), "--all", "-o", str(out), "--resolution", "1024"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "decoding at 1024³ needs about 30.1 GB of memory, but only 2.0 GB is available" in err
    assert "MemoryError" not in err and not list(out.iterdir())
    sphere = str(data_dir / "sphere.obj")
    assert main(["eval", sphere, sphere, "--resolution", "1668"]) == EXIT_ERROR
    assert "the oracle mesh at 1668³ needs about 55.7 GB of memory" in capsys.readouterr().err


# -- a newer library format ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, FORMAT_VERSION + 0.5, 99])
def test_newer_format_is_refused_everywhere(forge, saved, tmp_path, capsys, version):
    path = forge(saved, tmp_path / "newer.csdf", lambda m: m.update(format_version=version))
    message = rf"written by a newer Compact SDF \(format {version}, this one reads up to format {FORMAT_VERSION}\); upgrade"
    with pytest.raises(LibraryError, match=message):
        read_library_meta(path)  # the torch-free reader Blender lists shapes with
    with pytest.raises(LibraryError, match=message):
        Library.load(path)
    assert main(["-q", "decode", str(path), "--all", "-o", str(tmp_path / "out")]) == EXIT_ERROR
    assert "written by a newer Compact SDF" in capsys.readouterr().err


# -- forged per-shape data ----------------------------------------------------------------------------------------

def _append_frame(name, last_stream_too=False):
    """A change that appends a second zstd frame to the blob ``name`` (and, with ``last_stream_too``,
    to the length of the last channel's stream in its shape's table, so the table still adds up)."""
    def change(tensors):
        extra = zstandard.ZstdCompressor().compress(b"\xff" * 64)
        tensors[name] = torch.frombuffer(bytearray(tensors[name].numpy().tobytes() + extra), dtype=torch.uint8)
        if last_stream_too:
            table = name.replace("features", "streams")
            entries = list(struct.iter_unpack("<BI", tensors[table].numpy().tobytes()))
            entries[-1] = (entries[-1][0], entries[-1][1] + len(extra))
            packed = b"".join(struct.pack("<BI", *entry) for entry in entries)
            tensors[table] = torch.frombuffer(bytearray(packed), dtype=torch.uint8)
    return change


def _transform(**fields):
    return lambda m: m["shapes"][0]["transform"].update(fields)


@pytest.mark.parametrize("change_meta, change_tensors, match", [
    (None, lambda t: t.update({"shape0.scales": -t["shape0.scales"]}), "scales are invalid"),
    (None, lambda t: t.update({"shape0.scales": torch.zeros(4)}), "scales are invalid"),
    (None, lambda t: t.update({"shape1.scales": torch.tensor([1.0, float("nan"), 1.0, 1.0])}), "scales are invalid"),
    (None, _append_frame("shape0.nodes"), "node mask is corrupt"),
    (None, _append_frame("shape1.features"), "stream table does not add up"),
    (None, _append_frame("shape1.features", last_stream_too=True), "channel 3 is corrupt"),
    (_transform(center=["1", "2", "3"]), None, "centre of three numbers"),
    (_transform(center=[True, False, True]), None, "centre of three numbers"),
    (_transform(center=[0.0, 0.0]), None, "centre of three numbers"),
    (_transform(scale="0.9"), None, "numeric scale"),
    (_transform(scale=1e-320), None, "scale outside"),  # decoding would divide by it: infinite vertices
    (_transform(scale=1e-300), None, "scale outside"),
    (_transform(center=[1e300, 0.0, 0.0]), None, "centre beyond"),
    (lambda m: m["shapes"][0].update(nodes=float(m["shapes"][0]["nodes"])), None, "node count is not an integer"),
    (lambda m: m["shapes"][0].update(nodes=str(m["shapes"][0]["nodes"])), None, "node count is not an integer"),
    (lambda m: m["shapes"][0].update(nodes=True), None, "node count is not an integer"),
])
def test_forged_shape_data_is_a_library_error(forge, saved, tmp_path, change_meta, change_tensors, match):
    path = forge(saved, tmp_path / "forged.csdf", change_meta, change_tensors)
    with pytest.raises(LibraryError, match=match) as info:
        Library.load(path)
    assert str(path) in str(info.value)


def test_node_mask_beyond_its_lattice_is_refused():
    """9^3 = 729 nodes fill 91 bytes and one bit: the 7 spare bits of the last byte must stay clear."""
    codec = DetailCodec(8, 8, 3)
    keys = np.array([0, 5, 728])
    stored = codec.pack(keys, torch.ones(3, 2), 9)
    got, _ = codec.unpack(stored, 9, 2, 3, "shape")
    np.testing.assert_array_equal(got, keys)
    mask = bytearray(zstandard.ZstdDecompressor().decompress(stored["nodes"].tobytes()))
    mask[-1] |= 0x01  # node 735, beyond the lattice
    stored["nodes"] = np.frombuffer(zstandard.ZstdCompressor().compress(bytes(mask)), np.uint8)
    with pytest.raises(LibraryError, match="beyond its 9\\^3 lattice"):
        codec.unpack(stored, 9, 2, 3, "shape")


def test_corrupt_data_in_memory_fails_at_decode_not_as_a_mesh(tiny_library):
    lib = tiny_library.copy()
    lib.shapes[0].transform = Normalization((0.0, 0.0, 0.0), 1e-320)  # past from_dict's checks
    with pytest.raises(LibraryError, match="infinite coordinates"):
        decode(lib, "sphere", resolution=24)
    lib = tiny_library.copy()
    with torch.no_grad():
        lib.model.detail.grid.features.fill_(float("nan"))
    with pytest.raises(LibraryError, match="NaN or infinite distances"):
        decode(lib, "sphere", resolution=24)


# -- a full disk leaves no temporary file -----------------------------------------------------------------------

def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("fmt", ["obj", "ply", "stl"])
def test_full_disk_while_decoding_leaves_no_files(saved, tmp_path, monkeypatch, capsys, fmt):
    import backend.geometry.meshes as meshes
    import trimesh

    def half_then_full(original):
        def write(first, tmp, *args, **kwargs):
            original(first, tmp, *args, **kwargs)
            with open(tmp, "r+b") as handle:  # the disk "fills" halfway through the file
                handle.truncate(handle.seek(0, 2) // 2)
            _disk_full()
        return write

    if fmt == "stl":  # written by trimesh: Trimesh.export(self, tmp, file_type=...)
        monkeypatch.setattr(trimesh.Trimesh, "export", half_then_full(trimesh.Trimesh.export))
    else:  # _write_obj(tmp, vertices, ...)
        original = getattr(meshes, f"_write_{fmt}")
        monkeypatch.setattr(meshes, f"_write_{fmt}", lambda tmp, *a: half_then_full(lambda _, t, *b: original(t, *b))(None, tmp, *a))
    out = tmp_path / "out"
    assert main(["-q", "decode", str(saved), "--all", "-o", str(out), "--resolution", "24", "--format", fmt]) == EXIT_ERROR
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == []  # neither a partial mesh nor a temporary file


def test_full_disk_while_caching_samples_leaves_no_files(sphere_mesh, tmp_path, monkeypatch):
    normalized = Mesh(normalization(sphere_mesh.vertices).apply(sphere_mesh.vertices), sphere_mesh.faces)
    config = SampleConfig(grid_resolution=16, surface_points=500, wide_points=100, uniform_points=500)
    savez = np.savez

    def partial_savez(handle, **arrays):
        handle.write(b"PK\x03\x04 half an archive")
        _disk_full()

    monkeypatch.setattr(np, "savez", partial_savez)
    with pytest.raises(OSError, match="No space left"):
        cached_samples(normalized, config, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.setattr(np, "savez", savez)
    first = cached_samples(normalized, config, tmp_path / "cache")
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".npz"]
    np.testing.assert_array_equal(cached_samples(normalized, config, tmp_path / "cache").points, first.points)
