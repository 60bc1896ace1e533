"""Every setting of the engine in one place, with its default and range (torch-free).

The CLI, the worker, the Blender extension's properties and the benchmarks take their names and
defaults from here. A setting's allowed range lives in its field's ``metadata["range"]``;
``check_ranges`` enforces them and ``setting`` reads them. Presets bundle the sampling, model and
training settings that belong together; sizes pick how many bytes each shape's detail may use.
Every choice list a user picks from (presets, sizes, frames, paces, devices) is here with the text the
panel shows; blend modes are the registry ``field.blend_modes``. A new user-facing setting goes
here first: ``tests/blender/test_config_consistency.py`` checks that the panel, the worker protocol
and both command lines take its default and range from here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace


def _setting(default: object, low: float | None = None, high: float | None = None, help: str = "") -> object:  # noqa: A002
    """A dataclass field with its range and a one-line description in the metadata."""
    return field(default=default, metadata={"range": (low, high), "help": help})


class _Settings:
    """Dict round-trip and range checking shared by every settings dataclass."""

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict, *, strict: bool = False):
        """Build from a dict; unknown keys are ignored (or rejected with ``strict``), ranges checked."""
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__} settings must be a mapping, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if strict and unknown:
            raise ValueError(f"unknown {cls.__name__} settings {sorted(unknown)}")
        try:
            config = cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:
            raise ValueError(f"invalid {cls.__name__} settings ({exc})") from exc
        check_ranges(config)
        return config


def check_ranges(config: object) -> None:
    """ValueError naming the first setting of ``config`` that is of the wrong type or out of range."""
    for f in fields(config):  # type: ignore[arg-type]
        low, high = f.metadata.get("range", (None, None))
        value = getattr(config, f.name)
        if low is None and high is None:
            continue
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{f.name} must be a number, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"{f.name} = {value} is outside {low}..{high}")


@dataclass(frozen=True)
class Setting:
    """One setting as the interfaces need it: its default, its allowed range (None: unbounded) and help."""

    name: str
    default: object
    low: float | None
    high: float | None
    help: str

    def contains(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


def setting(settings: type, name: str) -> Setting:
    """The field ``name`` of the settings dataclass ``settings``: where the panel's properties, the
    protocol's defaults and the command lines' options read their default and range."""
    for f in fields(settings):
        if f.name == name:
            low, high = f.metadata.get("range", (None, None))
            return Setting(name, f.default, low, high, f.metadata.get("help", ""))
    raise KeyError(f"{settings.__name__} has no setting {name!r}")


@dataclass(frozen=True)
class SampleConfig(_Settings):
    """How many ground-truth samples to draw per shape (normalised units)."""

    grid_resolution: int = _setting(256, 8, 1024, "lattice of the band set = the detail grid's lattice")
    band_cells: float = _setting(4.0, 1, 16, "band half-width in lattice voxels")
    surface_points: int = _setting(200_000, 100, 10_000_000, "surface points jittered by N(0, near_sigma)")
    near_sigma_cells: float = _setting(1.0, 0, 16, "narrow jitter, in lattice voxels")
    wide_points: int = _setting(100_000, 0, 10_000_000, "surface points jittered by N(0, wide_sigma)")
    wide_sigma: float = _setting(0.025, 0, 1, "wide jitter, normalised units")
    uniform_points: int = _setting(100_000, 100, 10_000_000, "uniform points in [-1, 1]^3")

    def key(self) -> str:
        """Short hash naming cached samples drawn with this configuration."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ModelConfig(_Settings):
    """Sizes of the network."""

    code_size: int = _setting(64, 1, 4096, "floats per shape code")
    #: 2, not 6: higher frequencies let the coarse branch put ripples and loose pieces between the
    #: codes (6 shapes, 15 slerp paths, coarse only: roughness ratio 1.23 -> 0.90-0.94, one-piece
    #: 64 % -> 70-86 % over two seeds); an encoded shape's own band does not depend on it.
    pe_frequencies: int = _setting(2, 0, 16, "positional-encoding frequencies of the coarse branch")
    coarse_width: int = _setting(128, 8, 8192, "coarse MLP width")
    coarse_depth: int = _setting(4, 2, 64, "coarse MLP hidden layers (input re-injected before the middle one)")
    grid_resolution: int = _setting(256, 8, 1024, "detail lattice points per axis over [-1, 1]")
    #: 1, not 4: three learned channels beside the stored distance cost 2.3x the bytes and changed no
    #: decode (17 shapes at 256³: mean fidelity ratio 1.45 -> 1.43, 443 -> 191 KB per shape; docs/benchmarks.md).
    grid_channels: int = _setting(1, 1, 256, "features per detail node (the first is the node's stored distance)")
    detail_width: int = _setting(64, 8, 8192, "detail MLP width")
    detail_depth: int = _setting(2, 1, 64, "detail MLP hidden layers")
    detail: bool = True  #: False gives the generalization-only (DeepSDF-style) baseline


