"""Render sources, their reconstructions (fidelity heatmap) and an interpolation strip to one PNG.

Runs headless through the extension's own operators, with the PyPI ``bpy`` module or Blender::

    .venv/bin/python tools/render_showcase.py --meshes a.obj b.obj c.obj --out docs/images/showcase.png
    blender -b --python tools/render_showcase.py -- --meshes a.obj b.obj c.obj

Rows, top to bottom: source meshes (grey), reconstructions coloured by distance to their source
(blue = on the surface, red = ``--heatmap-range`` of the size or more), and ``--count`` shapes
interpolated along the path through all sources. An existing ``--library`` is reused unless
``--reencode`` is given.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SLOT = 2.2  # distance between neighbouring objects
SIZE = 1.6  # longest side of each object as shown
TURN = math.radians(-35.0)  # every object is turned about Z for a three-quarter view


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meshes", nargs="+", type=Path, required=True, help="two or more .obj/.ply/.stl files")
    parser.add_argument("--library", type=Path, default=REPO / "out" / "showcase" / "showcase.csdf")
    parser.add_argument("--reencode", action="store_true", help="encode even if --library exists")
    parser.add_argument("--preset", default="tiny", choices=("tiny", "fast", "paper"))
    parser.add_argument("--steps", type=int, default=0, help="training steps (0: the preset's)")
    parser.add_argument("--resolution", type=int, default=128, help="decoding resolution")
    parser.add_argument("--count", type=int, default=5, help="shapes in the interpolation strip")
    parser.add_argument("--heatmap-range", type=float, default=0.02, help="fraction of the size shown as red")
    parser.add_argument("--engine", default="CYCLES", choices=("CYCLES", "BLENDER_WORKBENCH"))
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "showcase.png")
    return parser.parse_args(argv)


def enable_extension():
    """The enabled ``compact_sdf`` extension; when absent, enable this checkout through a temp repository."""
    import addon_utils
    import bpy

    for name in bpy.context.preferences.addons.keys():
        if name.endswith(".compact_sdf"):
            return sys.modules[name]
    root = Path(tempfile.mkdtemp(prefix="csdf-showcase-"))
    (root / "compact_sdf").symlink_to(REPO, target_is_directory=True)
    bpy.context.preferences.extensions.repos.new(
        name="Compact SDF checkout", module="csdf_checkout", custom_directory=str(root), source="USER"
    )
    return addon_utils.enable("bl_ext.csdf_checkout.compact_sdf", default_set=True)


def fit(obj, slot_x: float, slot_z: float) -> None:
    """Scale, turn and move ``obj`` so its bounding box (longest side SIZE) is centred on the slot."""
    from mathutils import Matrix, Vector

    corners = [obj.matrix_world @ Vector(c) for c in obj.bound_box]
    lo = Vector(min(c[i] for c in corners) for i in range(3))
    hi = Vector(max(c[i] for c in corners) for i in range(3))
    scale = SIZE / max(hi - lo)
    centre = (lo + hi) / 2
    obj.matrix_world = (
        Matrix.Translation((slot_x, 0.0, slot_z))
        @ Matrix.Rotation(TURN, 4, "Z")
        @ Matrix.Scale(scale, 4)
        @ Matrix.Translation(-centre)
        @ obj.matrix_world
    )


def material(name: str, color=None, attribute: str | None = None):
    import bpy

    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = 0.45
    if attribute:
        node = mat.node_tree.nodes.new("ShaderNodeAttribute")
        node.attribute_name = attribute
        mat.node_tree.links.new(node.outputs["Color"], bsdf.inputs["Base Color"])
    else:
        bsdf.inputs["Base Color"].default_value = (*color, 1.0)
    mat.diffuse_color = (*(color or (0.6, 0.6, 0.6)), 1.0)
    return mat


def label(text: str, x: float, z: float) -> None:
    import bpy

    curve = bpy.data.curves.new(f"label {text}", "FONT")
    curve.body, curve.size, curve.align_x, curve.align_y = text, 0.32, "RIGHT", "CENTER"
    obj = bpy.data.objects.new(curve.name, curve)
    obj.location, obj.rotation_euler = (x, 0.0, z), (math.pi / 2, 0.0, 0.0)
    obj.data.materials.append(material("label", (0.05, 0.05, 0.05)))
    bpy.context.scene.collection.objects.link(obj)


def stage(scene, columns: int, engine: str, samples: int, width: int) -> None:
    """Orthographic camera facing the rows, two lights, white background, render settings."""
    import bpy

    left, right = -1.6 * SLOT, (columns - 0.5) * SLOT
    cam = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    cam.data.type, cam.data.ortho_scale = "ORTHO", right - left + 0.4
    cam.location, cam.rotation_euler = ((left + right) / 2, -20.0, 0.0), (math.pi / 2, 0.0, 0.0)
    scene.collection.objects.link(cam)
    scene.camera = cam
    for name, energy, rotation in (("key", 3.0, (0.9, 0.2, -0.6)), ("fill", 1.0, (1.2, -0.3, 0.9))):
        sun = bpy.data.objects.new(name, bpy.data.lights.new(name, "SUN"))
        sun.data.energy, sun.rotation_euler = energy, rotation
        scene.collection.objects.link(sun)
    world = bpy.data.worlds.new("white")
    world.color = (1.0, 1.0, 1.0)
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6
    scene.world = world
    scene.render.engine = engine
    scene.render.resolution_x = width
    scene.render.resolution_y = int(width * 3 * SLOT / (right - left + 0.4))
    scene.render.film_transparent = False
    scene.view_settings.view_transform = "Standard"
    if engine == "CYCLES":
        scene.cycles.device, scene.cycles.samples = "CPU", samples
    else:
        scene.display.shading.light = "STUDIO"
        scene.display.shading.color_type = "MATERIAL"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if len(args.meshes) < 2:
        sys.exit("give two or more --meshes")
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="csdf-showcase-user-"))
    import bpy
    from mathutils import Matrix

    addon = enable_extension()
    run = addon.cli_command.run
    bpy.ops.wm.read_homefile(use_empty=True)
    started = time.perf_counter()
    names = [p.stem for p in args.meshes]
    if args.reencode or not args.library.is_file():
        args.library.parent.mkdir(parents=True, exist_ok=True)
        argv = ["encode", "--library", str(args.library), "--mode", "new", "--preset", args.preset,
                "--steps", str(args.steps), "--meshes", *map(str, args.meshes)]
        if run(argv) != 0:
            return 1
    else:
        for path in args.meshes:
            addon.cli_command.import_mesh_file(bpy.context, path)
    sources = [bpy.data.objects[n] for n in names]
    common = ["--library", str(args.library), "--resolution", str(args.resolution)]
    bpy.context.scene.csdf.heatmap_range = args.heatmap_range
    if run(["reconstruct", *common, "--shapes", *names, "--heatmap"]) != 0:
        return 1
    if run(["interpolate", *common, "--shapes", *names, "--count", str(args.count)]) != 0:
        return 1

    grey, blue = material("source", (0.55, 0.55, 0.57)), material("blend", (0.25, 0.45, 0.8))
    heat = material("fidelity", attribute="csdf_fidelity")
    for column, source in enumerate(sources):
        recon = bpy.data.objects[f"{source.name}_csdf"]
        fit(source, column * SLOT, SLOT)
        recon.matrix_world = Matrix.Translation((0.0, 0.0, -SLOT)) @ source.matrix_world  # same frame, one row down
        for obj, mat in ((source, grey), (recon, heat)):
            obj.data.materials.clear()
            obj.data.materials.append(mat)
    orientation = sources[0].matrix_world.to_3x3().normalized().to_4x4()  # e.g. the importer's Y-up turn
    for column in range(args.count):
        obj = bpy.data.objects[f"csdf_interp_{column:02d}"]
        obj.matrix_world = orientation
        fit(obj, column * SLOT, -SLOT)
        obj.data.materials.append(blue)
    for text, z in (("sources", SLOT), ("reconstructed", 0.0), ("interpolated", -SLOT)):
        label(text, -0.75 * SLOT, z)
    scene = bpy.context.scene
    stage(scene, max(len(sources), args.count), args.engine, args.samples, args.width)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    scene.render.filepath = str(args.out.resolve())
    bpy.ops.render.render(write_still=True)
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]))
