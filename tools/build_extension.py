"""Validate the manifest and build the installable extension zip with Blender's own builder.

Usage: python tools/build_extension.py [--output-dir dist] [--blender /path/to/blender]

Uses ``blender --command extension build`` when a Blender binary is given or on PATH, else the
same builder shipped inside the ``bpy`` wheel (``addons_core/bl_pkg/cli/blender_ext.py``), which
needs no Blender. Files excluded from the zip are listed in ``blender_manifest.toml`` [build].
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def builder_command(blender: str | None) -> list[str]:
    """Command prefix that accepts ``validate``/``build`` subcommands."""
    blender = blender or shutil.which("blender")
    if blender:
        return [blender, "--factory-startup", "--command", "extension"]
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        sys.exit("No Blender found: pass --blender or install the bpy wheel (requirements-dev.txt).")
    scripts = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not scripts:
        sys.exit(f"bpy at {Path(spec.origin).parent} has no extension builder (addons_core/bl_pkg/cli).")
    return [sys.executable, str(scripts[-1])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=REPO / "dist")
    parser.add_argument("--blender", help="Blender executable (default: 'blender' on PATH, else the bpy wheel)")
    args = parser.parse_args(argv)
    command = builder_command(args.blender)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    steps = [
        [*command, "validate", str(REPO)],
        [*command, "build", "--source-dir", str(REPO), "--output-dir", str(args.output_dir.resolve())],
    ]
    for step in steps:
        print("+", " ".join(step), flush=True)
        if subprocess.run(step).returncode != 0:
            return 1
    archives = sorted(args.output_dir.glob("compact_sdf-*.zip"), key=lambda p: p.stat().st_mtime)
    if not archives:
        print("build reported success but wrote no zip", file=sys.stderr)
        return 1
    if subprocess.run([*command, "validate", str(archives[-1])]).returncode != 0:
        return 1
    print(f"built {archives[-1]} ({archives[-1].stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