@dataclass(frozen=True)
class StorageConfig(_Settings):
    """What each shape stores: its own detail nodes, how wide a band, how many bits per feature."""

    band_cells: float = _setting(1.5, 1, 8, "half-width of each shape's stored node band, in lattice voxels")
    feature_bits: int = _setting(6, 4, 16, "bits per stored feature: 4..8 (signed levels in int8) or 16 (float16)")
    distance_bits: int = _setting(8, 4, 8, "bits of feature channel 0, the node's stored distance (with feature_bits 16: float16)")
    zstd_level: int = _setting(19, 1, 22, "compression level of the stored blobs")

    def __post_init__(self) -> None:
        if self.feature_bits not in (4, 5, 6, 7, 8, 16):
            raise ValueError(f"feature_bits must be 4..8 or 16, got {self.feature_bits!r}")

    @property
    def channel0_bits(self) -> int:
        """Bits channel 0 is stored with: ``distance_bits``, or 16 (float16) when every feature is."""
        return 16 if self.feature_bits == 16 else self.distance_bits


@dataclass(frozen=True)
class TrainConfig(_Settings):
    """Optimisation settings. Step counts grow with the collection (see ``coarse_steps_for``)."""

    steps: int | None = _setting(None, 1, 10_000_000, "coarse-phase steps (None: scale with the collection)")
    detail_steps: int | None = _setting(None, 1, 10_000_000, "detail-phase steps (None: scale with the stored nodes)")
    coarse_steps_base: int = _setting(600, 0, 10_000_000, "coarse steps whatever the collection size")
    coarse_steps_per_shape: int = _setting(300, 0, 1_000_000, "extra coarse steps per shape")
    detail_visits: float = _setting(60.0, 0.1, 10_000, "times each stored node is visited in the detail phase")
    band_batch: int = _setting(16384, 1, 10_000_000, "band-lattice samples per coarse step")
    point_batch: int = _setting(8192, 1, 10_000_000, "jittered/uniform samples per coarse step")
    detail_batch: int = _setting(65536, 8, 10_000_000, "band-lattice + near-surface samples per detail step")
    #: 0.25 (was 0): teaching slerp blends of the codes against the same blend of the two shapes'
    #: exact distances keeps alike shapes' in-betweens whole (human_man -> human_woman) and makes
    #: in-betweens follow the exact blended field more often (docs/benchmarks.md, fourth run).
    blend_fraction: float = _setting(0.25, 0, 1, "share of each coarse batch trained at blends of two codes")
    blend_points: int = _setting(32768, 1, 10_000_000, "points per shape with every shape's exact distance, for blends")
    lr_network: float = _setting(2e-3, 0, 10)
    lr_code: float = _setting(2e-3, 0, 10)
    lr_grid: float = _setting(0.02, 0, 100)
    code_regularization: float = _setting(1e-4, 0, 10, "times mean |z|, ramped in over the first tenth")
    final_lr_fraction: float = _setting(0.05, 0, 1, "cosine decay of every learning rate down to this fraction")
    time_budget_s: float | None = _setting(None, 1e-3, 1e9, "if set, train for this long instead of by steps")
    invert_steps: int = _setting(500, 1, 1_000_000, "coarse steps fitting one added shape's code")
    lr_invert: float = _setting(5e-3, 0, 10)

    def coarse_steps_for(self, shapes: int) -> int:
        """Coarse-phase steps for a collection of ``shapes`` (the explicit ``steps`` if set)."""
        return self.steps if self.steps is not None else self.coarse_steps_base + self.coarse_steps_per_shape * shapes

    def detail_steps_for(self, nodes: int) -> int:
        """Detail-phase steps that visit each of ``nodes`` stored nodes ``detail_visits`` times."""
        if self.detail_steps is not None:
            return self.detail_steps
        return max(50, round(self.detail_visits * nodes / (self.detail_batch * 7 / 8)))


