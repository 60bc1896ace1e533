"""Shared frames: shapes of one coordinate system encoded in one common box, so in-betweens stay in
place and at scale (issue 20, item 0); ``auto`` decides, libraries record it, adds reuse it."""

import json

import numpy as np
import pytest
from safetensors.torch import save_file

from backend.api import decode, encode
from backend.config import DEFAULT_FRAME, FRAMES
from backend.errors import BadInputError, BadMeshError, LibraryError
from backend.geometry.frames import FIT_LIMIT, choose_frame, common_frame, looks_shared
from backend.geometry.meshes import Mesh, normalization
from backend.interfaces import protocol
from backend.interfaces.cli import _info_lines, build_parser
from backend.store.library import Library
from backend.store.library_meta import read_library_meta

_BOX_FACES = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6],
                       [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])


def _posed(body: Mesh, angle: float) -> Mesh:
    """A unit-sphere body with one limb (a bar from x = 0.7 to 3.2) turned ``angle`` about z: every
    pose has the same connectivity, and the body is at the origin in all of them."""
    bar = np.array([[x, y, z] for x in (0.7, 3.2) for y in (-0.2, 0.2) for z in (-0.2, 0.2)])
    c, s = np.cos(angle), np.sin(angle)
    bar = bar @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])
    return Mesh(np.concatenate([body.vertices, bar]), np.concatenate([body.faces, _BOX_FACES + len(body.vertices)]))


@pytest.fixture(scope="module")
def poses(sphere_mesh):
    return {"reach_x": _posed(sphere_mesh, 0.0), "reach_y": _posed(sphere_mesh, np.pi / 2)}


@pytest.fixture(scope="module")
def libraries(poses, tmp_path_factory):
    """The two poses encoded (tiny, short) in the shared frame and per shape."""
    cache = tmp_path_factory.mktemp("frames-cache")
    return {frame: encode(poses, preset="tiny", steps=40, device="cpu", cache_dir=cache, sampling_workers=1, frame=frame)
            for frame in ("shared", "per-shape")}


def _body_residual(vertices: np.ndarray) -> float:
    """Mean distance to the unit sphere of the surface away from both limbs (x < -0.2 and y < -0.2)."""
    body = vertices[(vertices[:, 0] < -0.2) & (vertices[:, 1] < -0.2)]
    return float(np.abs(np.linalg.norm(body, axis=1) - 1).mean())


# -- the decision (no training) ---------------------------------------------------------------------------

def test_auto_picks_shared_for_poses_and_per_shape_for_unrelated_shapes(poses, sphere_mesh, torus_mesh):
    assert DEFAULT_FRAME == "auto" and set(FRAMES) == {"auto", "shared", "per-shape"}
    choice = choose_frame("auto", poses)
    assert choice.frame == "shared" and "connectivity" in choice.reason
    assert choice.transform == common_frame(list(poses.values())) == normalization(
        np.concatenate([m.vertices for m in poses.values()]))
    assert choose_frame("auto", {"sphere": sphere_mesh, "torus": torus_mesh}).frame == "per-shape"
    assert choose_frame("auto", {"one": sphere_mesh}).frame == "per-shape"  # nothing to share with
    assert choose_frame("per-shape", poses).frame == "per-shape" and choose_frame("per-shape", poses).transform is None


def test_auto_box_rule_and_far_apart_poses(sphere_mesh):
    remeshed = Mesh(sphere_mesh.vertices * 1.1, np.roll(sphere_mesh.faces, 1, axis=0))  # other faces, same box
    assert looks_shared([sphere_mesh, remeshed])[0]
    assert not looks_shared([sphere_mesh, Mesh(sphere_mesh.vertices * 2, remeshed.faces)])[0]  # sizes 2x apart
    far = Mesh(sphere_mesh.vertices + [10.0, 0, 0], sphere_mesh.faces)  # one connectivity, a scene apart
    shared, why = looks_shared([sphere_mesh, far])
    assert not shared and "far apart" in why


def test_adds_reuse_the_library_frame_or_say_why_not(poses, sphere_mesh):
    frame = common_frame(list(poses.values()))
    inside = {"bent": _posed(sphere_mesh, np.pi / 4)}
    assert choose_frame("shared", inside, frame).transform == frame
    assert choose_frame("auto", inside, frame).transform == frame
    outside = {"moved": Mesh(sphere_mesh.vertices + [0, 0, 3.0], sphere_mesh.faces)}
    with pytest.raises(BadMeshError, match="per-shape") as info:
        choose_frame("shared", outside, frame)
    assert "moved" in str(info.value) and str(FIT_LIMIT) in str(info.value)
    assert choose_frame("auto", outside, frame).frame == "per-shape"
    tiny = {"speck": Mesh(sphere_mesh.vertices * 0.05, sphere_mesh.faces)}  # fits, but at 1/30 of its scale
    assert choose_frame("auto", tiny, frame).frame == "per-shape"
    assert choose_frame("shared", tiny, frame).frame == "shared"  # asked for: kept


