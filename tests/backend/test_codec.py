"""The detail codec: features are quantised as stored, the layout is pinned, and old files keep their channel 0."""

import hashlib
from dataclasses import replace

import numpy as np
import pytest
import torch


def test_stored_features_are_already_quantised(tiny_library):
    """A fresh library equals what its file will hold: features sit on the int8 grid of their scales."""
    from backend.field.codec import DetailCodec

    grid = tiny_library.model.detail.grid
    codec = DetailCodec.of(tiny_library.preset.storage)
    for shape in range(len(tiny_library.names)):
        features = grid.shape_features(shape).detach()
        assert torch.equal(codec.round_trip(features), features)
    channel0 = grid.shape_features(0).detach()[:, 0]  # the stored distance keeps distance_bits (8) of resolution
    assert len(torch.unique(channel0)) > 2 ** (tiny_library.preset.storage.feature_bits - 1) * 2 - 1


def test_libraries_from_before_distance_bits_keep_their_channel_0():
    """A file whose storage settings lack distance_bits stored channel 0 at feature_bits: it loads so."""
    from backend.field.codec import DetailCodec

    old = DetailCodec.settings({"band_cells": 2.0, "feature_bits": 6, "zstd_level": 19})
    assert old.distance_bits == 6 and old.channel0_bits == 6 and old.feature_bits == 6
    assert DetailCodec.of(old).distance_bits == 6
    sixteen = DetailCodec.settings({"feature_bits": 16})
    assert sixteen.channel0_bits == 16 and sixteen.feature_bits == 16
    assert DetailCodec.of(sixteen) == DetailCodec(16, 16, sixteen.zstd_level)


