"""Property-based tests (hypothesis) of mesh ingest and the library reader (issue 11).

The only outcomes allowed are a correct result or a CompactSdfError with a message. Examples are
derandomised (a fixed seed) and budgeted so the whole module runs in well under a minute on one
core; raise ``max_examples`` locally (``HYPOTHESIS_PROFILE=long``) for a longer hunt.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from backend.api import encode
from backend.errors import CompactSdfError, LibraryError
from backend.store.library import Library
from backend.store.library_meta import read_library_meta
from backend.geometry.meshes import Mesh, load_mesh, normalization, validate_mesh
from backend.names import safe_file_stem, validate_shape_name

settings.register_profile("ci", max_examples=150, derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("long", max_examples=5000, derandomize=False, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _expect_clear_error(exc: BaseException) -> None:
    assert isinstance(exc, CompactSdfError), f"{type(exc).__name__}: {exc}"
    assert str(exc).strip(), "an error without a message"


# -- mesh ingest ----------------------------------------------------------------------------------

coordinates = st.floats(allow_nan=True, allow_infinity=True, width=64)
vertex_arrays = st.integers(0, 12).flatmap(lambda n: st.lists(st.tuples(coordinates, coordinates, coordinates),
                                                               min_size=n, max_size=n))
face_arrays = st.lists(st.tuples(*[st.integers(-2, 14)] * 3), max_size=16)


def _check_valid(mesh: Mesh) -> None:
    """What validate_mesh promises of what it returns."""
    assert len(mesh.faces) and np.all(np.isfinite(mesh.vertices))
    assert mesh.faces.min() >= 0 and mesh.faces.max() < len(mesh.vertices)
    assert len(np.unique(mesh.faces)) == len(mesh.vertices)
    assert np.all(np.isfinite(normalization(mesh.vertices).apply(mesh.vertices)))


@given(vertex_arrays, face_arrays)
def test_random_arrays_validate_or_fail_clearly(vertices, faces):
    try:
        mesh = validate_mesh(Mesh(np.array(vertices, dtype=np.float64).reshape(-1, 3), np.array(faces, dtype=np.int64)))
    except Exception as exc:  # noqa: BLE001 - the property is about which exceptions occur
        _expect_clear_error(exc)
    else:
        _check_valid(mesh)


def _tetra_soup(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A few random tetrahedra, possibly sharing vertices (non-manifold) or overlapping."""
    rng = np.random.default_rng(seed)
    k = rng.integers(1, 4)
    vertices = rng.normal(size=(4 * k, 3))
    base = np.array([[0, 1, 2], [0, 3, 1], [1, 3, 2], [0, 2, 3]])
    faces = np.concatenate([base + 4 * i for i in range(k)])
    if k > 1 and rng.random() < 0.5:  # glue two tetrahedra at a vertex or an edge: non-manifold
        faces[faces == 4] = 0
    return vertices, faces


@given(st.integers(0, 10**6), st.integers(-30, 30), st.sampled_from([0.0, 1.0, 1e6, 1e12, -1e12]))
def test_scale_and_offset_do_not_change_the_verdict(seed, exponent, offset):
    vertices, faces = _tetra_soup(seed)
    moved = vertices * 10.0**exponent + offset * 10.0**exponent
    reference = validate_mesh(Mesh(vertices, faces))
    result = validate_mesh(Mesh(moved, faces))
    assert len(result.faces) == len(reference.faces) and len(result.vertices) == len(reference.vertices)
    got = normalization(result.vertices).apply(result.vertices)
    np.testing.assert_allclose(got, normalization(reference.vertices).apply(reference.vertices), atol=1e-3)


@given(st.integers(0, 10**6), st.integers(-30, 30), st.sampled_from([0.0, 1e3, 1e12]))
def test_loaded_files_merge_the_same_at_any_scale(tmp_path_factory, seed, exponent, offset):
    """A face soup (every vertex repeated per face, as exporters write UV seams) merges back exactly."""
    vertices, faces = _tetra_soup(seed)
    unique_count = len(np.unique(faces))
    soup = (vertices[faces].reshape(-1, 3) + offset) * 10.0**exponent
    path = tmp_path_factory.mktemp("soup") / "soup.obj"
    with path.open("w") as handle:
        handle.writelines(f"v {x!r} {y!r} {z!r}\n" for x, y, z in soup.tolist())
        handle.writelines(f"f {3 * i + 1} {3 * i + 2} {3 * i + 3}\n" for i in range(len(faces)))
    mesh = load_mesh(path)
    assert len(mesh.vertices) == unique_count and len(validate_mesh(mesh).faces) == len(faces)


@given(st.text(max_size=200))
def test_names_validate_or_fail_and_stems_stay_home(tmp_path_factory, name):
    try:
        assert validate_shape_name(name) == name
    except Exception as exc:  # noqa: BLE001
        _expect_clear_error(exc)
    stem = safe_file_stem(name)
    home = tmp_path_factory.getbasetemp().resolve()
    assert stem and "/" not in stem and "\\" not in stem and "\x00" not in stem
    assert (home / f"{stem}.obj").resolve().parent == home


# -- library reader -----------------------------------------------------------------------------------

class Valid(tuple):
    """(metadata, tensors, file bytes) of a real library, with a short repr for failure reports."""

    def __repr__(self) -> str:
        return "<valid tiny library>"


