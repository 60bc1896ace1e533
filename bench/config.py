"""What a benchmark run does: the full and ``--quick`` settings, the command line, the time estimate."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MESHES = REPO_ROOT.parent / "shared" / "data" / "meshes"
QUICK_MESHES = REPO_ROOT / "tests" / "data"

# Per-item costs (seconds) for the printed estimate: single measurements on the 2-core development
# machine with the `fast` preset at 256^3 while other jobs shared it (load ~4.5), rounded; a quiet
# machine is faster, mainly in sampling and in the per-shape training passes.
_EST_SAMPLE_S = 25.0  # ground-truth samples of one shape not yet cached
_EST_ORACLE_S = 6.0  # oracle mesh of one shape (bunny_hr 5.5 s, wingnut 2.3 s; cached after the first run)
_EST_DECODE_S = 12.0  # one decode (an untrained fast model's sphere: 9.6 s; real shapes have more surface)
_EST_COMPARE_S = 2.0  # one compare_meshes with 200k samples (bunny_hr vs its oracle: 2.0 s)
_EST_SETUP_S = 15.0  # per shape and encode: the detail phase's residual pass, outside the time budget


@dataclass
class BenchConfig:
    """Every setting of one run (stored verbatim in the JSON output)."""

    meshes: Path = DEFAULT_MESHES
    shapes: list[str] = field(default_factory=list)  #: empty: every mesh file in ``meshes``
    preset: str = "fast"
    steps: int | None = 2000  #: our training steps per phase (deterministic); the baselines get the seconds we used
    budget_s: float | None = None  #: train ours for this long instead of ``steps``
    device: str = "auto"
    resolution: int = 256
    band: float = 3.0
    samples: int = 200_000  #: surface samples per metric evaluation (DESIGN §3)
    holdout: list[str] = field(default_factory=lambda: ["human_woman", "bob_tri"])
    pairs: list[tuple[str, str]] = field(default_factory=lambda: [("spot", "bob_tri"), ("human_man", "human_woman"),
                                                                  ("armadillo", "bunny_hr")])
    inbetweens: int = 5
    path_resolution: int | None = 128  #: decoding lattice of the interpolation paths (None: ``resolution``)
    invert_steps: int | None = None  #: code-fitting steps per unseen shape (default: the preset's)
    path_samples: int = 50_000  #: surface samples per CD between interpolation steps
    decimation_points: int = 4  #: budgets on the decimation curve of the bytes plot (≥ 2)
    grid_only_cap: int = 160  #: largest dense lattice of the grid-only baseline
    ablations: bool = False
    scaling: bool = False
    scaling_counts: list[int] = field(default_factory=lambda: [1, 4, 16])
    scaling_steps: int = 100  #: training steps per phase of each scaling encode
    scaling_resolutions: list[int] = field(default_factory=lambda: [128, 256, 512])
    pictures: bool = True
    seed: int = 0
    out: Path = REPO_ROOT / "out" / "bench"
    cache: Path = REPO_ROOT / ".cache"
    quick: bool = False

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def quick_config(**overrides: object) -> BenchConfig:
    """Three small bundled meshes, the tiny preset (100 steps per phase), 96^3: a few minutes on a CPU."""
    settings = dict(meshes=QUICK_MESHES, shapes=["sphere", "torus", "spot_low_resolution"], preset="tiny", steps=100,
                    budget_s=None, resolution=96, path_resolution=None, samples=20_000, holdout=["spot_low_resolution"],
                    pairs=[("sphere", "torus")], inbetweens=3, path_samples=10_000, decimation_points=3,
                    scaling_counts=[1, 2, 3], scaling_steps=50, scaling_resolutions=[64, 128, 256], quick=True)
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


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    """BenchConfig from the command line (``--quick`` first picks the quick defaults)."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description="Compact SDF benchmark (issue 5).")
    p.add_argument("--quick", action="store_true", help="3 small bundled meshes, tiny preset, 96^3 (a few minutes)")
    p.add_argument("--meshes", type=Path, help=f"mesh directory (default {DEFAULT_MESHES})")
    p.add_argument("--shapes", type=_names, help="comma-separated mesh names (default: all in --meshes)")
    p.add_argument("--preset", help="engine preset (default fast; tiny with --quick)")
    p.add_argument("--steps", type=int, help="train ours for this many steps per phase (default 2000; deterministic)")
    p.add_argument("--budget-s", type=float, help="train ours for this many seconds instead of --steps")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--resolution", type=int, help="decoding and oracle lattice (default 256)")
    p.add_argument("--band", type=float, help="decode band half-width in voxels (default 3)")
    p.add_argument("--samples", type=int, help="surface samples per metric (default 200000)")
    p.add_argument("--holdout", type=_names, help="comma-separated shapes for the unseen-shape study ('' for none)")
    p.add_argument("--pairs", type=_pairs, help="interpolation pairs a:b,c:d ('' for none)")
    p.add_argument("--inbetweens", type=int, help="in-betweens per interpolation path (default 5)")
    p.add_argument("--path-resolution", type=int, help="decoding lattice of interpolation paths (default 128)")
    p.add_argument("--invert-steps", type=int, help="code-fitting steps per unseen shape (default: the preset's)")
    p.add_argument("--grid-only-cap", type=int, help="largest dense lattice of the grid-only baseline (default 160)")
    p.add_argument("--ablations", action="store_true", help="band n = 1/3/6, code size 32/64/256, band sampling off")
    p.add_argument("--scaling", action="store_true", help="encode cost vs shape count, decode cost vs resolution")
    p.add_argument("--scaling-steps", type=int, help="steps per phase of each scaling encode (default 100)")
    p.add_argument("--no-pictures", action="store_true", help="skip the PNG renders and plot")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", type=Path, help="output directory (default out/bench)")
    p.add_argument("--cache", type=Path, help="sample and oracle cache (default .cache)")
    a = p.parse_args(argv)
    given = {k: v for k, v in {
        "meshes": a.meshes, "shapes": a.shapes, "preset": a.preset, "steps": a.steps, "budget_s": a.budget_s,
        "device": a.device, "resolution": a.resolution, "band": a.band, "samples": a.samples, "holdout": a.holdout,
        "pairs": a.pairs, "inbetweens": a.inbetweens, "path_resolution": a.path_resolution, "invert_steps": a.invert_steps, "grid_only_cap": a.grid_only_cap, "scaling_steps": a.scaling_steps,
        "seed": a.seed, "out": a.out, "cache": a.cache}.items() if v is not None}
    given.update(ablations=a.ablations, scaling=a.scaling, pictures=not a.no_pictures)
    if a.budget_s is not None and a.steps is None:
        given["steps"] = None
    return quick_config(**given) if a.quick else BenchConfig(**given)  # type: ignore[arg-type]


