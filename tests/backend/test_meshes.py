import numpy as np
import pytest

from backend.errors import BadMeshError
from backend.geometry.meshes import Mesh, load_mesh, normalization, save_mesh, validate_mesh

TRI = Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float), np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]))


@pytest.mark.parametrize(
    ("mesh", "message"),
    [
        (Mesh(np.zeros((0, 3)), np.zeros((0, 3), int)), "empty"),
        (Mesh(np.eye(3), np.zeros((0, 3), int)), "no faces"),
        (Mesh(np.array([[0, 0, 0], [1, np.nan, 0], [0, 1, 0]]), np.array([[0, 1, 2]])), "NaN"),
        (Mesh(np.array([[0, 0, 0], [1, np.inf, 0], [0, 1, 0]]), np.array([[0, 1, 2]])), "infinite"),
        (Mesh(np.eye(3), np.array([[0, 1, 5]])), "outside"),
        (Mesh(np.ones((3, 3)), np.array([[0, 1, 2]])), "no size"),
        (Mesh(np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]], float), np.array([[0, 1, 2], [0, 0, 1]])), "degenerate"),
    ],
)
def test_bad_meshes_get_clear_errors(mesh, message):
    with pytest.raises(BadMeshError, match=message):
        validate_mesh(mesh, "bad")


def test_degenerate_faces_are_dropped():
    faces = np.vstack([TRI.faces, [[0, 0, 1], [1, 2, 1]]])
    clean = validate_mesh(Mesh(TRI.vertices, faces))
    np.testing.assert_array_equal(clean.faces, TRI.faces)


def test_float_faces_rejected():
    with pytest.raises(BadMeshError, match="integer"):
        Mesh(np.eye(3), np.array([[0.0, 1.0, 2.0]]))


def test_normalization_fits_cube_and_inverts(sphere_mesh):
    v = sphere_mesh.vertices * 3 + 7
    t = normalization(v)
    p = t.apply(v)
    assert np.isclose(np.ptp(p, axis=0).max(), 1.8)
    np.testing.assert_allclose((p.max(0) + p.min(0)) / 2, 0, atol=1e-12)
    np.testing.assert_allclose(t.invert(p), v, atol=1e-12)


def test_load_errors(tmp_path):
    with pytest.raises(BadMeshError, match="no such file"):
        load_mesh(tmp_path / "missing.obj")
    (tmp_path / "a.xyz").write_text("1 2 3")
    with pytest.raises(BadMeshError, match="unsupported"):
        load_mesh(tmp_path / "a.xyz")
    (tmp_path / "junk.obj").write_text("this is not an obj file\n")
    with pytest.raises(BadMeshError):
        load_mesh(tmp_path / "junk.obj")


def test_load_merges_split_vertices(data_dir):
    mesh = load_mesh(data_dir / "spot_low_resolution.obj")
    assert len(mesh.vertices) == 829 and len(mesh.faces) == 1654


def test_save_roundtrip(tmp_path):
    save_mesh(tmp_path / "t.obj", TRI.vertices, TRI.faces)
    back = load_mesh(tmp_path / "t.obj")
    np.testing.assert_allclose(back.vertices, TRI.vertices)
    assert not list(tmp_path.glob(".*tmp"))
