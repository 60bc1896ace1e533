"""What a benchmark run does: the full and ``--quick`` settings, the command line, the time estimate."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backend.config import DEFAULT_PRESET, DEFAULT_SIZE, SIZES, DecodeConfig, Preset, get_preset

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MESHES = REPO_ROOT.parent / "shared" / "data" / "meshes"
QUICK_MESHES = REPO_ROOT / "tests" / "data"
PICTURE_PAIRS = [("spot", "bob_tri"), ("human_man", "human_woman"), ("armadillo", "bunny_hr")]

# Per-item costs (seconds) for the printed estimate, from single measurements on the 2-core
# development machine (torch 2.13 CPU) with the `fast` preset, rounded; the training step costs are
# scaled to other presets by MLP width² × depth and batch size.
_EST_SAMPLE_S = 25.0  # ground-truth samples of one shape not yet cached
_EST_ORACLE_S = 6.0  # oracle mesh of one shape at 256^3 (bunny_hr 5.5 s; cached after the first run)
_EST_SHAPE_DECODE_S = 8.0  # decode of an encoded shape from its stored band at 256^3
_EST_BLEND_DECODE_S = 12.0  # decode of a blend (coarse lattice + detail band) at 256^3
_EST_NARROW_BAND_S = 15.0  # narrow-band SDF grid of one shape at 256^3: lattice, band, label fill, marching cubes
_EST_DECIMATE_S = 1.0  # one quadric decimation of a source mesh
_EST_COMPARE_S = 2.0  # one compare_meshes with 200k samples (bunny_hr vs its oracle: 2.0 s)
_EST_SHAPE_SETUP_S = 5.0  # per shape and encode: residual pass, band selection, fit errors
_EST_COARSE_SAMPLE_S = 4.0e-6  # per sample of a coarse step, 4x128 MLP (24 576 samples: 92 ms, + blends)
_EST_DETAIL_SAMPLE_S = 1.5e-6  # per sample of a detail step, 2x64 MLP (65 536 samples: 96 ms)
_EST_STEP_OVERHEAD_S = 0.002


@dataclass
class BenchConfig:
    """Every setting of one run (stored verbatim in the JSON output)."""

    meshes: Path = DEFAULT_MESHES
    shapes: list[str] = field(default_factory=list)  #: empty: every mesh file in ``meshes`` (sorted by name)
    preset: str = DEFAULT_PRESET
    size: str = DEFAULT_SIZE  #: size setting of the main encode ("ours")
    steps: int | None = None  #: steps per phase (None: the engine's collection-scaled schedule)
    budget_s: float | None = None  #: train ours for this long instead of by steps
    device: str = "auto"
    resolution: int = DecodeConfig().resolution
    band: float = DecodeConfig().band
    samples: int = 200_000  #: surface samples per metric evaluation (DESIGN §3)
    sizes: list[str] = field(default_factory=lambda: [DEFAULT_SIZE])  #: rate–distortion: one encode per size
    draco_bits: list[int] = field(default_factory=lambda: [10, 11, 12, 14])
    narrow_band_resolutions: list[int] = field(default_factory=lambda: [128, 256])
    narrow_band_voxels: float = 3.0
    decimation_budgets: list[float] = field(default_factory=lambda: [25e3, 100e3, 250e3, 1e6])  #: bytes per mesh
    fresh_samples: bool = True  #: our main encode samples its shapes itself (no cache), so its wall time includes sampling
    trained_baselines: bool = False  #: train generalization-only and grid-only for ours' time (else GEN = ours at detail 0)
    grid_only_cap: int = 160  #: largest dense lattice of the grid-only baseline
    add_mesh: str = "twist:armadillo"  #: mesh added to the main library: a file path or twist:NAME ('' : skip)
    add_shape: str | None = None  #: old mode: held out of a second encode and then added (replaces add_mesh)
    pairs: list[tuple[str, str]] = field(default_factory=lambda: list(PICTURE_PAIRS))  #: paths with strip pictures
    all_pairs: bool = False  #: measure every pair of the collection (else only ``pairs``)
    inbetweens: int = 5
    path_resolution: int = 128  #: decoding lattice of the interpolation paths
    path_samples: int = 10_000  #: surface samples per CD between interpolation steps
    path_detail: float = DecodeConfig().detail  #: detail dial of the in-betweens
    timing_resolutions: list[int] = field(default_factory=lambda: [256])  #: seconds per in-between (path_resolution: from the paths)
    timing_pairs: int = 3  #: at most this many pairs timed at timing_resolutions
    random_variants: int = 20  #: seeded random codes decoded (if the engine offers them)
    ablations: bool = False
    scaling: bool = False
    scaling_counts: list[int] = field(default_factory=lambda: [1, 4, 8, 17])
    pictures: bool = True
    seed: int = 0
    out: Path = REPO_ROOT / "out" / "bench"
    cache: Path = REPO_ROOT / ".cache"
    quick: bool = False
    estimate_only: bool = False

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    def preset_for(self, size: str | None = None) -> Preset:
        """The engine preset of an encode at ``size`` (default: ``self.size``) with our training length."""
        return get_preset(self.preset, size or self.size, steps=self.steps, time_budget_s=self.budget_s)


def quick_config(**overrides: object) -> BenchConfig:
    """Three small bundled meshes, the tiny preset (collection-scaled steps), 96^3: a few minutes on a CPU."""
    settings = dict(meshes=QUICK_MESHES, shapes=["sphere", "torus", "spot_low_resolution"], preset="tiny",
                    resolution=96, samples=20_000, sizes=[DEFAULT_SIZE], narrow_band_resolutions=[64, 96],
                    decimation_budgets=[5e3, 20e3, 80e3], add_mesh="twist:spot_low_resolution",
                    pairs=[("sphere", "torus")], all_pairs=True, path_resolution=64, path_samples=10_000,
                    timing_resolutions=[96], scaling_counts=[1, 2, 3], random_variants=5, quick=True)
    settings.update(overrides)
    return BenchConfig(**settings)  # type: ignore[arg-type]


def _names(text: str) -> list[str]:
    return [n for n in text.split(",") if n]


def _pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for item in _names(text):
        a, sep, b = item.partition(":")
        if not sep or not a or not b:
            raise argparse.ArgumentTypeError(f"pairs are a:b, got {item!r}")
        pairs.append((a, b))
    return pairs


def _ints(text: str) -> list[int]:
    return [int(n) for n in _names(text)]


def _floats(text: str) -> list[float]:
    return [float(n) for n in _names(text)]


def _sizes(text: str) -> list[str]:
    names = _names(text)
    bad = [n for n in names if n not in SIZES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown size {', '.join(bad)}; choose from {', '.join(SIZES)}")
    return names


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    """BenchConfig from the command line (``--quick`` first picks the quick defaults)."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description="Compact SDF benchmark (issues 5, 8, 9).")
    p.add_argument("--quick", action="store_true", help="3 small bundled meshes, tiny preset, 96^3 (a few minutes)")
    p.add_argument("--meshes", type=Path, help=f"mesh directory (default {DEFAULT_MESHES})")
    p.add_argument("--shapes", type=_names, help="comma-separated mesh names (default: all in --meshes, by name)")
    p.add_argument("--preset", help=f"engine preset (default {DEFAULT_PRESET}; tiny with --quick)")
    p.add_argument("--size", choices=list(SIZES), help=f"size setting of the main encode (default {DEFAULT_SIZE})")
    p.add_argument("--steps", type=int, help="steps per phase for every encode (default: the engine's collection-scaled schedule)")
    p.add_argument("--budget-s", type=float, help="train each encode for this many seconds instead of by steps")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--resolution", type=int, help="decoding and oracle lattice (default 256)")
    p.add_argument("--band", type=float, help="decode band half-width of blends in voxels (default 3)")
    p.add_argument("--samples", type=int, help="surface samples per metric (default 200000)")
    p.add_argument("--sizes", type=_sizes, help=f"rate–distortion: size settings to encode (default {DEFAULT_SIZE}; "
                   f"choose from {','.join(SIZES)})")
    p.add_argument("--draco-bits", type=_ints, help="Draco quantisation bits (default 10,11,12,14; '' for none)")
    p.add_argument("--narrow-band-resolutions", type=_ints, help="narrow-band SDF grids (default 128,256; '' for none)")
    p.add_argument("--decimation-budgets", type=_floats, help="quadric decimation byte budgets (default 25e3,1e5,2.5e5,1e6)")
    p.add_argument("--cached-samples", action="store_true",
                   help="let our main encode read cached samples (its wall time then leaves sampling out)")
    p.add_argument("--trained-baselines", action="store_true",
                   help="train generalization-only and grid-only for ours' training time each (default: generalization-only "
                        "= our library decoded with detail 0, no grid-only)")
    p.add_argument("--grid-only-cap", type=int, help="largest dense lattice of the grid-only baseline (default 160)")
    p.add_argument("--add-mesh", help="mesh added to the main library: a mesh file, or twist:NAME = collection mesh NAME "
                                      "twisted 90° about its vertical axis (default twist:armadillo; '' to skip)")
    p.add_argument("--add-shape", help="instead of --add-mesh: hold this shape out of a second encode, then add it")
    p.add_argument("--pairs", type=_pairs, help="interpolation pairs with strip pictures a:b,c:d ('' for none)")
    p.add_argument("--all-pairs", action="store_true", help="measure the interpolation of every pair of shapes")
    p.add_argument("--inbetweens", type=int, help="in-betweens per interpolation path (default 5)")
    p.add_argument("--path-resolution", type=int, help="decoding lattice of interpolation paths (default 128)")
    p.add_argument("--path-samples", type=int, help="surface samples per CD along a path (default 10000)")
    p.add_argument("--path-detail", type=float, help="detail dial of the in-betweens (default 1)")
    p.add_argument("--timing-resolutions", type=_ints, help="resolutions of the seconds-per-in-between timing (default 256)")
    p.add_argument("--timing-pairs", type=int, help="pairs timed at --timing-resolutions (default 3)")
    p.add_argument("--random-variants", type=int, help="seeded random variants to decode (default 20; 0 for none)")
    p.add_argument("--ablations", action="store_true", help="code size 32/64/256 (retrained)")
    p.add_argument("--scaling", action="store_true", help="quality, size and time vs number of shapes")
    p.add_argument("--scaling-counts", type=_ints, help="shape counts of --scaling (default 1,4,8,17; quick 1,2,3)")
    p.add_argument("--no-pictures", action="store_true", help="skip the PNG renders and plots")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", type=Path, help="output directory (default out/bench)")
    p.add_argument("--cache", type=Path, help="sample and oracle cache (default .cache)")
    p.add_argument("--estimate-only", action="store_true", help="print the time estimate and stop")
    a = p.parse_args(argv)
    given = {k: v for k, v in {
        "meshes": a.meshes, "shapes": a.shapes, "preset": a.preset, "size": a.size, "steps": a.steps,
        "budget_s": a.budget_s, "device": a.device, "resolution": a.resolution, "band": a.band, "samples": a.samples,
        "sizes": a.sizes, "draco_bits": a.draco_bits, "narrow_band_resolutions": a.narrow_band_resolutions,
        "decimation_budgets": a.decimation_budgets, "grid_only_cap": a.grid_only_cap, "add_shape": a.add_shape,
        "add_mesh": a.add_mesh, "timing_pairs": a.timing_pairs,
        "pairs": a.pairs, "inbetweens": a.inbetweens, "path_resolution": a.path_resolution,
        "path_samples": a.path_samples, "path_detail": a.path_detail, "timing_resolutions": a.timing_resolutions,
        "random_variants": a.random_variants,
        "scaling_counts": a.scaling_counts, "seed": a.seed, "out": a.out, "cache": a.cache}.items() if v is not None}
    given.update(ablations=a.ablations, scaling=a.scaling, pictures=not a.no_pictures, fresh_samples=not a.cached_samples,
                 trained_baselines=a.trained_baselines, estimate_only=a.estimate_only)
    if a.all_pairs:
        given["all_pairs"] = True
    return quick_config(**given) if a.quick else BenchConfig(**given)  # type: ignore[arg-type]


