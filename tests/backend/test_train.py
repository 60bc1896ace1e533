"""Training runs: blend training, cancelling, progress, determinism and the size setting."""

import numpy as np
import pytest
import torch

from backend.api import encode
from backend.config import SIZES, get_preset
from backend.errors import Cancelled
from backend.geometry.meshes import Mesh


def test_blend_training_teaches_the_blend_of_the_two_exact_fields(sphere_mesh, torus_mesh, tmp_path):
    """At the slerp midpoint of two codes, the coarse branch trained with blends is far closer to
    the mean of the two shapes' exact distances than the same training without blends."""
    from dataclasses import replace as replace_settings

    from backend.geometry.sampling import signed_distance
    from backend.field.train import slerp_rows

    tiny = get_preset("tiny")
    shapes = {"sphere": sphere_mesh, "torus": torus_mesh}
    probe = np.random.default_rng(0).uniform(-0.9, 0.9, (4000, 3)).astype(np.float32)
    errors = []
    for fraction in (0.0, 0.25):
        spec = replace_settings(tiny, model=replace_settings(tiny.model, detail=False),
                                train=replace_settings(tiny.train, blend_fraction=fraction))
        lib = encode(shapes, preset=spec, seed=0, device="cpu", cache_dir=tmp_path, sampling_workers=1)
        fields = []
        for name in lib.names:
            normalized = Mesh(lib.shapes[lib.index(name)].transform.apply(shapes[name].vertices), shapes[name].faces)
            fields.append(signed_distance(normalized.vertices, normalized.faces, probe))
        z = slerp_rows(lib.codes[:1], lib.codes[1:], torch.tensor([0.5])).expand(len(probe), -1)
        with torch.no_grad():
            predicted = lib.model.coarse(z, torch.as_tensor(probe)).numpy()
        errors.append(np.abs(predicted - (fields[0] + fields[1]) / 2).mean())
    assert errors[1] < 0.5 * errors[0], errors


def test_cancel_stops_training(sphere_mesh):
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        encode({"s": sphere_mesh}, preset="tiny", should_stop=stop)


def test_progress_reports_eta(sphere_mesh):
    seen = []
    lib = encode({"s": sphere_mesh}, preset="tiny", steps=40, on_progress=seen.append)
    assert lib.history[-1]["coarse_steps"] == lib.history[-1]["detail_steps"] == 40  # 40 steps in each phase
    training = [p for p in seen if p.stage.startswith("training")]
    assert [p.stage for p in training][0] == "training coarse" and training[-1].stage == "training detail"
    assert {p.total for p in training} == {80}
    steps = [p.step for p in training]
    assert steps == sorted(steps) and steps[-1] >= 70  # detail reports continue after the coarse half
    assert min(p.step for p in training if p.stage == "training detail") >= 40
    assert training[-1].loss is not None and training[-1].eta_s is not None


def test_seed_makes_training_deterministic(sphere_mesh):
    a = encode({"s": sphere_mesh}, preset="tiny", steps=20, seed=5)
    b = encode({"s": sphere_mesh}, preset="tiny", steps=20, seed=5)
    torch.testing.assert_close(a.codes, b.codes)
    assert torch.equal(a.model.detail.grid.keys[0], b.model.detail.grid.keys[0])
    # Channel 0 (the stored distance) is set, not trained: exactly equal. The trained channels go through
    # threaded sparse-gradient sums, which are not bit-reproducible on a CPU: equal to one rounding level.
    fa, fb = a.model.detail.grid.features, b.model.detail.grid.features
    assert torch.equal(fa[:, 0], fb[:, 0])
    level = fa.abs().amax(0) / (2 ** (a.preset.storage.feature_bits - 1) - 1)
    assert torch.all((fa - fb).abs() <= level * 1.001 + 1e-6)


def test_size_changes_what_each_shape_stores(sphere_mesh, tmp_path):
    small = encode({"s": sphere_mesh}, preset="tiny", size="small", steps=5, cache_dir=tmp_path)
    large = encode({"s": sphere_mesh}, preset="tiny", size="large", steps=5, cache_dir=tmp_path)
    assert small.model.detail.grid.channels == SIZES["small"].channels and large.model.detail.grid.channels == SIZES["large"].channels
    assert small.model.detail.grid.node_count(0) < large.model.detail.grid.node_count(0)  # a wider stored band