@dataclass(frozen=True)
class DecodeConfig(_Settings):
    """How codes become meshes."""

    resolution: int = _setting(256, 16, 1024, "marching-cubes lattice points per axis")
    #: The Blender extension's (its panel and ``blender --command compact_sdf``) is lighter than the
    #: engine's: scenes fill with results while one explores, and 128 keeps each one seconds away.
    interactive_resolution: int = _setting(128, 16, 1024, "marching-cubes lattice of the Blender extension's results")
    #: 48: the viewport preview re-decodes on every slider move, so it stays a rough shape that
    #: arrives at once (refined at ``interactive_resolution`` when the slider rests).
    preview_resolution: int = _setting(48, 16, 128, "lattice of live previews in the viewport while a slider moves")
    target_faces: int | None = _setting(None, 4, None, "decimate every result to about this many triangles (None: keep all)")
    band: float = _setting(3.0, 1, 16, "detail band half-width around a blend's coarse surface, in voxels")
    detail: float = _setting(1.0, 0, 1, "detail dial of blends: 0 coarse shape only, 1 full detail")
    #: a name of ``field.blend_modes.BLEND_MODES``; morph moves parts (one mesh carried from shape to
    #: shape) and falls back to slerp where shapes cannot correspond (measured: docs/benchmarks.md)
    mode: str = "morph"
    count: int = _setting(5, 2, 1000, "meshes along an interpolation path, endpoints included")
    pace: str = "uniform"  #: interpolation positions: uniform (evenly spaced weights) or even (equal shape change)


#: Largest seed: seeds are kept in Blender's 32-bit integer properties.
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class EncodeConfig(_Settings):
    """How an encode is asked for; what it builds is the preset at a size (see ``get_preset``)."""

    preset: str = "fast"  #: a name of PRESETS
    size: str = "default"  #: a name of SIZES
    seed: int = _setting(0, 0, MAX_SEED, "random seed of the encoding")
    #: auto: shared when the shapes look like one coordinate system (one connectivity, or boxes that
    #: overlap at similar sizes; rule and measurements in ``geometry.frames`` and docs/benchmarks.md).
    frame: str = "auto"  #: a name of FRAMES
    checkpoint_minutes: float = _setting(5.0, 0, None, "a long encode saves a checkpoint this often, so shorter runs "
                                                       "write none (0: never)")


@dataclass(frozen=True)
class ExploreConfig(_Settings):
    """Moving through a library's code space: principal-direction variations, random variants, nearest shapes."""

    amount: float = _setting(0.0, -5, 5, "standard deviations of the codes moved along one principal direction")
    seed: int = _setting(0, 0, MAX_SEED, "seed of a random variant: the same seed gives the same shape")
    #: 0: a random variant is a blend of RANDOM_VARIANT_MIX library codes, not moved off it (see below).
    spread: float = _setting(0.0, 0, 10, "how far a random variant moves from its blend of library shapes, "
                                         "in standard deviations of the codes")
    nearest: int = _setting(3, 0, 32, "how many library shapes closest to a code are listed")