def _mlp_scale(width: int, depth: int, ref_width: int, ref_depth: int) -> float:
    return (width**2 * depth) / (ref_width**2 * ref_depth)


def sample_estimate_s(preset: Preset) -> float:
    """Seconds to draw one shape's training samples (point count and band lattice relative to ``fast``)."""
    c = preset.sample
    points = (c.surface_points + c.wide_points + c.uniform_points) / 400_000
    return _EST_SAMPLE_S * (0.5 * points + 0.5 * (c.grid_resolution / 256) ** 2)


def encode_estimate_s(preset: Preset, areas: Sequence[float], adding: bool = False) -> float:
    """Training seconds of one encode of shapes with normalised surface ``areas`` (sampling excluded).

    Stored nodes per shape ≈ 2 × band × area ÷ h² on the grid lattice; the detail phase visits
    each ``detail_visits`` times. An add fits each code with ``invert_steps`` single-shape steps.
    """
    m, t, s = preset.model, preset.train, preset.storage
    coarse_step = (_EST_STEP_OVERHEAD_S + (t.band_batch + t.point_batch) * (1 + t.blend_fraction / 3)
                   * _EST_COARSE_SAMPLE_S * _mlp_scale(m.coarse_width, m.coarse_depth, 128, 4))
    detail_step = (_EST_STEP_OVERHEAD_S + t.detail_batch * _EST_DETAIL_SAMPLE_S
                   * _mlp_scale(m.detail_width, m.detail_depth, 64, 2) * (1 if m.detail else 0))
    h = 2.0 / (m.grid_resolution - 1)
    nodes = sum(2 * s.band_cells * a / h**2 for a in areas)
    coarse = t.invert_steps * len(areas) * coarse_step if adding else t.coarse_steps_for(len(areas)) * coarse_step
    if t.time_budget_s is not None:
        return t.time_budget_s + _EST_SHAPE_SETUP_S * len(areas)
    detail = t.detail_steps_for(int(nodes)) * detail_step if m.detail else 0.0
    return coarse + detail + _EST_SHAPE_SETUP_S * len(areas)


