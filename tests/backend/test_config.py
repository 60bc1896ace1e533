"""Settings: range checks, presets and sizes, and the rules for training length."""

import pytest

from backend.config import SIZES, ModelConfig, TrainConfig, get_preset


@pytest.mark.parametrize("config, match", [
    (lambda: TrainConfig(steps=0), "steps"),
    (lambda: TrainConfig(blend_fraction=1.5), "blend_fraction"),
    (lambda: ModelConfig(grid_resolution=4), "grid_resolution"),
    (lambda: ModelConfig(code_size="64"), "code_size must be a number"),
    (lambda: ModelConfig(coarse_width=True), "coarse_width must be a number"),
])
def test_check_ranges_rejects_bad_settings(config, match):
    from backend.config import check_ranges

    with pytest.raises(ValueError, match=match):
        check_ranges(config())


def test_from_dict_checks_ranges_and_unknown_keys():
    assert ModelConfig.from_dict({"code_size": 32, "unknown": 1}).code_size == 32
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({"code_size": 32, "unknown": 1}, strict=True)
    with pytest.raises(ValueError, match="outside"):
        ModelConfig.from_dict({"grid_channels": 0})
    with pytest.raises(ValueError, match="mapping"):
        TrainConfig.from_dict([1, 2])
    assert TrainConfig.from_dict(TrainConfig(steps=7).to_dict()) == TrainConfig(steps=7)


def test_get_preset_sizes_and_overrides():
    tiny = get_preset("tiny")
    assert tiny.model.grid_resolution == 64 and tiny.train.steps is None and tiny.train.detail_steps is None
    for size, chosen in SIZES.items():
        preset = get_preset("tiny", size)
        assert preset.model.grid_channels == chosen.channels and preset.storage.band_cells == chosen.band
        assert preset.storage.distance_bits == chosen.distance_bits
        assert preset.model.code_size == tiny.model.code_size  # only the detail budget changes
    steps = get_preset("tiny", steps=5)
    assert steps.train.steps == steps.train.detail_steps == 5  # ``steps`` sets both phases
    both = get_preset("tiny", steps=5, detail_steps=9)
    assert (both.train.steps, both.train.detail_steps) == (5, 9)
    assert get_preset("fast", "small", time_budget_s=None) == get_preset("fast", "small")
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")
    with pytest.raises(ValueError, match="unknown size"):
        get_preset("tiny", "medium")
    with pytest.raises(ValueError, match="steps"):
        get_preset("tiny", steps=-1)


def test_steps_scale_with_the_collection():
    cfg = TrainConfig(coarse_steps_base=100, coarse_steps_per_shape=10, detail_visits=7, detail_batch=8)
    assert [cfg.coarse_steps_for(n) for n in (1, 2, 10)] == [110, 120, 200]
    assert cfg.detail_steps_for(100_000) == round(7 * 100_000 / 7)
    assert cfg.detail_steps_for(1) == 50  # a floor for tiny shapes
    assert cfg.detail_steps_for(2 * 100_000) > cfg.detail_steps_for(100_000)
    fixed = TrainConfig(steps=3, detail_steps=4)
    assert fixed.coarse_steps_for(1000) == 3 and fixed.detail_steps_for(10**9) == 4


def test_default_training_length_follows_the_rule(tiny_library):
    """Without ``steps`` an encode runs exactly the steps the config's rules give for its collection."""
    run = tiny_library.history[0]
    train = tiny_library.preset.train
    nodes = sum(tiny_library.model.detail.grid.node_count(i) for i in range(len(tiny_library.names)))
    assert run["kind"] == "encode" and run["coarse_steps"] == train.coarse_steps_for(2) == 300
    assert run["detail_steps"] == train.detail_steps_for(nodes)