@dataclass(frozen=True)
class Choice:
    """One option of a choice setting: its name (stored and typed), the panel's label and a one-line description."""

    name: str
    label: str
    description: str


def _choices(*options: Choice) -> dict[str, Choice]:
    return {option.name: option for option in options}


#: Where the in-betweens of a path sit (``DecodeConfig.pace``).
PACES: dict[str, Choice] = _choices(
    Choice("uniform", "Uniform", "In-betweens at evenly spaced blend weights"),
    Choice("even", "Even", "In-betweens placed so each step changes the shape about as much (probes the path first)"),
)
#: How the shapes of one encode are placed in the working cube (``EncodeConfig.frame``, ``geometry.frames``).
FRAMES: dict[str, Choice] = _choices(
    Choice("auto", "Auto", "Shared when the shapes look like one coordinate system (one mesh in several poses, or "
                           "boxes that overlap at similar sizes), else per shape"),
    Choice("shared", "Shared", "One frame for all, their common bounding box: in-betweens stay in place and at scale "
                               "(poses of one character, variants of one product, frames of one animation)"),
    Choice("per-shape", "Per Shape", "Each shape centred and scaled to its own bounding box (unrelated objects)"),
)
#: The frames a library records per shape (an "auto" request is recorded as what it chose).
SHARED_FRAME, PER_SHAPE_FRAME = "shared", "per-shape"
#: Compute devices a job may ask for ("auto": CUDA if available, then Apple MPS, else CPU).
DEVICES: dict[str, Choice] = _choices(
    Choice("auto", "Auto", "CUDA if available, then Apple MPS, else CPU"),
    Choice("cuda", "CUDA", "NVIDIA GPU through CUDA"),
    Choice("mps", "Apple GPU", "Apple Silicon GPU through Metal (MPS)"),
    Choice("cpu", "CPU", "Processor only (slowest, always available)"),
)
DEFAULT_DEVICE = "auto"


@dataclass(frozen=True)
class Preset:
    """Everything that defines how a library is built."""

    name: str
    sample: SampleConfig
    model: ModelConfig
    train: TrainConfig
    storage: StorageConfig = StorageConfig()


PRESETS: dict[str, Preset] = {
    # CPU default: sizes chosen by measurement on a 2-core machine (see docs/benchmarks.md).
    "fast": Preset("fast", SampleConfig(), ModelConfig(), TrainConfig()),
    # Reference sizes of the paper (CUDA): 256-d codes, 8x512 MLPs.
    "paper": Preset(
        "paper",
        SampleConfig(grid_resolution=512, surface_points=1_000_000, wide_points=500_000, uniform_points=500_000),
        ModelConfig(code_size=256, pe_frequencies=8, coarse_width=512, coarse_depth=8, grid_resolution=512,
                    grid_channels=8, detail_width=512, detail_depth=8),
        TrainConfig(coarse_steps_base=10_000, coarse_steps_per_shape=2000, detail_visits=100, band_batch=65536,
                    detail_batch=262_144, point_batch=32768, lr_network=1e-3, lr_code=1e-3),
    ),
    # Seconds on a CPU: for tests and smoke runs.
    "tiny": Preset(
        "tiny",
        SampleConfig(grid_resolution=64, surface_points=20_000, wide_points=10_000, uniform_points=10_000),
        ModelConfig(code_size=16, pe_frequencies=4, coarse_width=64, coarse_depth=3, grid_resolution=64,
                    grid_channels=4, detail_width=32, detail_depth=2),
        TrainConfig(coarse_steps_base=200, coarse_steps_per_shape=50, detail_visits=20, band_batch=4096,
                    point_batch=2048, detail_batch=8192, invert_steps=200),
    ),
}

#: What each preset is for, as the panel and ``--help`` say it. Kept beside ``Preset``, not in it:
#: a preset's fields are what a library is built from (and what names a resumable run), its wording is not.
PRESET_CHOICES: dict[str, Choice] = _choices(
    Choice("fast", "Fast", "Sizes tuned for a CPU: minutes for a few shapes"),
    Choice("paper", "Paper", "The paper's network sizes: needs a CUDA GPU"),
    Choice("tiny", "Tiny", "Seconds on a CPU, low fidelity: for trying things out and tests"),
)

