"""Library files: exact round trip, atomic writes, and clear errors for every kind of bad file."""

import json
import struct
import time

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from backend.api import decode
from backend.config import StorageConfig
from backend.errors import LibraryError
from backend.store.library import Library
from backend.store.library_meta import read_library_meta


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
    flat, _ = tensors.tensors()
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
    with pytest.raises(LibraryError, match=r"has shape \(64, 43\), expected \(64, 59\)"):
        Library.load(saved)  # the coarse input layer is sized by the code


def test_codes_of_the_wrong_size(forge, saved, tmp_path):
    path = forge(saved, tmp_path / "codes.csdf", change_tensors=lambda t: t.update(codes=t["codes"][:1].clone()))
    with pytest.raises(LibraryError, match=r"tensor codes has shape \(1, 16\), expected \(2, 16\)"):
        Library.load(path)


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


# -- format 2: each shape's own detail, stored compactly ---------------------------------------------------

def test_file_holds_each_shapes_own_detail(tiny_library, saved):
    from backend.store.library_meta import read_header

    header = read_header(saved)
    names = set(header) - {"__metadata__"}
    assert "codes" in names and not any(n.startswith("detail.grid") for n in names)  # no shared grid
    assert header["codes"]["dtype"] == "F32"
    assert {header[n]["dtype"] for n in names if n.startswith(("coarse.", "detail."))} == {"F16"}  # networks: half
    for i in range(2):
        assert {header[f"shape{i}.{k}"]["dtype"] for k in ("nodes", "features", "streams")} == {"U8"}
        assert header[f"shape{i}.scales"] == {**header[f"shape{i}.scales"], "dtype": "F32", "shape": [4]}
    assert not any(n.startswith("shape2") for n in names)
    meta = read_library_meta(saved)
    assert meta["format_version"] == 4 and meta["storage"]["feature_bits"] == StorageConfig().feature_bits
    grid = tiny_library.model.detail.grid
    for i, shape in enumerate(meta["shapes"]):
        assert shape["nodes"] == grid.node_count(i) > 0
        stored = sum(int(np.prod(header[f"shape{i}.{k}"]["shape"])) * (4 if k == "scales" else 1)
                     for k in ("nodes", "features", "streams", "scales"))
        assert shape["detail_bytes"] == stored
        assert stored < grid.node_count(i) * grid.channels  # compressed below one byte per feature
    back = Library.load(saved)
    for i in range(2):
        assert torch.equal(back.model.detail.grid.keys[i], grid.keys[i])
        assert torch.equal(back.model.detail.grid.shape_features(i), grid.shape_features(i))


def _format1(path, meta, tensors_of_format_2):
    """A file with ``meta`` (as a format-1 library) and a shared grid's tensors."""
    meta = {**meta, "format_version": 1}
    tensors = {k: v for k, v in tensors_of_format_2.items() if not k.startswith("shape")}
    save_file({**tensors, "detail.grid.keys": torch.zeros(3, dtype=torch.int32), "detail.grid.features": torch.zeros(4, 4)},
              path, metadata={"compact_sdf": json.dumps(meta)})
    return path


def test_format_1_file_asks_to_re_encode(tiny_library, tmp_path):
    path = _format1(tmp_path / "old.csdf", tiny_library.metadata(), tiny_library.tensors()[0])
    assert read_library_meta(path)["format_version"] == 1  # names stay listable without the engine
    with pytest.raises(LibraryError, match="re-encode") as info:
        Library.load(path)
    assert "format 1" in str(info.value) and "--overwrite" in str(info.value)


def test_real_format_1_library_asks_to_re_encode():
    """A library written by the previous engine (kept in the fuzz corpus) fails with the same advice."""
    from pathlib import Path

    old = Path(__file__).resolve().parents[1] / "fuzz_corpus" / "library" / "format1_valid.csdf"
    assert read_library_meta(old)["format_version"] == 1
    with pytest.raises(LibraryError, match="re-encode"):
        Library.load(old)