def estimate_s(cfg: BenchConfig, areas: Sequence[float], uncached: int, pairs: int,
               add_area: float | None = None) -> dict[str, float]:
    """Expected seconds per stage for shapes with normalised surface ``areas``, ``pairs`` measured
    interpolation paths and (``add_area``) a new mesh added to the main library."""
    n = len(areas)
    scale = (cfg.resolution / 256) ** 2  # decode and oracle cost follow surface area
    compare = _EST_COMPARE_S * cfg.samples / 200_000
    ours = encode_estimate_s(cfg.preset_for(), areas)
    other_sizes = [sz for sz in cfg.sizes if sz != cfg.size]
    trained = 2 if cfg.trained_baselines else 0  # generalization-only and grid-only, trained for ours' time each
    stages = {
        "sampling": (n if cfg.fresh_samples else uncached) * sample_estimate_s(cfg.preset_for()),
        "oracle": n * _EST_ORACLE_S * scale,
        "encode ours": ours,
    }
    if cfg.fresh_samples:  # the main encode samples without the cache; the other encodes fill it
        cached_users = n if trained or other_sizes or cfg.ablations else max(
            [k for k in cfg.scaling_counts if k < n] if cfg.scaling else [0], default=0)
        stages["sampling"] += min(uncached, cached_users) * sample_estimate_s(cfg.preset_for())
    if trained:
        stages["trained baselines (generalization-only, grid-only: ours' training time each)"] = 2 * ours
    stages["other sizes"] = sum(encode_estimate_s(cfg.preset_for(sz), areas) for sz in other_sizes)
    # ours and other sizes decode from the stored band; generalization-only (ours at detail 0, or
    # trained) and grid-only decode like a blend: coarse lattice, then exactly near its zero set
    stages["decode + metrics"] = n * ((1 + len(other_sizes)) * _EST_SHAPE_DECODE_S * scale
                                      + (1 + trained // 2) * _EST_BLEND_DECODE_S * scale
                                      + (3 + trained // 2 + len(other_sizes) + len(cfg.decimation_budgets)
                                         + len(cfg.draco_bits) + len(cfg.narrow_band_resolutions)) * compare
                                      + len(cfg.decimation_budgets) * _EST_DECIMATE_S
                                      + sum(_EST_NARROW_BAND_S * (r / 256) ** 2 for r in cfg.narrow_band_resolutions))
    if cfg.add_shape and n > 1:  # hold-out mode: a second encode of n - 1 shapes, then the add
        stages["add / remove"] = (encode_estimate_s(cfg.preset_for(), areas[:-1])
                                  + encode_estimate_s(cfg.preset_for(), areas[-1:], adding=True) + sample_estimate_s(cfg.preset_for())
                                  + (2 * n - 1) * (_EST_SHAPE_DECODE_S * scale + compare))
    elif add_area is not None:  # the old shapes' rows before the add are the main rows: n + 1 decodes after it
        stages["add / remove"] = (encode_estimate_s(cfg.preset_for(), [add_area], adding=True)
                                  + sample_estimate_s(cfg.preset_for()) + _EST_ORACLE_S * scale + 2 * compare
                                  + (n + 1) * (_EST_SHAPE_DECODE_S * scale + compare))
    path_scale = (cfg.path_resolution / 256) ** 2
    path_compare = _EST_COMPARE_S * cfg.path_samples / 200_000
    timed = min(cfg.timing_pairs, max(len(cfg.pairs), 1))
    stages["interpolation"] = (n * _EST_SHAPE_DECODE_S * path_scale
                               + pairs * (cfg.inbetweens * _EST_BLEND_DECODE_S * path_scale + (cfg.inbetweens + 2) * path_compare)
                               + sum(_EST_BLEND_DECODE_S * (r / 256) ** 2 for r in cfg.timing_resolutions) * timed)
    stages["interpolation"] += cfg.random_variants * _EST_BLEND_DECODE_S * path_scale
    if cfg.ablations:
        stages["ablations"] = 2 * ours + 2 * n * (_EST_SHAPE_DECODE_S * scale + compare)
    if cfg.scaling:
        counts = [k for k in cfg.scaling_counts if k < n]
        stages["scaling"] = sum(encode_estimate_s(cfg.preset_for(), areas[:k]) + k * (_EST_SHAPE_DECODE_S * scale + compare)
                                for k in counts)
    return stages
