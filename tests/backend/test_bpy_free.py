"""The engine never imports Blender, and its packages import only downward (backend/__init__.py)."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import backend

REPO = Path(__file__).resolve().parents[2]
BACKEND = REPO / "backend"
#: Layers bottom to top, as backend/__init__.py lists them; a module may import its own layer and those below.
LAYERS = [{"config", "errors", "progress", "names", "atomic_io", "lifecycle", "memory", "__init__"}, {"geometry"}, {"field"}, {"store"},
          {"latent"}, {"api"}, {"interfaces", "__main__"}]


def _layer(top: str) -> int:
    """Layer of a top-level module or package of backend; names of backend/__init__.py are layer 0."""
    return next((i for i, names in enumerate(LAYERS) if top in names), 0)


def _backend_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(backend.__path__, "backend.") if not m.name.endswith("__main__"))


def test_backend_imports_no_blender_module():
    modules = _backend_modules()
    assert "backend.api" in modules and "backend.interfaces.worker" in modules
    code = f"import sys; import {', '.join(modules)}; print([m for m in ('bpy', 'mathutils') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_backend_imports_only_run_downward():
    upward = []
    for path in BACKEND.rglob("*.py"):
        parts = path.relative_to(BACKEND).with_suffix("").parts
        own = _layer(parts[0])
        package = parts[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            base = package[: len(package) - (node.level - 1)]
            targets = [(*base, *node.module.split("."))] if node.module else [(*base, a.name) for a in node.names]
            for target in targets:
                top = target[0] if target else "__init__"
                if _layer(top) > own:
                    upward.append(f"{'/'.join(parts)} imports {'.'.join(target)}")
    assert not upward, upward