def test_every_interface_takes_the_frame(tmp_path):
    with pytest.raises(BadInputError, match="frame must be one of"):
        encode({"s": Mesh(np.eye(3), [[0, 1, 2]])}, preset="tiny", frame="global")
    assert build_parser().parse_args(["encode", "a.obj", "-o", "x.csdf"]).frame == DEFAULT_FRAME
    args = protocol.EncodeArgs.from_dict({"meshes": "m.npz", "names": ["a"], "library_out": "o.csdf", "frame": "shared"})
    assert args.frame == "shared" and protocol.EncodeArgs("m", ["a"], "o").frame == DEFAULT_FRAME
    with pytest.raises(protocol.ProtocolError, match="encode.frame"):
        protocol.EncodeArgs("m", ["a"], "o", frame="global")


# -- encoded (tiny preset) --------------------------------------------------------------------------------

def test_shared_frame_in_betweens_stay_in_place_and_at_scale(libraries):
    shared, per_shape = libraries["shared"], libraries["per-shape"]
    assert [s.frame for s in shared.shapes] == ["shared", "shared"]
    assert shared.shapes[0].transform == shared.shapes[1].transform == shared.shared_frame()
    assert [s.frame for s in per_shape.shapes] == ["per-shape", "per-shape"] and per_shape.shared_frame() is None
    assert shared.history[-1]["frame"] == "shared"
    for mode in ("distance", "slerp"):
        mid = decode(shared, {"reach_x": 0.5, "reach_y": 0.5}, resolution=48, mode=mode).vertices
        low, high = mid.min(axis=0), mid.max(axis=0)
        # The body, the same in both poses, stays a unit sphere at the origin: the box's far side and
        # its height are the body's, and its centre stays on the poses' z = 0.
        np.testing.assert_allclose(low, [-1, -1, -1], atol=0.08)
        assert abs(high[2] - 1) < 0.08 and abs((low[2] + high[2]) / 2) < 0.04
        assert _body_residual(mid) < 0.05, mode
    # Per shape, each pose is centred on its own box (the body sits off-centre, at other places in
    # the two), so the blend squeezes the body: smaller and thinner than either pose's.
    mid = decode(per_shape, {"reach_x": 0.5, "reach_y": 0.5}, resolution=48, mode="distance").vertices
    assert _body_residual(mid) > 0.15 and mid.max(axis=0)[2] - mid.min(axis=0)[2] < 1.6


def test_library_records_frames_and_old_files_read_as_per_shape(libraries, tmp_path):
    path = tmp_path / "poses.csdf"
    libraries["shared"].save(path)
    meta = read_library_meta(path)
    assert [s["frame"] for s in meta["shapes"]] == ["shared", "shared"]
    assert Library.load(path).shared_frame() == libraries["shared"].shared_frame()
    lines = "\n".join(_info_lines(path, meta))
    assert "2 shape(s) in one shared frame" in lines and "shared" in lines.splitlines()[-1]

    def rewrite(change):
        lib = Library.load(path)
        data = lib.metadata()
        change(data)
        save_file(lib.tensors()[0], path, metadata={"compact_sdf": json.dumps(data)})

    rewrite(lambda m: [s.pop("frame") for s in m["shapes"]])  # written before frames were recorded
    assert [s.frame for s in Library.load(path).shapes] == ["per-shape", "per-shape"]
    assert "each shape in its own" in "\n".join(_info_lines(path, read_library_meta(path)))
    rewrite(lambda m: m["shapes"][0].update(frame=["shared"]))
    with pytest.raises(LibraryError, match="unknown frame"):
        read_library_meta(path)


def test_an_add_joins_the_shared_frame_or_is_refused(libraries, sphere_mesh, tmp_path):
    shared = libraries["shared"]
    with pytest.raises(BadMeshError, match="per-shape"):
        encode({"moved": Mesh(sphere_mesh.vertices + [0, 0, 3.0], sphere_mesh.faces)}, library=shared, frame="shared",
               steps=5, device="cpu")
    grown = encode({"bent": _posed(sphere_mesh, np.pi / 4)}, library=shared, frame="shared", steps=5, device="cpu",
                   cache_dir=tmp_path)
    entry = grown.shapes[grown.index("bent")]
    assert entry.frame == "shared" and entry.transform == shared.shared_frame()
    assert grown.history[-1]["frame"] == "shared" and shared.names == ["reach_x", "reach_y"]
