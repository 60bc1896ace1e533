"""Worker protocol: JSON Lines encoding, validation, tolerance of unknown keys, mesh .npz files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from backend.interfaces import protocol


def test_request_round_trip_keeps_unicode_and_args():
    request = protocol.Request("encode", {"names": ["Kuh 🐄", "würfel"], "steps": 3})
    line = request.to_line()
    assert line.endswith("\n") and line.count("\n") == 1
    parsed = protocol.parse_request(line.encode("utf-8"))
    assert (parsed.cmd, parsed.args, parsed.id) == ("encode", request.args, request.id)


def test_event_round_trip_and_terminal_flags():
    for event, terminal in [
        (protocol.hello(backend_version="0.1.0", python="/usr/bin/python3"), False),
        (protocol.progress("j1", stage="train", step=3, total=10, loss=0.5, eta_s=12.0, message="m"), False),
        (protocol.result("j1", {"items": [1, 2]}), True),
        (protocol.error("j1", "BadInput", "empty mesh", "Traceback..."), True),
        (protocol.cancelled("j1"), True),
    ]:
        parsed = protocol.parse_event(event.to_line())
        assert parsed == event
        assert parsed.terminal is terminal
    assert protocol.parse_event(protocol.hello().to_line()).get("protocol") == protocol.PROTOCOL_VERSION


def test_progress_drops_non_finite_numbers():
    event = protocol.progress("j", stage="train", step=1, total=2, loss=float("nan"), eta_s=float("inf"))
    parsed = protocol.parse_event(event.to_line())
    assert parsed.get("loss") is None and parsed.get("eta_s") is None


def test_unknown_keys_are_tolerated():
    line = json.dumps({"v": 1, "id": "a", "event": "progress", "step": 1, "total": 4, "future_field": [1]})
    event = protocol.parse_event(line)
    assert event.get("future_field") == [1] and event.get("step") == 1
    request = protocol.parse_request(json.dumps({"v": 1, "id": "b", "cmd": "probe", "args": {}, "extra": True}))
    assert request.cmd == "probe"


@pytest.mark.parametrize(
    "line, match",
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"v": 99, "id": "a", "cmd": "probe"}', "protocol version"),
        ('{"v": 1, "cmd": "probe"}', "'id'"),
        ('{"v": 1, "id": "a", "cmd": "explode"}', "unknown command"),
        ('{"v": 1, "id": "a", "cmd": "probe", "args": [1]}', "'args'"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_requests_raise_protocol_error(line, match):
    with pytest.raises(protocol.ProtocolError, match=match):
        protocol.parse_request(line)


def test_every_command_has_a_typed_request():
    assert set(protocol.COMMANDS) >= {"encode", "decode", "interpolate", "remove", "rename", "replace", "cancel"}
    for cmd, cls in protocol.REQUEST_TYPES.items():
        assert cls.CMD == cmd


def test_typed_request_round_trip_with_defaults():
    args = protocol.DecodeArgs("lib.csdf", [protocol.DecodeItem({"a": 1, "b": 0.5}, "out.npz")], target_faces=500)
    request = protocol.parse_request(protocol.Request.of(args).to_line())
    parsed = protocol.parse_args(request)
    assert parsed == protocol.DecodeArgs("lib.csdf", [protocol.DecodeItem({"a": 1.0, "b": 0.5}, "out.npz")],
                                         target_faces=500)
    assert parsed.resolution == protocol.DEFAULT_RESOLUTION and parsed.mode == protocol.DEFAULT_BLEND_MODE
    minimal = protocol.EncodeArgs.from_dict({"meshes": "m.npz", "names": ["a"], "library_out": "x", "future": 1})
    assert (minimal.library_in, minimal.steps, minimal.preset) == (None, None, protocol.DEFAULT_PRESET)


@pytest.mark.parametrize(
    "cls, args, match",
    [
        (protocol.DecodeArgs, {"library": "l"}, "decode: missing 'items'"),
        (protocol.DecodeArgs, {"library": "l", "items": [{"target": 3, "out": "o"}]}, r"items\[0\]\.target"),
        (protocol.DecodeArgs, {"library": "l", "items": [], "resolution": True}, "resolution: expected int"),
        (protocol.DecodeArgs, {"library": "l", "items": [], "target_faces": "many"}, "target_faces"),
        (protocol.EncodeArgs, {"meshes": "m", "names": "ab", "library_out": "x"}, "names: expected a list"),
        (protocol.RenameArgs, {"library": "l", "old": "a", "new": 2, "library_out": "x"}, "new: expected str"),
    ],
)
def test_mistyped_arguments_raise_protocol_error(cls, args, match):
    with pytest.raises(protocol.ProtocolError, match=match):
        cls.from_dict(args)


def test_unknown_event_and_error_kind_are_refused():
    with pytest.raises(protocol.ProtocolError, match="unknown event"):
        protocol.parse_event('{"v": 1, "id": "a", "event": "surprise"}')
    with pytest.raises(ValueError, match="unknown error kind"):
        protocol.error("a", "Oops", "message")


def test_nan_in_payload_is_refused_rather_than_sent_as_invalid_json():
    with pytest.raises(ValueError):
        protocol.result("a", {"loss": float("nan")}).to_line()


def test_mesh_npz_round_trip_without_pickle(tmp_path):
    path = str(tmp_path / "meshes.npz")
    meshes = [
        {"vertices": np.random.rand(5, 3).astype(np.float32), "faces": np.array([[0, 1, 2], [2, 3, 4]], np.int32)},
        {
            "vertices": np.zeros((3, 3), np.float32),
            "faces": np.array([[0, 1, 2]], np.int32),
            "distance": np.ones(3, np.float32),
        },
    ]
    protocol.save_meshes(path, meshes)
    loaded = protocol.load_meshes(path, 2)
    for got, want in zip(loaded, meshes):
        assert set(got) == set(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
            assert got[key].dtype == want[key].dtype
    with pytest.raises(protocol.ProtocolError, match="missing arrays"):
        protocol.load_meshes(path, 3)


def test_mesh_npz_write_is_atomic(tmp_path, monkeypatch):
    """A write that fails half-way leaves the old file (or none) and no temporary beside it."""
    path = tmp_path / "meshes.npz"
    mesh = {"vertices": np.zeros((3, 3), np.float32), "faces": np.array([[0, 1, 2]], np.int32)}
    protocol.save_meshes(str(path), [mesh])
    before = path.read_bytes()

    def full_disk(handle, **arrays):
        handle.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(OSError, match="No space"):
        protocol.save_meshes(str(path), [mesh, mesh])
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["meshes.npz"]


def test_protocol_module_imports_nothing_heavy():
    code = "import sys, backend.interfaces.protocol; print(sorted(m for m in ('numpy', 'torch', 'bpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_detail_defaults_to_the_engine_config_and_round_trips():
    from backend.config import DecodeConfig

    assert protocol.DEFAULT_DETAIL == DecodeConfig().detail
    for args in (protocol.DecodeArgs("l", [protocol.DecodeItem({"a": 0.8, "b": 0.2}, "o.npz")], detail=0.25),
                 protocol.InterpolateArgs("l", ["a", "b"], 3, "out", detail=0.25, pace="even"),
                 protocol.ExploreArgs("l", "o.npz", base={"a": 0.5, "b": 0.5}, amounts=[1.5, -0.5], detail=0.25)):
        parsed = protocol.parse_args(protocol.parse_request(protocol.Request.of(args).to_line()))
        assert parsed == args and parsed.detail == 0.25
    assert protocol.InterpolateArgs.from_dict({"library": "l", "names": ["a", "b"], "count": 2, "out_dir": "o"}).detail == 1.0


def test_explore_request_defaults_and_kinds_of_start():
    minimal = protocol.ExploreArgs.from_dict({"library": "l", "out": "o.npz"})
    assert (minimal.base, minimal.amounts, minimal.seed, minimal.code) == (None, [], None, None)
    assert minimal.nearest == protocol.DEFAULT_NEAREST and minimal.resolution == protocol.DEFAULT_RESOLUTION
    assert protocol.ExploreArgs.from_dict({"library": "l", "out": "o", "base": "ball"}).base == "ball"
    raw = protocol.ExploreArgs.from_dict({"library": "l", "out": "o", "code": [1, 0.5], "seed": 3})
    assert raw.code == [1.0, 0.5] and raw.seed == 3


@pytest.mark.parametrize(
    "cls, args, match",
    [
        (protocol.DecodeArgs, {"library": "l", "items": [], "detail": 1.5}, r"decode\.detail: expected a number in 0\.\.1"),
        (protocol.DecodeArgs, {"library": "l", "items": [], "detail": "full"}, "detail: expected float"),
        (protocol.InterpolateArgs, {"library": "l", "names": ["a"], "count": 2, "out_dir": "o", "detail": -0.1},
         r"interpolate\.detail"),
        (protocol.InterpolateArgs, {"library": "l", "names": ["a", "b"], "count": 2, "out_dir": "o", "pace": "fast"},
         r"interpolate\.pace: expected one of uniform, even"),
        (protocol.ExploreArgs, {"library": "l", "out": "o", "detail": float("nan")}, r"explore\.detail"),
        (protocol.ExploreArgs, {"library": "l", "out": "o", "amounts": [1.0, float("inf")]}, r"explore\.amounts"),
        (protocol.ExploreArgs, {"library": "l", "out": "o", "code": [float("nan")]}, r"explore\.code"),
        (protocol.ExploreArgs, {"library": "l", "out": "o", "spread": -1}, r"explore\.spread"),
        (protocol.ExploreArgs, {"library": "l", "out": "o", "nearest": -2}, r"explore\.nearest"),
        (protocol.ExploreArgs, {"library": "l", "out": "o", "base": 3}, r"explore\.base"),
        (protocol.ExploreArgs, {"library": "l", "out": "o", "seed": 1.5}, r"explore\.seed"),
        # integers beyond float range (JSON allows them): a message, not an OverflowError
        (protocol.ExploreArgs, {"library": "l", "out": "o", "nearest": 10**400}, r"explore\.nearest"),
        (protocol.ExploreArgs, {"library": "l", "out": "o", "spread": 10**400}, r"explore\.spread: .*too large"),
        (protocol.DecodeArgs, {"library": "l", "items": [{"target": {"a": -10**400}, "out": "o"}]}, r"target"),
    ],
)
def test_detail_and_explore_arguments_are_validated(cls, args, match):
    with pytest.raises(protocol.ProtocolError, match=match):
        cls.from_dict(args)
