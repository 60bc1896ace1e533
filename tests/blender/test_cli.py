"""``blender --command compact_sdf ...``: the registered handler called with argv lists."""

from __future__ import annotations

import json

import bpy
import pytest


@pytest.fixture
def run(addon):
    return addon.cli_command.run


def test_usage_errors_exit_2(run, capsys):
    assert run([]) == 2
    assert run(["explode"]) == 2
    assert run(["encode"]) == 2
    assert "--library" in capsys.readouterr().err
    assert run(["interpolate", "--library", "x.csdf", "--shapes", "a", "--count", "three"]) == 2


def test_help_exits_0(run, capsys):
    assert run(["reconstruct", "--help"]) == 0
    assert "--resolution" in capsys.readouterr().out


def test_info_on_a_corrupt_file(run, tmp_path, capsys):
    bad = tmp_path / "bad.csdf"
    bad.write_bytes(b"\x00" * 3)
    assert run(["info", "--library", str(bad)]) == 2
    assert "Cannot read library bad.csdf" in capsys.readouterr().err


def test_encode_unknown_object_or_file(run, tmp_path, capsys):
    assert run(["encode", "--library", str(tmp_path / "l.csdf"), "--objects", "Nope"]) == 2
    assert "no object named 'Nope'" in capsys.readouterr().err
    assert run(["encode", "--library", str(tmp_path / "l.csdf"), "--meshes", str(tmp_path / "x.fbx")]) == 2
    assert not (tmp_path / "l.csdf").exists()


def test_backend_unavailable_exits_3(run, h, tmp_path, capsys, addon):
    h.ico_sphere("ball")
    code = run(["encode", "--library", str(tmp_path / "l.csdf"), "--python", "/no/such/python", "--preset", "tiny"])
    assert code == 3
    assert "Backend Python not found" in capsys.readouterr().err
    assert addon.preferences.get_prefs().python_path == "", "the --python override is restored"
    bpy.context.window_manager.csdf_backend.state = "UNKNOWN"


def test_encode_blend_objects_and_mesh_file_then_reconstruct(run, h, tmp_path, capsys):
    pytest.importorskip("torch")
    h.ico_sphere("ball", radius=0.7, location=(-2, 0, 0))
    h.box("brick", location=(2, 0, 0))
    source_blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(source_blend))
    bpy.ops.wm.read_homefile(use_empty=True)
    library, out_blend, out_dir = tmp_path / "lib.csdf", tmp_path / "out.blend", tmp_path / "objs"
    argv = [
        "encode", "--blend", str(source_blend), "--objects", "ball", "brick",
        "--meshes", str(h.DATA / "spot_low_resolution.obj"), "--library", str(library),
        "--preset", "tiny", "--steps", str(h.TINY_STEPS), "--frame", "shared", "--reconstruct", "--resolution", "48",
        "--save-blend", str(out_blend), "--export-dir", str(out_dir),
    ]
    assert run(argv) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "Encoded 3 shapes" in out and "Reconstructed 3 of 3" in out and "CD-L1" in out
    assert sorted(p.name for p in out_dir.glob("*.obj")) == ["ball_csdf.obj", "brick_csdf.obj", "spot_low_resolution_csdf.obj"]
    assert out_blend.is_file()
    assert sorted(o.name for o in bpy.data.collections["Compact SDF"].objects) == [
        "ball_csdf", "brick_csdf", "spot_low_resolution_csdf",
    ]

    assert run(["info", "--library", str(library), "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in meta["shapes"]] == ["ball", "brick", "spot_low_resolution"]
    assert [s["frame"] for s in meta["shapes"]] == ["shared"] * 3  # --frame reached the engine
    assert run(["info", "--library", str(library)]) == 0
    out = capsys.readouterr().out
    assert "3 shapes" in out and out.count("frame shared") == 3

    bpy.ops.wm.read_homefile(use_empty=True)
    assert run(["reconstruct", "--library", str(library), "--shapes", "brick", "--resolution", "32"]) == 0
    assert [o.name for o in bpy.data.objects] == ["brick_csdf"]
    assert run(["reconstruct", "--library", str(library), "--shapes", "nope"]) == 2
    assert "not in lib.csdf: nope" in capsys.readouterr().err

    bpy.ops.wm.read_homefile(use_empty=True)
    argv = ["interpolate", "--library", str(library), "--shapes", "ball", "brick", "--count", "3", "--resolution", "32",
            "--pace", "even"]
    assert run(argv) == 0
    assert sorted(o.name for o in bpy.data.objects) == ["csdf_interp_00", "csdf_interp_01", "csdf_interp_02"]
    position = bpy.data.objects["csdf_interp_01"]["csdf"]["position"]
    assert 0 < position < 1
    bpy.ops.wm.read_homefile(use_empty=True)
    argv = ["interpolate", "--library", str(library), "--shapes", "ball", "brick", "--weights", "0.3", "0.7",
            "--resolution", "32"]
    assert run(argv) == 0
    assert [o.name for o in bpy.data.objects] == ["csdf_blend"]


def test_check_reports_the_backend(run, capsys):
    pytest.importorskip("torch")
    assert run(["check", "--device", "cpu"]) == 0
    assert "Backend ready" in capsys.readouterr().out