def estimate_s(cfg: BenchConfig, n_shapes: int, uncached: int, train_s: float) -> dict[str, float]:
    """Expected seconds per stage; ``train_s`` is our training budget (0 for step-based training, which
    is not estimated)."""
    scale = (cfg.resolution / 256) ** 2  # decode and oracle cost follow surface area
    ours = train_s + n_shapes * _EST_SETUP_S  # the baselines get what ours used, setup included
    seen = train_s + (n_shapes - len(cfg.holdout)) * _EST_SETUP_S if cfg.holdout else 0.0
    stages = {
        "sampling": uncached * _EST_SAMPLE_S,
        "training (ours, generalization-only, grid-only, unseen)": 3 * ours + seen,
        "oracle": n_shapes * _EST_ORACLE_S * scale,
        "decode + metrics": n_shapes * (3 * _EST_DECODE_S * scale + (4 + cfg.decimation_points) * _EST_COMPARE_S),
        "interpolation": len(cfg.pairs) * (cfg.inbetweens + 2) * (_EST_DECODE_S * ((cfg.path_resolution or cfg.resolution) / 256) ** 2
                                                                   + _EST_COMPARE_S / 4),
    }
    if cfg.ablations:
        stages["ablations"] = 3 * ours + 5 * n_shapes * (_EST_DECODE_S * scale + _EST_COMPARE_S)
    if cfg.scaling:
        stages["scaling"] = sum(k * (_EST_SETUP_S + 5) for k in cfg.scaling_counts) + 30 * len(cfg.scaling_resolutions)
    return stages
