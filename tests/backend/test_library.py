"""Library files: exact round trip, atomic writes, and clear errors for every kind of bad file."""

import json
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from backend.api import decode
from backend.errors import LibraryError
from backend.library import Library
from backend.library_meta import read_library_meta


@pytest.fixture
def saved(tiny_library, tmp_path):
    path = tmp_path / "lib.csdf"
    tiny_library.save(path)
    return path


def test_round_trip_is_exact(tiny_library, saved):
    back = Library.load(saved)
    assert back.names == tiny_library.names
    torch.testing.assert_close(back.codes, tiny_library.codes, rtol=0, atol=0)
    for (k, a), (k2, b) in zip(tiny_library.model.state_dict().items(), back.model.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert back.shapes[1].transform == tiny_library.shapes[1].transform
    a = decode(tiny_library, "torus", resolution=40)
    b = decode(back, "torus", resolution=40)
    np.testing.assert_array_equal(a.vertices, b.vertices)
    assert not list(saved.parent.glob(".*csdf-tmp"))


def test_metadata_readable_without_torch(saved):
    meta = read_library_meta(saved)
    assert [s["name"] for s in meta["shapes"]] == ["sphere", "torus"]
    assert meta["shapes"][0]["code_size"] == 16 and "near_surface_error" in meta["shapes"][0]["stats"]


def _rewrite_meta(path, change):
    tensors = Library.load(path)
    meta = tensors.metadata()
    change(meta)
    flat = {"codes": tensors.codes.contiguous()}
    from backend.library import _shared_tensors

    flat.update({k: v.contiguous() for k, v in _shared_tensors(tensors.model).items()})
    save_file(flat, path, metadata={"compact_sdf": json.dumps(meta)})


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(LibraryError, match="truncated"):
        Library.load(saved)


@pytest.mark.parametrize("payload", [b"", b"hello", b"\xff" * 64, json.dumps({"a": 1}).encode()])
def test_garbage_files(tmp_path, payload):
    path = tmp_path / "junk.csdf"
    path.write_bytes(payload)
    with pytest.raises(LibraryError, match="not a Compact SDF library"):
        Library.load(path)


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, path, metadata={"format": "pt"})
    with pytest.raises(LibraryError, match="not a Compact SDF library"):
        Library.load(path)


def test_newer_format_version(saved):
    _rewrite_meta(saved, lambda m: m.update(format_version=99))
    with pytest.raises(LibraryError, match="newer"):
        Library.load(saved)


def test_mismatched_tensors(saved):
    _rewrite_meta(saved, lambda m: m["model"].update(code_size=32))
    with pytest.raises(LibraryError, match="codes"):
        Library.load(saved)


def test_nan_weights_rejected(tiny_library, tmp_path):
    broken = tiny_library.copy()
    with torch.no_grad():
        broken.model.coarse.out.bias.fill_(float("nan"))
    broken.save(tmp_path / "nan.csdf")
    with pytest.raises(LibraryError, match="NaN"):
        Library.load(tmp_path / "nan.csdf")


def test_header_length_lies(tmp_path):
    path = tmp_path / "lie.csdf"
    path.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(LibraryError, match="bad header length"):
        read_library_meta(path)


def test_failed_save_leaves_old_file(tiny_library, saved, monkeypatch):
    before = saved.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", boom)
    with pytest.raises(OSError):
        tiny_library.save(saved)
    assert saved.read_bytes() == before
    assert not list(saved.parent.glob(".*csdf-tmp"))
