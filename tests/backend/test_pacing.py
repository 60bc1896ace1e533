"""Evenly paced interpolation paths (backend.latent.pacing and interpolate(pace="even"))."""

import numpy as np
import pytest

from backend.api import interpolate
from backend.geometry.meshes import Mesh
from backend.latent.pacing import even_positions, step_change


def _sphere(radius: float, subdivisions: int = 3) -> Mesh:
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return Mesh(np.asarray(s.vertices), np.asarray(s.faces))


def test_step_change_is_the_symmetric_surface_distance():
    assert step_change(_sphere(0.5), _sphere(0.5)) == pytest.approx(0.0, abs=1e-3)
    assert step_change(_sphere(0.5), _sphere(0.7)) == pytest.approx(0.2, abs=0.01)
    empty = Mesh(np.zeros((0, 3)), np.zeros((0, 3), np.int64))
    # a vanished surface counts as shrunk to a point: the sphere's mean distance from its centre
    assert step_change(_sphere(0.5), empty) == pytest.approx(0.5, abs=0.01)
    assert step_change(empty, empty) == 0.0


def test_even_positions_equalise_the_change_per_step():
    """Radius r(t) = t^3 grows slowly, then fast: even pacing puts the positions where r is spaced evenly."""
    probes_at = np.linspace(0, 1, 41)
    probes = [_sphere(0.2 + 0.6 * t**3) for t in probes_at]
    positions = even_positions(probes, probes_at, 5)
    assert positions[0] == 0.0 and positions[-1] == 1.0 and np.all(np.diff(positions) > 0)
    radii = 0.2 + 0.6 * positions**3
    np.testing.assert_allclose(np.diff(radii), 0.15, atol=0.02)
    # no change at all along the probes: evenly spaced
    np.testing.assert_allclose(even_positions([_sphere(0.5)] * 3, np.array([0, 0.5, 1]), 5), np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="one probe mesh per position"):
        even_positions(probes[:3], probes_at, 5)


def test_even_pace_keeps_the_endpoints_and_records_positions(tiny_library):
    uniform = interpolate(tiny_library, ["sphere", "torus"], 4, resolution=40)
    even = interpolate(tiny_library, ["sphere", "torus"], 4, resolution=40, pace="even")
    assert [m.stats["path_position"] for m in uniform] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    positions = [m.stats["path_position"] for m in even]
    assert positions[0] == 0.0 and positions[-1] == 1.0 and np.all(np.diff(positions) > 0)
    assert even[1].stats["weights"] == pytest.approx({"sphere": 1 - positions[1], "torus": positions[1]})
    for a, b in ((uniform[0], even[0]), (uniform[-1], even[-1])):
        np.testing.assert_array_equal(a.vertices, b.vertices)
    with pytest.raises(ValueError, match="pace"):
        interpolate(tiny_library, ["sphere", "torus"], 4, resolution=40, pace="fast")
    for count in (1, 1001, 10**6):  # config's range, as the CLI and the protocol have it; checked before any decode
        with pytest.raises(ValueError, match="count must be 2..1000"):
            interpolate(tiny_library, ["sphere", "torus"], count, resolution=40)
