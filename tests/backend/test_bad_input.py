"""Inputs that break naive pipelines: non-manifold, open, and huge meshes (issue 3)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import trimesh

from backend.api import decode, encode
from backend.geometry.meshes import Mesh
from backend.geometry.metrics import compare_meshes, component_count

REPO = Path(__file__).resolve().parents[2]


def test_non_manifold_mesh_encodes():
    """Two boxes sharing one edge: that edge has four faces."""
    a = trimesh.creation.box(extents=(1, 1, 1))
    b = trimesh.creation.box(extents=(1, 1, 1))
    b.apply_translation((1, 1, 0))
    merged = trimesh.util.concatenate([a, b])
    merged.merge_vertices()
    edges = np.sort(merged.edges, axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert counts.max() > 2  # really non-manifold
    mesh = Mesh(merged.vertices, merged.faces)
    lib = encode({"boxes": mesh}, preset="tiny", device="cpu")
    rec = decode(lib, "boxes", resolution=64)
    assert compare_meshes(mesh, Mesh(rec.vertices, rec.faces), n_samples=20_000).fscore_0_01 > 0.8


def test_open_mesh_decodes_closed(sphere_mesh):
    """A sphere with a hole: the winding number still defines an inside, the result is one piece."""
    open_sphere = Mesh(sphere_mesh.vertices, sphere_mesh.faces[20:])
    lib = encode({"open": open_sphere}, preset="tiny", device="cpu")
    rec = decode(lib, "open", resolution=64)
    assert component_count(rec.faces) == 1
    assert compare_meshes(sphere_mesh, Mesh(rec.vertices, rec.faces), n_samples=20_000).cd_l1 < 0.01


def test_two_million_faces_bounded_memory(tmp_path):
    """A 2M-face mesh encodes with bounded memory (peak resident size measured in a fresh process)."""
    script = textwrap.dedent(
        """
        import numpy as np
        from backend.api import encode
        from backend.geometry.meshes import Mesh

        n = 1000  # a torus as an n x n quad grid: 2 n^2 = 2M triangles
        u, v = np.meshgrid(np.linspace(0, 2 * np.pi, n, endpoint=False), np.linspace(0, 2 * np.pi, n, endpoint=False), indexing="ij")
        verts = np.stack([(1 + 0.4 * np.cos(v)) * np.cos(u), (1 + 0.4 * np.cos(v)) * np.sin(u), 0.4 * np.sin(v)], -1).reshape(-1, 3)
        i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        a, b, c, d = i * n + j, ((i + 1) % n) * n + j, ((i + 1) % n) * n + (j + 1) % n, i * n + (j + 1) % n
        faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
        assert len(faces) == 2_000_000
        encode({"big": Mesh(verts, faces)}, preset="tiny", steps=5, device="cpu")
        peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
        print(peak_kb)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    peak_mb = int(out.stdout.split()[-1]) / 1024
    assert peak_mb < 3000, f"peak resident memory {peak_mb:.0f} MB"
