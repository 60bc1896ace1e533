"""Issue 10: editing the library from the shape list, result options, and file modes."""

from __future__ import annotations

import os
import stat

import bpy
import numpy as np
import pytest

RESOLUTION = 48


@pytest.fixture
def lib(tiny_library, tmp_path):
    """A writable copy of the session library, opened with every shape ticked."""
    tiny_library.open()
    path = tmp_path / "edit.csdf"
    path.write_bytes(tiny_library.path.read_bytes())
    assert bpy.ops.csdf.library_open(filepath=str(path)) == {"FINISHED"}
    settings = bpy.context.scene.csdf
    settings.resolution, settings.preset, settings.steps = RESOLUTION, "tiny", 30
    for item in settings.shapes:
        item.use, item.matrix, item.has_matrix = True, tiny_library.matrices[item.name], True
    tiny_library.path_copy = path
    return tiny_library


def _codes(path) -> dict[str, np.ndarray]:
    """Each shape's code as stored in the library file."""
    from backend.store.library_meta import read_library_meta
    from safetensors.numpy import load_file

    names = [shape["name"] for shape in read_library_meta(str(path))["shapes"]]
    return dict(zip(names, load_file(str(path))["codes"]))


def _activate(name: str) -> None:
    settings = bpy.context.scene.csdf
    settings.active_shape = [item.name for item in settings.shapes].index(name)


def test_rename_and_remove_from_the_list_keep_the_other_codes(lib):
    path, settings = lib.path_copy, bpy.context.scene.csdf
    before = _codes(path)
    _activate("brick")
    settings.shapes["brick"].weight = 0.25
    assert bpy.ops.csdf.shape_rename(new_name="block") == {"FINISHED"}
    assert [item.name for item in settings.shapes] == ["ball", "block", "ring"]
    assert settings.shapes["block"].weight == 0.25 and settings.shapes["block"].has_matrix, "list state follows"
    np.testing.assert_array_equal(_codes(path)["block"], before["brick"])
    with pytest.raises(RuntimeError, match="already has a shape named ring"):
        bpy.ops.csdf.shape_rename(new_name="ring")

    _activate("ring")
    assert bpy.ops.csdf.shape_remove() == {"FINISHED"}
    assert [item.name for item in settings.shapes] == ["ball", "block"]
    after = _codes(path)
    assert sorted(after) == ["ball", "block"]
    np.testing.assert_array_equal(after["ball"], before["ball"])
    assert "Removed ring" in bpy.context.window_manager.csdf_job.last_result


def test_replace_re_encodes_the_edited_object_only(lib, h):
    path, settings = lib.path_copy, bpy.context.scene.csdf
    sources = lib.add_sources()
    before = _codes(path)
    _activate("ball")
    sources["ball"].data.transform(np.diag([1.0, 1.0, 0.5, 1.0]))  # the artist squashes the ball
    sources["ball"].location.z += 2.0
    assert bpy.ops.csdf.shape_replace() == {"FINISHED"}
    assert [item.name for item in settings.shapes] == ["brick", "ring", "ball"]
    after = _codes(path)
    np.testing.assert_array_equal(after["brick"], before["brick"])
    np.testing.assert_array_equal(after["ring"], before["ring"])
    assert not np.array_equal(after["ball"], before["ball"])
    assert settings.shapes["ball"].matrix[2][3] == pytest.approx(sources["ball"].matrix_world[2][3])
    _activate("brick")
    bpy.data.objects.remove(sources["brick"])
    assert not bpy.ops.csdf.shape_replace.poll(), "no object to re-encode brick from"


def test_shape_operators_need_an_active_shape(h, tmp_path):
    bpy.context.scene.csdf.library_path = str(tmp_path / "none.csdf")
    for op in (bpy.ops.csdf.shape_replace, bpy.ops.csdf.shape_remove, bpy.ops.csdf.shape_rename):
        with pytest.raises(RuntimeError, match="Select a shape in the library list"):
            op()