def test_a_file_from_before_distance_bits_loads_and_re_saves_the_same_tensors(tiny_library, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from backend.field.codec import DetailCodec
    from backend.store.library import Library
    from backend.store.library_meta import read_library_meta

    lib = tiny_library.copy()
    lib.preset = replace(lib.preset, storage=replace(lib.preset.storage, distance_bits=lib.preset.storage.feature_bits))
    grid, codec = lib.model.detail.grid, DetailCodec.of(lib.preset.storage)
    with torch.no_grad():  # as an old version trained it: channel 0 rounded at feature_bits
        for shape in range(len(lib.names)):
            rows = grid.shape_features(shape)
            rows.copy_(codec.round_trip(rows))
    written = Library.metadata

    def without_distance_bits(self, detail_bytes=None):
        meta = written(self, detail_bytes)
        del meta["storage"]["distance_bits"]
        return meta

    monkeypatch.setattr(Library, "metadata", without_distance_bits)
    lib.save(tmp_path / "old.csdf")
    monkeypatch.undo()
    assert "distance_bits" not in read_library_meta(tmp_path / "old.csdf")["storage"]
    back = Library.load(tmp_path / "old.csdf")
    assert back.preset.storage.distance_bits == back.preset.storage.feature_bits
    assert torch.equal(back.model.detail.grid.features, grid.features)
    back.save(tmp_path / "again.csdf")
    old, again = load_file(tmp_path / "old.csdf"), load_file(tmp_path / "again.csdf")
    assert old.keys() == again.keys() and all(torch.equal(old[k], again[k]) for k in old)
    assert read_library_meta(tmp_path / "again.csdf")["storage"]["distance_bits"] == lib.preset.storage.feature_bits


#: sha256 (first 16 hex digits) of the decompressed node mask, features and scales of ``_fixed_shape``,
#: as the codec wrote them before it was one object (library format 2): files of that format must
#: keep reading (and, written by layout 2, keep their bytes).
_LAYOUT_DIGESTS = {(6, 8): "4035fbc8f4c7df96", (4, 6): "df77088bc78b6020", (16, 16): "a8791d5854b2d4c1",
                   (5, 5): "9ca915b06e097a79"}


def _fixed_shape():
    rng = np.random.default_rng(7)
    keys = np.sort(rng.choice(16**3, 200, replace=False))
    return keys, torch.from_numpy((rng.normal(size=(200, 4)) * [0.05, 1, 2, 0.1]).astype(np.float32))


@pytest.mark.parametrize("bits", sorted(_LAYOUT_DIGESTS))
def test_stored_layout_is_unchanged(bits):
    import zstandard

    from backend.field.codec import DetailCodec

    keys, features = _fixed_shape()
    codec = DetailCodec(*bits, 19, layout=2)
    packed = codec.pack(keys, features, 16)
    assert tuple(packed) == tuple(codec.tensor_shapes(4)) == ("nodes", "features", "scales")
    digest = hashlib.sha256()
    for name in ("nodes", "features"):
        digest.update(zstandard.ZstdDecompressor().decompress(packed[name].tobytes()))
    digest.update(packed["scales"].tobytes())
    assert digest.hexdigest()[:16] == _LAYOUT_DIGESTS[bits]
    back_keys, back = codec.unpack(packed, 16, 4, len(keys), "shape")
    np.testing.assert_array_equal(back_keys, keys)
    assert torch.equal(back, codec.round_trip(features))


#: The same for layout 3 (format 3): mask, then each channel's stream (its mode, its decompressed frame), then scales.
_STREAM_DIGESTS = {(6, 8): "5edc448a4f073bfe", (4, 6): "d2b06ccc8c73a3b3", (16, 16): "25aeb2a47b331b4d",
                   (5, 5): "85559b74c4e94551"}


def _stream_digest(packed) -> str:
    import struct

    import zstandard

    digest = hashlib.sha256(zstandard.ZstdDecompressor().decompress(packed["nodes"].tobytes()))
    start = 0
    for mode, length in struct.iter_unpack("<BI", packed["streams"].tobytes()):
        digest.update(bytes([mode]))
        digest.update(zstandard.ZstdDecompressor().decompress(packed["features"][start : start + length].tobytes()))
        start += length
    digest.update(packed["scales"].tobytes())
    return digest.hexdigest()[:16]


@pytest.mark.parametrize("bits", sorted(_STREAM_DIGESTS))
def test_stream_layout_is_pinned_and_reads_back_what_layout_2_did(bits):
    from backend.field.codec import DetailCodec

    keys, features = _fixed_shape()
    codec, old = DetailCodec(*bits, 19, layout=3), DetailCodec(*bits, 19, layout=2)
    packed = codec.pack(keys, features, 16)
    assert _stream_digest(packed) == _STREAM_DIGESTS[bits]
    back_keys, back = codec.unpack(packed, 16, 4, len(keys), "shape")
    np.testing.assert_array_equal(back_keys, keys)
    assert torch.equal(back, old.unpack(old.pack(keys, features, 16), 16, 4, len(keys), "shape")[1])


def test_each_channel_is_stored_the_way_it_compresses_smaller():
    """A smooth channel (a distance along a line) as differences, a noisy one as is: fewer bytes than layout 2."""
    import struct

    from backend.field.codec import DetailCodec

    rng = np.random.default_rng(3)
    keys = np.arange(4000)
    smooth = np.cumsum(rng.normal(0, 0.01, 4000))
    features = torch.from_numpy(np.stack([smooth, rng.normal(size=4000)], 1).astype(np.float32))
    packed = DetailCodec(6, 8, 19, layout=3).pack(keys, features, 16)
    modes = [mode for mode, _ in struct.iter_unpack("<BI", packed["streams"].tobytes())]
    assert modes == [1, 0]
    old = DetailCodec(6, 8, 19, layout=2).pack(keys, features, 16)
    assert packed["features"].nbytes + packed["streams"].nbytes < old["features"].nbytes


def test_channel_0_keeps_distance_bits_and_training_rounds_it_alone():
    """Rounding channel 0 on its own (training's first step) gives what the full round trip stores."""
    from backend.field.codec import DetailCodec

    _, features = _fixed_shape()
    codec = DetailCodec(4, 8, 19)
    full = codec.round_trip(features)
    assert torch.equal(codec.round_trip(features[:, :1]), full[:, :1])
    assert len(torch.unique(full[:, 0])) > 2**4 - 1  # more levels than the 4-bit channels have
    assert len(torch.unique(full[:, 1])) <= 2**4 - 1


@pytest.mark.parametrize("bits", [(3, 3), (9, 8), (8, 16), (16, 8), (6, 9)])
def test_impossible_widths_are_refused(bits):
    from backend.field.codec import DetailCodec

    with pytest.raises(ValueError, match="bits"):
        DetailCodec(*bits, 19)


def test_library_file_holds_exactly_the_codec_tensors(tiny_library, tmp_path):
    from backend.field.codec import DetailCodec
    from backend.store.library_meta import read_header

    tiny_library.save(tmp_path / "lib.csdf")
    header = read_header(tmp_path / "lib.csdf")
    shape_tensors = {k.split(".", 1)[1] for k in header if k.startswith("shape")}
    assert shape_tensors == set(DetailCodec.of(tiny_library.preset.storage).tensor_shapes(4))


def _sphere_band(resolution: int = 48, band: float = 2.0):
    """Sorted keys and distances of the nodes within ``band`` voxels of a lumpy, off-centre sphere (a
    real band's shape; a perfect sphere's symmetry would let the compressor find repeats instead)."""
    axis = np.linspace(-1, 1, resolution)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    distance = (np.sqrt((x - 0.07) ** 2 + y**2 + (z + 0.04) ** 2) - 0.55 - 0.08 * np.sin(3 * x + 1) * np.cos(2 * y)).ravel()
    keys = np.flatnonzero(np.abs(distance) <= band * 2 / (resolution - 1))
    return keys, distance[keys]


@pytest.mark.parametrize("seed", range(3))
def test_band_prediction_inverts_exactly_whatever_the_values(seed):
    """Residuals wrap modulo 256, so any int8 values (extremes, noise, a forged stream) read back as they were."""
    from backend.field.band_prediction import BandPredictor

    rng = np.random.default_rng(seed)
    keys, _ = _sphere_band()
    keys = np.sort(rng.choice(keys, len(keys) * 3 // 4, replace=False)) if seed else keys  # gaps: every fallback
    predictor = BandPredictor(keys, 48)
    assert set(np.unique(predictor.kind)) >= {0, 1, 10}  # Lorenzo, plane Lorenzo and no neighbour at all occur
    for values in (rng.integers(-127, 128, len(keys)), np.full(len(keys), 127), np.full(len(keys), -128)):
        values = values.astype(np.int8)
        residuals = predictor.residuals(values)
        assert residuals.dtype == np.uint8 and len(residuals) == len(keys)
        np.testing.assert_array_equal(predictor.values(residuals), values)
    assert len(BandPredictor(np.zeros(0, np.int64), 48).values(np.zeros(0, np.uint8))) == 0


def test_a_distance_band_is_stored_as_prediction_residuals_in_far_fewer_bytes():
    """Layout 4 stores a sphere's band distances predicted from their neighbours: under 85 % of layout 3's bytes,
    the same features back, and a layout-3 reader refuses the new stream mode instead of misreading it."""
    import struct

    from backend.errors import LibraryError
    from backend.field.codec import DetailCodec

    keys, distance = _sphere_band(64)
    features = torch.from_numpy((distance / distance.max())[:, None].astype(np.float32))
    new, old = DetailCodec(6, 8, 19), DetailCodec(6, 8, 19, layout=3)
    packed, before = new.pack(keys, features, 64), old.pack(keys, features, 64)
    assert [mode for mode, _ in struct.iter_unpack("<BI", packed["streams"].tobytes())] == [2]
    assert packed["features"].nbytes < 0.85 * before["features"].nbytes
    back_keys, back = new.unpack(packed, 64, 1, len(keys), "shape")
    np.testing.assert_array_equal(back_keys, keys)
    assert torch.equal(back, old.unpack(before, 64, 1, len(keys), "shape")[1])
    with pytest.raises(LibraryError, match="unknown stream mode 2"):
        old.unpack(packed, 64, 1, len(keys), "shape")


#: Layout 4 (format 4), pinned like the layouts before it: a sphere band's distances, predicted.
_PREDICTED_DIGEST = "4a834f09c7a908cb"


def test_predicted_layout_is_pinned():
    from backend.field.codec import DetailCodec

    keys, distance = _sphere_band()
    features = torch.from_numpy(np.stack([distance / distance.max(), np.cos(np.arange(len(keys)))], 1).astype(np.float32))
    assert _stream_digest(DetailCodec(6, 8, 19).pack(keys, features, 48)) == _PREDICTED_DIGEST
