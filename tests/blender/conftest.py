"""Real-bpy fixtures: the repo is enabled as extension ``bl_ext.<repo>.compact_sdf``, as in Blender.

``BLENDER_USER_RESOURCES`` points at a temp dir before ``import bpy`` so nothing is written to the
home directory. The extension repository is a temp dir holding a symlink ``compact_sdf`` → repo
root. Each test starts from an empty home file (which keeps the extension enabled).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

_TMP = Path(tempfile.mkdtemp(prefix="csdf-blender-tests-"))
os.environ["BLENDER_USER_RESOURCES"] = str(_TMP / "user")

bpy = pytest.importorskip("bpy")
import addon_utils  # noqa: E402  (needs bpy)
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data"
REPO_MODULE = "csdf_test"
#: Steps for the tiny preset in these tests: enough for recognisable shapes, seconds on 2 cores.
TINY_STEPS = 40
ADDON = f"bl_ext.{REPO_MODULE}.compact_sdf"


def _enable() -> ModuleType:
    root = _TMP / "extensions"
    root.mkdir(exist_ok=True)
    link = root / "compact_sdf"
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)
    repos = bpy.context.preferences.extensions.repos
    if REPO_MODULE not in {r.module for r in repos}:
        repos.new(name="Compact SDF tests", module=REPO_MODULE, custom_directory=str(root), source="USER")
    module = addon_utils.enable(ADDON, default_set=True, handle_error=_raise)
    assert module is not None, f"could not enable {ADDON}"
    return module


def _raise(exc: BaseException) -> None:
    raise exc


ADDON_MODULE = _enable()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if ADDON in bpy.context.preferences.addons:
        addon_utils.disable(ADDON, default_set=True)
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture
def addon() -> ModuleType:
    """The enabled extension package (``bl_ext.csdf_test.compact_sdf``)."""
    return sys.modules[ADDON]


@pytest.fixture(autouse=True)
def empty_scene() -> Iterator[None]:
    """Each test starts (and ends) with an empty file and no running job."""
    bpy.ops.wm.read_homefile(use_empty=True)
    yield
    session = sys.modules[f"{ADDON}.operators.session"]
    assert session.running() is None, "a test left a job running"
    bpy.ops.wm.read_homefile(use_empty=True)


def ico_sphere(name: str, *, radius: float = 1.0, subdivisions: int = 3, location=(0.0, 0.0, 0.0)):
    """A mesh object built without operators (fast and context-free)."""
    import bmesh

    mesh = bpy.data.meshes.new(name)
    bm = bmesh.new()
    bmesh.ops.create_icosphere(bm, subdivisions=subdivisions, radius=radius)
    bm.to_mesh(mesh)
    bm.free()
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    bpy.context.scene.collection.objects.link(obj)
    return obj


def box(name: str, *, size=(1.0, 0.6, 0.4), location=(0.0, 0.0, 0.0)):
    import bmesh

    mesh = bpy.data.meshes.new(name)
    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=1.0)
    bmesh.ops.scale(bm, vec=size, verts=bm.verts)
    bm.to_mesh(mesh)
    bm.free()
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    bpy.context.scene.collection.objects.link(obj)
    return obj


def torus(name: str, *, location=(0.0, 0.0, 0.0)):
    """A torus mesh object from arrays (major radius 0.7, minor 0.25)."""
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 32, endpoint=False), np.linspace(0, 2 * np.pi, 16, endpoint=False))
    x = (0.7 + 0.25 * np.cos(v)) * np.cos(u)
    y = (0.7 + 0.25 * np.cos(v)) * np.sin(u)
    z = 0.25 * np.sin(v)
    vertices = np.stack([x, y, z], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(32), np.arange(16))
    a, b = j * 32 + i, j * 32 + (i + 1) % 32
    c, d = ((j + 1) % 16) * 32 + (i + 1) % 32, ((j + 1) % 16) * 32 + i
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    mesh = sys.modules[f"{ADDON}.mesh_bridge"].arrays_to_mesh(name, vertices, faces)
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    bpy.context.scene.collection.objects.link(obj)
    return obj


def select(*objects) -> None:
    """Select exactly ``objects`` (the last one active)."""
    for obj in bpy.context.scene.objects:
        obj.select_set(obj in objects)
    if objects:
        bpy.context.view_layer.objects.active = objects[-1]


class RecordingLayout:
    """Stands in for ``UILayout`` in ``Panel.draw``: records calls, checks property names exist."""

    def __init__(self, calls: list | None = None) -> None:
        self.calls = calls if calls is not None else []
        self.use_property_split = False
        self.use_property_decorate = True
        self.enabled = self.active = True
        self.alignment = "EXPAND"

    def _child(self, *args, **kwargs) -> RecordingLayout:
        return RecordingLayout(self.calls)

    row = column = box = split = column_flow = grid_flow = _child

    def prop(self, data, prop: str, **kwargs) -> None:
        assert prop in data.bl_rna.properties, f"{data!r} has no property {prop!r}"
        self.calls.append(("prop", prop))

    def operator(self, idname: str, **kwargs):
        module, _, name = idname.partition(".")
        assert hasattr(getattr(bpy.ops, module), name), f"no operator {idname}"
        self.calls.append(("operator", idname))
        return _OperatorProps()

    def label(self, **kwargs) -> None:
        self.calls.append(("label", kwargs.get("text", "")))

    def progress(self, **kwargs) -> None:
        self.calls.append(("progress", kwargs.get("factor")))

    def separator(self, **kwargs) -> None:
        self.calls.append(("separator",))

    def template_list(self, list_type: str, list_id: str, data, prop: str, active_data, active_prop: str, **kwargs):
        assert hasattr(bpy.types, list_type), f"UIList {list_type} not registered"
        assert prop in data.bl_rna.properties and active_prop in active_data.bl_rna.properties
        self.calls.append(("template_list", list_type))


class _OperatorProps:
    """Accepts operator property assignments made in draw code."""

    def __setattr__(self, name: str, value) -> None:
        object.__setattr__(self, name, value)


class _DrawSelf:
    """``self`` for a draw method: a recording ``layout``; other attributes come from ``target``."""

    def __init__(self, layout: RecordingLayout, target=None) -> None:
        self.layout = layout
        self._target = target

    def __getattr__(self, name: str):
        return getattr(self._target, name)


def draw(function, *args, target=None) -> list:
    """Call a draw function (``Panel.draw``, ``AddonPreferences.draw``) with a recording layout."""
    layout = RecordingLayout()
    function(_DrawSelf(layout, target), *args)
    return layout.calls


class Helpers:
    """Scene builders and UI recorders shared by the tests (exposed as the ``h`` fixture)."""

    ico_sphere = staticmethod(ico_sphere)
    box = staticmethod(box)
    torus = staticmethod(torus)
    select = staticmethod(select)
    draw = staticmethod(draw)
    RecordingLayout = RecordingLayout
    DATA = DATA
    ADDON = ADDON
    TINY_STEPS = TINY_STEPS


@pytest.fixture
def h() -> type[Helpers]:
    return Helpers


class TinyLibrary:
    """A library encoded once per session from three objects: ball, brick, ring."""

    def __init__(self, path: Path, sources: dict, matrices: dict, report: str) -> None:
        self.path = path
        self.sources = sources  # name -> (vertices, faces) in object space
        self.matrices = matrices  # name -> world matrix
        self.report = report

    def open(self) -> None:
        """Open the library in the current scene and tick every shape."""
        assert bpy.ops.csdf.library_open(filepath=str(self.path)) == {"FINISHED"}
        settings = bpy.context.scene.csdf
        for item in settings.shapes:
            item.use = True
            item.matrix, item.has_matrix = self.matrices[item.name], True

    def add_sources(self) -> dict:
        """Put the source objects back into the (empty) scene, as they were encoded."""
        mesh_bridge = sys.modules[f"{ADDON}.mesh_bridge"]
        objects = {}
        for name, (vertices, faces) in self.sources.items():
            obj = bpy.data.objects.new(name, mesh_bridge.arrays_to_mesh(name, vertices, faces))
            obj.matrix_world = self.matrices[name]
            bpy.context.scene.collection.objects.link(obj)
            objects[name] = obj
        return objects


@pytest.fixture(scope="session")
def tiny_library() -> TinyLibrary:
    """Encode ball, brick and ring (tiny preset) through ``csdf.encode_selected``."""
    pytest.importorskip("torch")
    pytest.importorskip(f"{ADDON}.backend.api")
    mesh_bridge = sys.modules[f"{ADDON}.mesh_bridge"]
    bpy.ops.wm.read_homefile(use_empty=True)
    objects = [
        ico_sphere("ball", radius=0.8, location=(-3.0, 0.0, 0.0)),
        box("brick", location=(0.0, 0.0, 0.5)),
        torus("ring", location=(3.0, 1.0, 0.0)),
    ]
    objects[1].rotation_euler = (0.0, 0.0, 0.5)
    objects[2].scale = (1.5, 1.5, 1.5)
    bpy.context.view_layer.update()
    select(*objects)
    settings = bpy.context.scene.csdf
    settings.library_path = str(_TMP / "session" / "tiny.csdf")
    settings.preset, settings.steps = "tiny", TINY_STEPS
    assert bpy.ops.csdf.encode_selected() == {"FINISHED"}
    depsgraph = bpy.context.evaluated_depsgraph_get()
    sources = {}
    for obj in objects:
        arrays = mesh_bridge.object_to_arrays(obj, depsgraph)
        sources[obj.name] = (arrays.vertices, arrays.faces)
    matrices = {obj.name: obj.matrix_world.copy() for obj in objects}
    return TinyLibrary(Path(settings.library_path), sources, matrices, bpy.context.window_manager.csdf_job.last_result)