def test_target_faces_decimates_results(lib):
    settings = bpy.context.scene.csdf
    for item in settings.shapes:
        item.use = item.name == "ball"
    assert bpy.ops.csdf.reconstruct() == {"FINISHED"}
    full = len(bpy.data.objects["ball_csdf"].data.polygons)
    settings.target_faces, settings.replace_results = 300, True
    assert bpy.ops.csdf.reconstruct() == {"FINISHED"}
    light = len(bpy.data.objects["ball_csdf"].data.polygons)
    assert full > 1000 and 0 < light <= 300, (full, light)


def test_replace_previous_keeps_the_object_and_swaps_its_mesh(lib):
    settings = bpy.context.scene.csdf
    for item in settings.shapes:
        item.use = item.name == "ring"
    assert bpy.ops.csdf.reconstruct() == {"FINISHED"}
    obj = bpy.data.objects["ring_csdf"]
    obj.location.x += 5.0
    old_mesh = obj.data.name
    settings.replace_results, settings.resolution = True, RESOLUTION + 8
    assert bpy.ops.csdf.reconstruct() == {"FINISHED"}
    assert [o.name for o in bpy.data.objects if o.name.startswith("ring_csdf")] == ["ring_csdf"]
    assert bpy.data.objects["ring_csdf"] == obj and obj.location.x == pytest.approx(lib.matrices["ring"][0][3] + 5.0)
    assert obj.data.name == "ring_csdf" and obj["csdf"]["resolution"] == RESOLUTION + 8
    assert old_mesh not in bpy.data.meshes or bpy.data.meshes[old_mesh] == obj.data, "old mesh removed"
    settings.replace_results = False
    assert bpy.ops.csdf.reconstruct() == {"FINISHED"}
    assert "ring_csdf.001" in bpy.data.objects


def test_heatmap_shows_in_solid_and_material_preview(addon, lib):
    lib.add_sources()
    settings = bpy.context.scene.csdf
    settings.heatmap = True
    for item in settings.shapes:
        item.use = item.name == "brick"
    assert bpy.ops.csdf.reconstruct() == {"FINISHED"}
    mesh = bpy.data.objects["brick_csdf"].data
    attributes = mesh.color_attributes
    assert attributes.active_color.name == attributes[attributes.render_color_index].name == "csdf_fidelity"
    material = mesh.materials[0]
    assert material.name == addon.operators.results.HEATMAP_MATERIAL
    attribute = next(n for n in material.node_tree.nodes if n.type == "ATTRIBUTE")
    assert attribute.attribute_name == "csdf_fidelity"
    assert any(link.from_node == attribute and link.to_socket.name == "Base Color" for link in material.node_tree.links)
    views = [a.spaces.active for a in bpy.context.screen.areas if a.type == "VIEW_3D"]
    assert views and all(v.shading.color_type == "VERTEX" for v in views), "Solid view shows attribute colours"


def test_unchanged_redo_reuses_the_decoded_meshes(addon, lib):
    """Issue 10, item 4: redoing Interpolate with the same settings needs no backend run."""
    session = addon.operators.session
    settings = bpy.context.scene.csdf
    for item in settings.shapes:
        item.use = item.name in ("ball", "ring")
    settings.interp_count = 2
    assert bpy.ops.csdf.interpolate(mode="PATH") == {"FINISHED"}
    first = np.array([v.co for v in bpy.data.objects["csdf_interp_01"].data.vertices])
    session.stop_worker()
    assert bpy.ops.csdf.interpolate(mode="PATH") == {"FINISHED"}
    assert session._client is None, "the redo started the backend"
    again = np.array([v.co for v in bpy.data.objects["csdf_interp_01.001"].data.vertices])
    np.testing.assert_array_equal(first, again)
    settings.interp_count = 3
    assert bpy.ops.csdf.interpolate(mode="PATH") == {"FINISHED"}
    assert session._client is not None, "changed settings decode again"


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_library_files_follow_the_umask_and_keep_their_mode(lib):
    """Issue 10, item 3: a new library gets 0666 & ~umask; a rewritten one keeps its mode."""
    umask = os.umask(0)
    os.umask(umask)
    assert _mode(lib.path) == 0o666 & ~umask, "new library file"
    path = lib.path_copy
    os.chmod(path, 0o644)
    _activate("ring")
    assert bpy.ops.csdf.shape_remove() == {"FINISHED"}
    assert _mode(path) == 0o644, "rewritten library file"
