"""The engine never imports Blender: every backend module loads without bpy or mathutils."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import backend

REPO = Path(__file__).resolve().parents[2]


def test_backend_imports_no_blender_module():
    modules = sorted(f"backend.{m.name}" for m in pkgutil.iter_modules(backend.__path__) if m.name != "__main__")
    assert "backend.api" in modules and "backend.worker" in modules
    code = f"import sys; import {', '.join(modules)}; print([m for m in ('bpy', 'mathutils') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
