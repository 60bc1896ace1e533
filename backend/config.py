"""Named presets: sampling, network and training settings that belong together."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from .model import ModelConfig
from .sampling import SampleConfig


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (auto-decoding: codes, networks and grid trained jointly)."""

    steps: int = 1500  #: coarse-phase steps
    detail_steps: int = 1500  #: detail-phase steps
    band_batch: int = 16384  #: band-lattice samples per coarse step
    point_batch: int = 8192  #: jittered/uniform samples per coarse step
    detail_batch: int = 65536  #: band-lattice + near-surface samples per detail step
    lr_network: float = 2e-3
    lr_code: float = 2e-3
    lr_grid: float = 0.02
    code_regularization: float = 1e-4  #: times mean |z|, ramped in over the first tenth
    final_lr_fraction: float = 0.05  #: cosine decay of every learning rate down to this fraction
    time_budget_s: float | None = None  #: if set, train for this long (split like the steps) instead
    invert_steps: int = 500  #: steps when fitting one unseen shape's code
    lr_invert: float = 5e-3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Preset:
    """Everything that defines how a library is built."""

    name: str
    sample: SampleConfig
    model: ModelConfig
    train: TrainConfig


PRESETS: dict[str, Preset] = {
    # CPU default: sizes chosen by measurement on a 2-core machine (see docs/benchmarks.md).
    "fast": Preset("fast", SampleConfig(), ModelConfig(), TrainConfig()),
    # Reference sizes of the paper (CUDA): 256-d codes, 8x512 MLPs.
    "paper": Preset(
        "paper",
        SampleConfig(grid_resolution=512, surface_points=1_000_000, wide_points=500_000, uniform_points=500_000),
        ModelConfig(code_size=256, pe_frequencies=8, coarse_width=512, coarse_depth=8, grid_resolution=512,
                    grid_channels=32, detail_width=512, detail_depth=8),
        TrainConfig(steps=40_000, detail_steps=40_000, band_batch=65536, detail_batch=262_144, point_batch=32768, lr_network=1e-3, lr_code=1e-3, lr_grid=0.05),
    ),
    # Seconds on a CPU: for tests and smoke runs.
    "tiny": Preset(
        "tiny",
        SampleConfig(grid_resolution=64, surface_points=20_000, wide_points=10_000, uniform_points=10_000),
        ModelConfig(code_size=16, pe_frequencies=4, coarse_width=64, coarse_depth=3, grid_resolution=64,
                    grid_channels=4, detail_width=32, detail_depth=2),
        TrainConfig(steps=300, detail_steps=300, band_batch=4096, point_batch=2048, detail_batch=8192, invert_steps=200),
    ),
}


def get_preset(name: str, **train_overrides: object) -> Preset:
    """The named preset, with TrainConfig fields overridden where given.

    ``steps`` sets both phases (coarse and detail) unless ``detail_steps`` is given too.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return with_training(PRESETS[name], **train_overrides)


def with_training(preset: Preset, **train_overrides: object) -> Preset:
    """``preset`` with TrainConfig fields overridden where given (None leaves a field as is)."""
    overrides = {k: v for k, v in train_overrides.items() if v is not None}
    if "steps" in overrides:
        if overrides["steps"] < 1:
            raise ValueError(f"steps must be at least 1, got {overrides['steps']}")
        overrides.setdefault("detail_steps", overrides["steps"])
    if overrides.get("time_budget_s", 1) <= 0:
        raise ValueError("the time budget must be positive")
    return replace(preset, train=replace(preset.train, **overrides)) if overrides else preset