@pytest.mark.parametrize("change_meta, change_tensors, match", [
    (lambda m: m["shapes"][0].update(nodes=64**3 + 1), None, "more detail nodes"),
    (lambda m: m["shapes"][0].update(nodes=-1), None, "more detail nodes"),
    (lambda m: m["shapes"][0].update(nodes=7), None, "metadata says 7"),
    (lambda m: m["shapes"][0].update(nodes="many"), None, "metadata is invalid"),
    (None, lambda t: t.pop("shape1.features"), "missing"),
    (None, lambda t: t.update({"shape2.nodes": t["shape1.nodes"]}), "extra"),
    (None, lambda t: t.update({"detail.grid.features": torch.zeros(3, 4)}), "extra"),
    (None, lambda t: t.update({"shape0.nodes": t["shape0.nodes"].view(-1, 1)}), "byte string"),
    (None, lambda t: t.update({"shape0.features": t["shape0.features"].float()}), "byte string"),
    (None, lambda t: t.update({"shape0.scales": torch.ones(3)}), "shape0.scales"),
    (None, lambda t: t.update({"shape0.scales": torch.full((4,), float("nan"))}), "scales are invalid"),
    (None, lambda t: t.update({"shape0.features": t["shape1.features"]}), "features"),
    (None, lambda t: t.update({"shape0.nodes": t["shape1.nodes"]}), "nodes"),
    (None, lambda t: t.pop("shape0.streams"), "missing"),
    (None, lambda t: t.update({"shape0.streams": t["shape0.streams"][:-1]}), "stream table holds"),
    (None, lambda t: t.update({"shape0.features": t["shape1.features"], "shape0.streams": t["shape1.streams"]}),
     "channel 0 declares"),
    (None, lambda t: t.update({"shape0.streams": torch.full_like(t["shape0.streams"], 7)}), "stream table|stream mode"),
    (None, lambda t: t.update({"shape0.nodes": t["shape0.nodes"][:-3]}), "node mask"),
    (None, lambda t: t.update({"shape0.nodes": torch.zeros(0, dtype=torch.uint8)}), "node mask"),
])
def test_forged_detail_is_refused(forge, saved, tmp_path, change_meta, change_tensors, match):
    path = forge(saved, tmp_path / "forged.csdf", change_meta, change_tensors)
    with pytest.raises(LibraryError, match=match) as info:
        Library.load(path)
    assert str(path) in str(info.value)


def test_infinite_node_count_is_a_library_error(forge, saved, tmp_path):
    path = forge(saved, tmp_path / "inf.csdf", lambda m: m["shapes"][0].update(nodes=float("inf")))
    with pytest.raises(LibraryError):
        Library.load(path)


def test_bfloat16_scales_are_a_library_error(forge, saved, tmp_path):
    path = forge(saved, tmp_path / "bf16.csdf",
                  change_tensors=lambda t: t.update({"shape0.scales": t["shape0.scales"].to(torch.bfloat16)}))
    with pytest.raises(LibraryError, match="scales"):
        Library.load(path)


# -- storage: masks and quantised features ---------------------------------------------------------------------