@dataclass(frozen=True)
class Size:
    """What each shape of a library stores: features per node, the stored band's half-width in
    voxels, and the bits of the node's stored distance (channel 0)."""

    channels: int
    band: float
    distance_bits: int = 8


#: Byte budgets for each shape's detail. ``default`` stores the distance alone (see
#: ``ModelConfig.grid_channels``) in a ±1.5-voxel band: a quarter fewer nodes and finer 8-bit steps
#: than ±2 (17 shapes at 256³: median fidelity ratio 1.07 -> 1.04, 191 -> 116 KB per shape with
#: format 4; docs/benchmarks.md), which decodes well at coarser lattices because decoding reads one
#: node past the band; ``small`` rounds the same distances to 6 bits; ``large`` keeps the learned
#: channels of earlier versions, which measured no better at 256³.
SIZES: dict[str, Size] = {"small": Size(1, 1.5, 6), "default": Size(1, 1.5), "large": Size(8, 3.0)}


def _size_choices() -> dict[str, Choice]:
    """SIZES as the panel lists them, the description derived from the numbers."""
    by_bytes = sorted(SIZES, key=lambda name: (SIZES[name].channels * SIZES[name].band, SIZES[name].distance_bits))
    notes = {by_bytes[0]: "Fewest bytes per shape: ", by_bytes[-1]: "Most bytes per shape: "}

    def describe(name: str, size: Size) -> str:
        stored = f"the distance alone ({size.distance_bits} bits)" if size.channels == 1 else f"{size.channels} features"
        text = f"{notes.get(name, '')}{stored} per node in a ±{size.band:g}-voxel band"
        return text[0].upper() + text[1:]

    return _choices(*(Choice(name, name.capitalize(), describe(name, SIZES[name])) for name in SIZES))


SIZE_CHOICES: dict[str, Choice] = _size_choices()
DEFAULT_PRESET = EncodeConfig().preset
DEFAULT_SIZE = EncodeConfig().size
DEFAULT_FRAME = EncodeConfig().frame
#: Random variants: how many library codes one blends, and how far (in standard deviations of the
#: codes) it then moves by default. Blends stay where the coarse branch was trained; Gaussian codes
#: over all principal directions did not (measured on 17 shapes, 20 seeds, 96³: a Gaussian draw at 1 std
#: gave 10/20 one-piece shapes and 4 empty ones, a blend of 3 codes 18/20 and none empty).
RANDOM_VARIANT_MIX = 3
DEFAULT_SPREAD = ExploreConfig().spread
#: A long encode saves a checkpoint this often (minutes), so runs shorter than this write none.
DEFAULT_CHECKPOINT_MINUTES = EncodeConfig().checkpoint_minutes


def get_preset(name: str, size: str | None = None, **train_overrides: object) -> Preset:
    """The named preset at ``size`` (see SIZES), with TrainConfig fields overridden where given.

    ``steps`` sets both phases (coarse and detail) unless ``detail_steps`` is given too.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    preset = PRESETS[name]
    if size is not None:
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
        chosen = SIZES[size]
        preset = replace(preset, model=replace(preset.model, grid_channels=chosen.channels),
                         storage=replace(preset.storage, band_cells=chosen.band, distance_bits=chosen.distance_bits))
    return with_training(preset, **train_overrides)


def with_training(preset: Preset, **train_overrides: object) -> Preset:
    """``preset`` with TrainConfig fields overridden where given (None leaves a field as is)."""
    overrides = {k: v for k, v in train_overrides.items() if v is not None}
    if "steps" in overrides:
        overrides.setdefault("detail_steps", overrides["steps"])
    if not overrides:
        return preset
    train = replace(preset.train, **overrides)
    check_ranges(train)
    return replace(preset, train=train)
