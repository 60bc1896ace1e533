"""Exploring the code space: principal directions, seeded variants, nearest shapes."""

import numpy as np
import pytest

from backend.api import decode


def test_explore_codes(tiny_library):
    """Principal directions move a code, seeded variants repeat, a shape's nearest shape is itself."""
    from backend.api import code_of
    from backend.latent.explore import code_space, nearest_shapes, random_code, vary

    space = code_space(tiny_library)
    assert len(space.stds) == 1 and space.directions.shape == (1, tiny_library.codes.shape[1])
    base = code_of(tiny_library, "sphere")
    np.testing.assert_allclose(vary(tiny_library, base, [0.0]), base, atol=1e-6)
    assert not np.allclose(vary(tiny_library, base, [1.0]), base)
    np.testing.assert_array_equal(random_code(tiny_library, 5), random_code(tiny_library, 5))
    codes = tiny_library.codes.numpy().astype(np.float64)
    for seed in range(4):  # spread 0: a blend of library codes, i.e. on the segment between the two codes
        weights, *_ = np.linalg.lstsq(codes.T, random_code(tiny_library, seed, 0.0).astype(np.float64), rcond=None)
        np.testing.assert_allclose(codes.T @ weights, random_code(tiny_library, seed, 0.0), atol=1e-5)
        assert weights.min() >= -1e-4 and weights.sum() == pytest.approx(1.0, abs=1e-4)
    assert not np.allclose(random_code(tiny_library, 1, 0.0), random_code(tiny_library, 2, 0.0))
    assert not np.allclose(random_code(tiny_library, 1, 0.0), random_code(tiny_library, 1, 1.0))
    assert nearest_shapes(tiny_library, base, 1) == [("sphere", pytest.approx(0.0, abs=1e-6))]
    mesh = decode(tiny_library, random_code(tiny_library, 5), resolution=32, like="torus")
    assert len(mesh.faces) > 0
