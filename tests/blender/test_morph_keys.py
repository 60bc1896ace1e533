"""Morphing the artist's own mesh into shape keys: ``interpolate --mode morph --shape-keys`` headless."""

from __future__ import annotations

import sys

import bpy
import numpy as np
import pytest


def _limb_object(h, name: str, angle: float) -> bpy.types.Object:
    from backend.geometry.poses import limb_pose

    pose = limb_pose(angle, sections=24)
    mesh = sys.modules[f"{h.ADDON}.mesh_bridge"].arrays_to_mesh(name, pose.vertices, pose.faces)
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _evaluated(obj: bpy.types.Object) -> np.ndarray:
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    co = np.empty(len(evaluated.data.vertices) * 3, np.float32)
    evaluated.data.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def test_a_pose_morphs_into_shape_keys_played_by_one_blend_slider(addon, h, tmp_path, capsys):
    pytest.importorskip("torch")
    run = addon.cli_command.run
    straight, bent = _limb_object(h, "straight", 0.0), _limb_object(h, "bent", 90.0)
    straight.data.uv_layers.new(name="artist_uv")
    material = bpy.data.materials.new("skin")
    straight.data.materials.append(material)
    count = len(straight.data.vertices)
    library = tmp_path / "limbs.csdf"
    argv = ["encode", "--objects", "straight", "bent", "--library", str(library), "--preset", "tiny",
            "--steps", str(h.TINY_STEPS), "--frame", "shared"]
    assert run(argv) == 0, capsys.readouterr()
    argv = ["interpolate", "--library", str(library), "--shapes", "straight", "bent", "--count", "4", "--mode", "morph",
            "--shape-keys", "--object", "straight", "--resolution", "48"]
    assert run(argv) == 0, capsys.readouterr()
    assert "added 3 shape keys" in capsys.readouterr().out
    keys = straight.data.shape_keys.key_blocks
    assert [k.name for k in keys][0] == "Basis" and len(keys) == 4
    assert len(straight.data.vertices) == count and "artist_uv" in straight.data.uv_layers
    assert straight.data.materials[0] == material and len(straight.data.polygons) == len(bent.data.polygons)
    key_co = [np.array([v.co for v in k.data]) for k in keys]
    # Blend plays the path in order: 1/3 is the first key exactly, 1/2 halfway between the first two keys
    for blend, expected in [(0.0, key_co[0]), (1 / 3, key_co[1]), (0.5, 0.5 * (key_co[1] + key_co[2])), (1.0, key_co[3])]:
        straight["Blend"] = blend
        straight.data.shape_keys.update_tag()
        bpy.context.view_layer.update()
        np.testing.assert_allclose(_evaluated(straight), expected, atol=1e-4)
    # the last key lies on the bent pose: its tip swung over, not faded
    tip = key_co[3][np.argmax(key_co[0][:, 2])]
    target_tip = np.array(bent.data.vertices[int(np.argmax(key_co[0][:, 2]))].co)
    assert np.linalg.norm(tip - target_tip) < 0.25, (tip, target_tip)

    # a second run replaces the morph keys, leaving the artist's own keys alone
    straight.shape_key_add(name="artist_smile", from_mix=False)
    argv[argv.index("4")] = "3"
    assert run(argv) == 0, capsys.readouterr()
    names = [k.name for k in straight.data.shape_keys.key_blocks]
    assert "artist_smile" in names and sum(n.startswith("csdf ") for n in names) == 2


def test_shapes_that_cannot_correspond_say_why(addon, h, tmp_path, capsys):
    pytest.importorskip("torch")
    run = addon.cli_command.run
    h.ico_sphere("ball", radius=0.7)
    h.torus("ring")
    library = tmp_path / "lib.csdf"
    argv = ["encode", "--objects", "ball", "ring", "--library", str(library), "--preset", "tiny",
            "--steps", str(h.TINY_STEPS), "--frame", "shared"]
    assert run(argv) == 0, capsys.readouterr()
    capsys.readouterr()
    argv = ["interpolate", "--library", str(library), "--shapes", "ball", "ring", "--count", "3", "--mode", "morph",
            "--shape-keys", "--object", "ball", "--resolution", "48"]
    assert run(argv) != 0
    printed = capsys.readouterr()
    assert "holes through them" in printed.out + printed.err
    assert bpy.data.objects["ball"].data.shape_keys is None
    assert "holes" in bpy.context.scene.csdf.morph_note
    argv = ["interpolate", "--library", str(library), "--shapes", "ball", "ring", "--count", "3", "--mode", "morph",
            "--resolution", "32"]
    assert run(argv) == 0  # in-betweens still come: as a Spherical blend, and the panel says why
    assert "holes" in bpy.context.scene.csdf.morph_note
