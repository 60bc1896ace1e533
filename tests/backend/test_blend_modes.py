"""The blend-mode registry: every mode decodes, code blends follow their formulas, unknown modes are bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from backend.errors import BadInputError
from backend.field.blend_modes import BLEND_MODES, blend_mode

HALF = {"sphere": 0.5, "torus": 0.5}


def _slerp_formula(codes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Directions on the sphere (classic slerp for two codes, the normalised weighted mean of the
    unit directions otherwise), norms blended linearly; in float64."""
    norms = np.linalg.norm(codes, axis=1)
    units = codes / norms[:, None]
    if len(codes) == 2:
        theta = np.arccos(np.clip(units[0] @ units[1], -1, 1))
        direction = (np.sin(weights[0] * theta) * units[0] + np.sin(weights[1] * theta) * units[1]) / np.sin(theta)
    else:
        direction = weights @ units
    return direction / np.linalg.norm(direction) * (weights @ norms)


@pytest.mark.parametrize("count", [2, 3])
def test_linear_and_slerp_blend_codes_by_their_formulas(count):
    rng = np.random.default_rng(count)
    codes = rng.normal(size=(count, 16)).astype(np.float32)
    weights = rng.dirichlet(np.ones(count)).astype(np.float32)
    t_codes, t_weights = torch.from_numpy(codes), torch.from_numpy(weights)
    c64, w64 = codes.astype(np.float64), weights.astype(np.float64)
    linear = blend_mode("linear").blend_codes(t_codes, t_weights).numpy()
    np.testing.assert_allclose(linear, w64 @ c64, rtol=1e-5, atol=1e-6)
    slerp = blend_mode("slerp").blend_codes(t_codes, t_weights).numpy()
    np.testing.assert_allclose(slerp, _slerp_formula(c64, w64), rtol=1e-4, atol=1e-5)
    # the ends are the codes themselves
    for i in range(count):
        one = torch.zeros(count)
        one[i] = 1
        for mode in ("linear", "slerp"):
            np.testing.assert_allclose(blend_mode(mode).blend_codes(t_codes, one).numpy(), codes[i], rtol=1e-5, atol=1e-5)


def test_code_of_a_library_blend_follows_the_formulas(tiny_library):
    from backend.api import code_of

    codes = tiny_library.codes[[tiny_library.index("sphere"), tiny_library.index("torus")]].double().numpy()
    weights = {"sphere": 0.3, "torus": 0.9}  # normalised to 0.25, 0.75
    w = np.array([0.25, 0.75])
    np.testing.assert_allclose(code_of(tiny_library, weights, "linear"), w @ codes, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(code_of(tiny_library, weights, "slerp"), _slerp_formula(codes, w), rtol=1e-4, atol=1e-5)
    # distance blends fields, not codes; its nominal code is the linear one
    np.testing.assert_array_equal(code_of(tiny_library, weights, "distance"), code_of(tiny_library, weights, "linear"))


def test_registry_entries():
    assert list(BLEND_MODES) == ["morph", "slerp", "linear", "distance"]
    assert [m.name for m in BLEND_MODES.values() if m.blends_fields] == ["distance"]
    assert [(m.name, m.falls_back_to) for m in BLEND_MODES.values() if m.moves_parts] == [("morph", "slerp")]
    assert all(BLEND_MODES[m.falls_back_to].falls_back_to is None for m in BLEND_MODES.values() if m.falls_back_to)
    for name, mode in BLEND_MODES.items():
        assert mode.name == name and mode.label and mode.description


def test_registry_imports_without_torch():
    code = "import sys, backend.field.blend_modes; print(sorted(m for m in ('numpy', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("mode", list(BLEND_MODES))
def test_every_registered_mode_decodes_a_blend(tiny_library, mode):
    from backend.api import decode

    mesh = decode(tiny_library, HALF, resolution=32, mode=mode)
    assert len(mesh.vertices) > 100 and len(mesh.faces) > 100
    assert np.isfinite(mesh.vertices).all()


def test_distance_mode_decodes_the_weighted_blend_of_the_shapes_own_fields(tiny_library):
    """mode='distance' at full detail: marching cubes of sum_i w_i * (shape i's own field), nothing else."""
    from backend.api import decode
    from backend.field.decode import marching_cubes, shape_volume

    weights = {"sphere": 0.3, "torus": 0.7}
    volume = 0.0
    for name, w in weights.items():
        row = tiny_library.index(name)
        field, _ = shape_volume(tiny_library.model, tiny_library.codes[row], row, 32, distances=True)
        volume = volume + w * field
    want, faces, _ = marching_cubes(np.asarray(volume, dtype=np.float32))
    got = decode(tiny_library, weights, resolution=32, mode="distance", normalized=True)
    np.testing.assert_array_equal(got.vertices, want)
    np.testing.assert_array_equal(got.faces, faces)


def test_an_unknown_mode_is_bad_input_from_the_api(tiny_library):
    from backend.api import code_of, decode, interpolate

    with pytest.raises(BadInputError, match="unknown blend mode 'bogus'; choose one of morph, slerp, linear, distance"):
        decode(tiny_library, HALF, resolution=16, mode="bogus")
    with pytest.raises(BadInputError, match="unknown blend mode"):
        decode(tiny_library, "sphere", resolution=16, mode="bogus")  # even where no blend is made
    with pytest.raises(BadInputError, match="unknown blend mode"):
        code_of(tiny_library, HALF, "bogus")
    with pytest.raises(BadInputError, match="unknown blend mode"):
        interpolate(tiny_library, ["sphere", "torus"], 2, resolution=16, mode="bogus")
    with pytest.raises(BadInputError):
        blend_mode(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("cmd, args", [
    ("decode", {"library": "lib.csdf", "items": []}),
    ("interpolate", {"library": "lib.csdf", "names": ["a", "b"], "count": 3, "out_dir": "out"}),
    ("explore", {"library": "lib.csdf", "out": "x.npz"}),
])
def test_an_unknown_mode_is_a_protocol_error(cmd, args):
    from backend.interfaces import protocol

    def request(mode):
        line = json.dumps({"v": protocol.PROTOCOL_VERSION, "id": "j", "cmd": cmd, "args": {**args, "mode": mode}})
        return protocol.parse_args(protocol.parse_request(line))

    for mode in BLEND_MODES:
        assert request(mode).mode == mode
    with pytest.raises(protocol.ProtocolError, match=f"{cmd}.mode: expected one of morph, slerp, linear, distance, got 'bogus'"):
        request("bogus")
    with pytest.raises(protocol.ProtocolError):
        request(3)


def test_cli_offers_every_registered_mode():
    from backend.interfaces.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    offered = {name: next(a.choices for a in sub._actions if a.dest == "mode")
               for name, sub in commands.items() if any(a.dest == "mode" for a in sub._actions)}
    assert set(offered) >= {"interpolate", "explore"}
    for choices in offered.values():
        assert list(choices) == list(BLEND_MODES)