def _random_shape(resolution=16, count=300, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    keys = np.sort(rng.choice(resolution**3, count, replace=False))
    return keys, torch.from_numpy(rng.normal(size=(count, channels)).astype(np.float32))


def _codec(bits):
    """A codec that stores every channel, channel 0 too, at ``bits`` (zstd level 3)."""
    from backend.field.codec import DetailCodec

    return DetailCodec(bits, bits, 3)


@pytest.mark.parametrize("bits", [8, 16])
def test_storage_round_trip(bits):
    keys, features = _random_shape()
    codec = _codec(bits)
    packed = codec.pack(keys, features, 16)
    assert tuple(packed) == tuple(codec.tensor_shapes(3)) == ("nodes", "features", "streams", "scales")
    assert packed["nodes"].dtype == packed["features"].dtype == packed["streams"].dtype == np.uint8
    assert packed["scales"].dtype == np.float32
    back_keys, back = codec.unpack(packed, 16, 3, len(keys), "shape")
    np.testing.assert_array_equal(back_keys, keys)
    assert torch.equal(back, codec.round_trip(features))  # exactly what a fresh library holds
    step = features.abs().max(0).values / 127 if bits == 8 else features.abs() * 2**-10
    assert torch.all((back - features).abs() <= step / 2 + 1e-7)
    assert torch.equal(codec.round_trip(back), back)  # quantising again changes nothing


def test_storage_empty_and_zero_shapes():
    empty = _codec(8).pack(np.zeros(0, dtype=np.int64), torch.zeros(0, 2), 8)
    keys, features = _codec(8).unpack(empty, 8, 2, 0, "empty")
    assert len(keys) == 0 and features.shape == (0, 2)
    zeros = _codec(8).pack(np.array([5, 9]), torch.zeros(2, 2), 8)
    np.testing.assert_array_equal(zeros["scales"], [1.0, 1.0])  # no division by zero
    assert torch.equal(_codec(8).unpack(zeros, 8, 2, 2, "zeros")[1], torch.zeros(2, 2))


def _moved_boundary(streams: np.ndarray) -> np.ndarray:
    """A stream table whose first frame claims one byte of the second (the total still adds up)."""
    entries = list(struct.iter_unpack("<BI", streams.tobytes()))
    entries[0], entries[1] = (entries[0][0], entries[0][1] + 1), (entries[1][0], entries[1][1] - 1)
    return np.frombuffer(b"".join(struct.pack("<BI", *e) for e in entries), np.uint8)


def test_storage_corrupt_blobs_raise_library_error():
    keys, features = _random_shape()
    packed = _codec(8).pack(keys, features, 16)
    cases = {
        "flipped mask": {**packed, "nodes": np.bitwise_xor(packed["nodes"], np.uint8(0x5A))},
        "truncated mask": {**packed, "nodes": packed["nodes"][:-4]},
        "garbage features": {**packed, "features": np.arange(40, dtype=np.uint8)},
        "truncated features": {**packed, "features": packed["features"][: len(packed["features"]) // 2]},
        "empty features": {**packed, "features": np.zeros(0, np.uint8)},
        "unknown stream mode": {**packed, "streams": np.concatenate([[9], packed["streams"][1:]]).astype(np.uint8)},
        "short stream table": {**packed, "streams": packed["streams"][:-5]},
        "frame boundary moved": {**packed, "streams": _moved_boundary(packed["streams"])},
        "nan scales": {**packed, "scales": np.full(3, np.nan, np.float32)},
        "wrong scales": {**packed, "scales": np.ones(2, np.float32)},
        "float64 scales": {**packed, "scales": packed["scales"].astype(np.float64)},
    }
    for what, stored in cases.items():
        try:
            _codec(8).unpack(stored, 16, 3, len(keys), "shape x")
        except LibraryError as exc:
            assert "shape x" in str(exc), what
        else:
            pytest.fail(f"{what} was accepted")
    with pytest.raises(LibraryError, match="metadata says 299"):
        _codec(8).unpack(packed, 16, 3, len(keys) - 1, "shape x")
    with pytest.raises(LibraryError):  # a 16^3 mask read as a 32^3 one
        _codec(8).unpack(packed, 32, 3, len(keys), "shape x")


def _zstd_frame_declaring(size: int) -> np.ndarray:
    """A well-formed zstd frame header that declares ``size`` content bytes, then one empty last block."""
    header = struct.pack("<IBB", 0xFD2FB528, 0xC0, 0x00) + struct.pack("<Q", size)  # 8-byte content size, window
    return np.frombuffer(header + bytes([1, 0, 0]), np.uint8)


def test_blob_declaring_a_huge_size_is_refused_before_allocating(forge, saved, tmp_path):
    import zstandard

    huge = _zstd_frame_declaring(1 << 40)
    assert zstandard.frame_content_size(huge.tobytes()) == 1 << 40
    keys, features = _random_shape()
    packed = _codec(8).pack(keys, features, 16)
    start = time.perf_counter()
    streams = np.frombuffer(struct.pack("<BI", 0, huge.size) + struct.pack("<BI", 0, 0) * 2, np.uint8)
    for forged in ({"nodes": huge}, {"features": huge, "streams": streams}):
        with pytest.raises(LibraryError, match="declares 1099511627776 bytes"):
            _codec(8).unpack({**packed, **forged}, 16, 3, len(keys), "shape x")
    # the same frame inside a library file
    path = forge(saved, tmp_path / "huge.csdf", change_tensors=lambda t: t.update({"shape0.nodes": torch.from_numpy(huge.copy())}))
    with pytest.raises(LibraryError, match="declares"):
        Library.load(path)
    assert time.perf_counter() - start < 2.0


def test_feature_bits_setting_is_honoured(tiny_library, tmp_path):
    """A library stored with float16 features round-trips exactly too."""
    from dataclasses import replace

    lib = tiny_library.copy()
    lib.preset = replace(lib.preset, storage=replace(lib.preset.storage, feature_bits=16))
    grid = lib.model.detail.grid
    with torch.no_grad():
        grid.features.copy_(_codec(16).round_trip(grid.features))
    lib.save(tmp_path / "f16.csdf")
    back = Library.load(tmp_path / "f16.csdf")
    assert back.preset.storage.feature_bits == 16
    assert torch.equal(back.model.detail.grid.features, grid.features)


def test_feature_widths_outside_int8_or_float16_are_refused():
    from backend.config import StorageConfig

    for bits in (3, 9, 12, 15, 32):
        with pytest.raises(ValueError, match="feature_bits"):
            StorageConfig(feature_bits=bits)


@pytest.mark.parametrize("bits", [4, 5, 6, 7, 8, 16])
def test_every_accepted_feature_width_round_trips(bits):
    """Stored features are within half a quantisation step of the trained ones at every accepted width."""
    from backend.config import StorageConfig, check_ranges

    check_ranges(StorageConfig(feature_bits=bits))
    features = torch.linspace(-1.5, 1.5, 31).reshape(-1, 1).repeat(1, 2) * torch.tensor([1.0, 0.01])
    error = (_codec(bits).round_trip(features) - features).abs().max(0).values
    if bits == 16:
        assert torch.all(error <= features.abs().max(0).values * 2**-11)
    else:
        assert torch.all(error <= features.abs().max(0).values / (2 ** (bits - 1) - 1) / 2 + 1e-7)
