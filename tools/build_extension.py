"""Validate the manifest and build the installable extension zip with Blender's own builder.

Usage: python tools/build_extension.py [--output-dir dist] [--blender /path/to/blender]

Uses ``blender --command extension build`` when a Blender binary is given or on PATH, else the
same builder shipped inside the ``bpy`` wheel (``addons_core/bl_pkg/cli/blender_ext.py``), which
needs no Blender. Both validate the manifest's tags against Blender's list (``--valid-tags``), as
extensions.blender.org does. Files excluded from the zip are listed in ``blender_manifest.toml`` [build].
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def builder_command(blender: str | None) -> tuple[list[str], list[str]]:
    """Command prefix that accepts ``validate``/``build`` subcommands, and its tag-check arguments."""
    blender = blender or shutil.which("blender")
    if blender:  # Blender's own command checks tags against its list by default
        return [blender, "--factory-startup", "--command", "extension"], []
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        sys.exit("No Blender found: pass --blender or install the bpy wheel (requirements-dev.txt).")
    root = Path(spec.origin).parent
    scripts = sorted(root.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    tags = sorted(root.glob("*/scripts/modules/_bpy_internal/extensions/tags.py"))
    if not scripts or not tags:
        sys.exit(f"bpy at {root} has no extension builder (addons_core/bl_pkg/cli) or tag list.")
    return [sys.executable, str(scripts[-1])], [f"--valid-tags={tags[-1]}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=REPO / "dist")
    parser.add_argument("--blender", help="Blender executable (default: 'blender' on PATH, else the bpy wheel)")
    args = parser.parse_args(argv)
    command, tags = builder_command(args.blender)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    steps = [
        [*command, "validate", *tags, str(REPO)],
        [*command, "build", *tags, "--source-dir", str(REPO), "--output-dir", str(args.output_dir.resolve())],
    ]
    for step in steps:
        print("+", " ".join(step), flush=True)
        if subprocess.run(step).returncode != 0:
            return 1
    archives = sorted(args.output_dir.glob("compact_sdf-*.zip"), key=lambda p: p.stat().st_mtime)
    if not archives:
        print("build reported success but wrote no zip", file=sys.stderr)
        return 1
    if subprocess.run([*command, "validate", *tags, str(archives[-1])]).returncode != 0:
        return 1
    print(f"built {archives[-1]} ({archives[-1].stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