@pytest.fixture(scope="module")
def valid(tmp_path_factory, data_dir) -> Valid:
    """A real tiny library: its metadata, its tensors and its file bytes."""
    lib = encode({"sphere": load_mesh(data_dir / "sphere.obj")}, preset="tiny", steps=5, device="cpu",
                 cache_dir=tmp_path_factory.mktemp("cache"))
    path = tmp_path_factory.mktemp("valid") / "lib.csdf"
    lib.save(path)
    tensors, _ = lib.tensors()  # codes, network weights and the shape's stored detail blobs
    return Valid((lib.metadata(), tensors, path.read_bytes()))


def _load_either(path: Path) -> None:
    """Read ``path`` both ways: each must succeed with a usable library or fail clearly."""
    for read in (read_library_meta, Library.load):
        try:
            result = read(path)
        except Exception as exc:  # noqa: BLE001
            _expect_clear_error(exc)
            continue
        if isinstance(result, Library):
            assert torch.isfinite(result.codes).all() and len(result.names) == len(result.codes)
            for name in result.names:
                validate_shape_name(name)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 70) | st.integers(10**9, 10**30) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _paths(value: object, prefix: tuple = ()) -> list[tuple]:
    """Every key path into nested dicts/lists of ``value``."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, prefix + (index,))
    return found


@given(st.data())
def test_forged_metadata(valid, tmp_path_factory, data):
    meta, tensors, _ = valid
    forged = json.loads(json.dumps(meta))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(forged)[1:]))
        parent = forged
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(json_values)
    file = tmp_path_factory.mktemp("forged") / "lib.csdf"
    save_file(tensors, file, metadata={"compact_sdf": json.dumps(forged)})
    _load_either(file)


tensor_dtypes = st.sampled_from([torch.float32, torch.float16, torch.float64, torch.int32, torch.int64, torch.uint8, torch.bool])


@given(st.data())
def test_forged_tensors(valid, tmp_path_factory, data):
    meta, tensors, _ = valid
    forged = dict(tensors)
    for _ in range(data.draw(st.integers(1, 3))):
        name = data.draw(st.sampled_from(sorted(forged) + ["extra"]))
        action = data.draw(st.sampled_from(["drop", "dtype", "shape", "values"]))
        if action == "drop":
            forged.pop(name, None)
        elif action == "dtype" and name in forged:
            forged[name] = forged[name].to(data.draw(tensor_dtypes))
        elif action == "shape":
            shape = data.draw(st.lists(st.integers(0, 6), max_size=3))
            forged[name] = torch.zeros(shape, dtype=data.draw(tensor_dtypes))
        elif name in forged and forged[name].numel() and forged[name].dtype in (torch.float32, torch.int32, torch.uint8):
            if forged[name].is_floating_point():
                pool = [float("nan"), float("inf"), 1e30, -1.0]
            else:  # int32, or a byte of a shape's compressed node mask / features
                pool = [0, 255, 0x28] if forged[name].dtype == torch.uint8 else [-1, 0, 2**31 - 1]
            flat = forged[name].clone().flatten()
            flat[data.draw(st.integers(0, len(flat) - 1))] = data.draw(st.sampled_from(pool))
            forged[name] = flat.reshape(forged[name].shape)
    file = tmp_path_factory.mktemp("forged") / "lib.csdf"
    save_file(forged, file, metadata={"compact_sdf": json.dumps(meta)})
    _load_either(file)


@given(st.data())
def test_corrupted_bytes(valid, tmp_path_factory, data):
    *_, raw = valid
    blob = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(blob) - 1))
        blob[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    file = tmp_path_factory.mktemp("corrupt") / "lib.csdf"
    file.write_bytes(bytes(blob))
    _load_either(file)


@given(json_values, st.binary(max_size=64))
def test_random_headers(tmp_path_factory, header, payload):
    raw = json.dumps(header).encode()
    file = tmp_path_factory.mktemp("header") / "lib.csdf"
    file.write_bytes(struct.pack("<Q", len(raw)) + raw + payload)
    with pytest.raises(LibraryError) as info:
        Library.load(file)
    assert str(info.value).strip()


@given(st.binary(max_size=40), st.integers(0, 2**32 - 1))
def test_forged_stream_tables(table, extra):
    """Any bytes as a shape's stream table (formats 3 and 4), or a table whose lengths add up but whose frames
    do not fit them: a LibraryError, or features of the stored shape and range (a mode flipped on an
    intact frame reads as other values: only the frames' sizes can be checked, as for any forged byte)."""
    from backend.field.codec import DetailCodec

    rng = np.random.default_rng(0)
    keys = np.sort(rng.choice(12**3, 150, replace=False))
    features = torch.from_numpy(rng.normal(size=(150, 3)).astype(np.float32))
    codec = DetailCodec(6, 8, 3)
    packed = codec.pack(keys, features, 12)
    lengths = [length for _, length in struct.iter_unpack("<BI", packed["streams"].tobytes())]
    shifted = [lengths[0] + extra % 64, lengths[1] - extra % 64, lengths[2]]
    modes = list(table[:3].ljust(3, b"\0"))
    refit = b"".join(struct.pack("<BI", m % 4, max(n, 0)) for m, n in zip(modes, shifted))
    for streams in (table, refit):
        try:
            _, back = codec.unpack({**packed, "streams": np.frombuffer(streams, np.uint8)}, 12, 3, len(keys), "s")
        except LibraryError as exc:
            _expect_clear_error(exc)
        else:
            bound = torch.from_numpy(packed["scales"]) * 128  # any int8, wrapped differences too
            assert back.shape == features.shape and torch.all(back.abs() <= bound + 1e-6)
