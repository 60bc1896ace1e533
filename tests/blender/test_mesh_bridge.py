"""Blender mesh ↔ arrays: exact round trips, modifiers, heatmap, and 1M-triangle timings."""

from __future__ import annotations

import time

import bpy
import numpy as np
import pytest


@pytest.fixture
def mb(addon):
    return addon.mesh_bridge


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n+1)^2 vertices, 2 n^2 triangles."""
    xs, ys = np.meshgrid(np.linspace(0, 1, n + 1), np.linspace(0, 1, n + 1))
    v = np.stack([xs.ravel(), ys.ravel(), 0.1 * np.sin(6 * xs.ravel())], 1).astype(np.float32)
    i = (np.arange(n)[:, None] * (n + 1) + np.arange(n)[None, :]).ravel()
    f = np.concatenate([np.stack([i, i + 1, i + n + 2], 1), np.stack([i, i + n + 2, i + n + 1], 1)])
    return v, f.astype(np.int32)


def test_round_trip_is_exact(mb):
    v, f = _grid(20)
    mesh = mb.arrays_to_mesh("grid", v, f)
    assert (len(mesh.vertices), len(mesh.polygons)) == (len(v), len(f))
    back = mb.mesh_to_arrays(mesh)
    assert back.vertices.dtype == np.float32 and back.faces.dtype == np.int32
    np.testing.assert_array_equal(back.vertices, v)
    np.testing.assert_array_equal(back.faces, f)
    assert all(p.use_smooth for p in mesh.polygons)


def test_quads_are_triangulated_and_modifiers_applied(mb, h):
    obj = h.box("brick")
    assert len(obj.data.polygons) == 6
    raw = mb.object_to_arrays(obj, bpy.context.evaluated_depsgraph_get())
    assert raw.faces.shape == (12, 3)
    obj.modifiers.new("sub", "SUBSURF").levels = 1
    obj.location = (5, 0, 0)
    evaluated = mb.object_to_arrays(obj, bpy.context.evaluated_depsgraph_get())
    assert evaluated.faces.shape == (48, 3)
    assert np.abs(evaluated.vertices[:, 0]).max() < 1.0, "object space, not world space"


def test_fill_mesh_replaces_geometry_in_place(mb):
    v, f = _grid(4)
    mesh = mb.arrays_to_mesh("m", v, f)
    v2, f2 = _grid(2)
    mb.fill_mesh(mesh, v2, f2)
    np.testing.assert_array_equal(mb.mesh_to_arrays(mesh).faces, f2)


def test_bad_indices_are_refused(mb):
    with pytest.raises(ValueError, match="out of range"):
        mb.arrays_to_mesh("bad", np.zeros((3, 3)), np.array([[0, 1, 3]]))


def test_heatmap_attributes(mb):
    v, f = _grid(3)
    mesh = mb.arrays_to_mesh("m", v, f)
    distance = np.linspace(0, 2, len(v))
    mb.set_vertex_distance(mesh, distance, scale=1.0)
    stored = np.empty(len(v), np.float32)
    mesh.attributes["csdf_distance"].data.foreach_get("value", stored)
    np.testing.assert_allclose(stored, distance, rtol=1e-6)
    colors = np.empty(len(v) * 4, np.float32)
    mesh.color_attributes["csdf_fidelity"].data.foreach_get("color", colors)
    colors = colors.reshape(-1, 4)
    np.testing.assert_allclose(colors[0], mb.heatmap(np.array([0.0]))[0])
    np.testing.assert_allclose(colors[-1], mb.heatmap(np.array([1.0]))[0], err_msg="clipped at scale")
    assert mesh.color_attributes.active_color.name == "csdf_fidelity"
    mb.set_vertex_distance(mesh, distance, scale=2.0)  # replacing keeps one attribute of each
    assert [a.name for a in mesh.attributes].count("csdf_distance") == 1


def test_one_million_triangles_convert_in_well_under_a_second_each_way(mb, h, record_property):
    v, f = _grid(708)
    assert len(f) > 1_000_000
    start = time.perf_counter()
    mesh = mb.arrays_to_mesh("big", v, f)
    to_blender = time.perf_counter() - start
    obj = bpy.data.objects.new("big", mesh)
    bpy.context.scene.collection.objects.link(obj)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    start = time.perf_counter()
    back = mb.object_to_arrays(obj, depsgraph)
    to_arrays = time.perf_counter() - start
    record_property("to_blender_s", to_blender)
    record_property("to_arrays_s", to_arrays)
    print(f"\n1M triangles ({len(f)}): arrays→Blender {to_blender:.3f} s, Blender→arrays {to_arrays:.3f} s")
    assert back.faces.shape == f.shape
    assert to_blender < 2.0 and to_arrays < 2.0
