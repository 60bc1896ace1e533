"""``python -m bench.run [--quick] [--ablations] [--scaling] ...``: the benchmark of issue 5.

Stages: oracle meshes → our joint encode → baselines with the same budget (generalization-only,
grid-only; quadric decimation at our bytes per shape) → per-shape decode and metrics (+ pictures)
→ interpolation paths → unseen shapes → optional ablations and scaling → Markdown/CSV/JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from backend.api import decode, encode, invert
from backend.config import Preset, get_preset, with_training
from backend.library import Library
from backend.meshes import MESH_SUFFIXES, Mesh, load_mesh
from backend.sampling import SampleConfig

from . import render
from .baselines import (decimate_to_bytes, encode_grid_only, encode_without_band_sampling, generalization_only,
                        grid_only_resolution, mesh_bytes)
from .config import BenchConfig, estimate_s, parse_args
from .evaluate import as_mesh, decode_cost, fidelity, interpolation_path, normalized, oracle, vertex_errors
from .measure import Measured, isolated
from .report import IMAGE_DIR, headline_table, mean_metrics, write_outputs

OURS, GEN, GRID, ORACLE = "ours", "generalization-only", "grid-only", "oracle"
DEC_CODE, DEC_AMORTISED = "decimated @ code bytes", "decimated @ amortised bytes"
ERROR_VMAX = 0.01  #: heatmap colour scale top (normalised units; the F@0.01 threshold)


def log(message: str, start: float = time.perf_counter()) -> None:
    print(f"[{time.perf_counter() - start:7.1f} s] {message}", flush=True)


def load_shapes(cfg: BenchConfig) -> dict[str, Mesh]:
    """The collection, sorted by name; every name in cfg.shapes must exist."""
    files = {p.stem: p for p in sorted(cfg.meshes.iterdir()) if p.suffix.lower() in MESH_SUFFIXES}
    names = cfg.shapes or sorted(files)
    missing = [n for n in names if n not in files]
    if missing:
        raise SystemExit(f"no mesh named {', '.join(missing)} in {cfg.meshes}")
    return {n: load_mesh(files[n]) for n in sorted(names)}


def _uncached(shapes: Mapping[str, Mesh], sample: SampleConfig, cache: Path, seed: int) -> int:
    """Shapes whose training samples are not in the cache yet (for the estimate)."""
    from backend.meshes import normalization, validate_mesh

    count = 0
    for name, mesh in shapes.items():
        clean = validate_mesh(mesh, name)
        key = Mesh(normalization(clean.vertices).apply(clean.vertices), clean.faces).content_hash()[:24]
        count += not (cache / "samples" / f"{key}-{sample.key()}-{seed}.npz").is_file()
    return count


def categories(meshes: Path, shapes: Mapping[str, Mesh]) -> dict[str, list[str]]:
    """Shape categories from the collection's index.json, where it has one."""
    index = meshes / "index.json"
    if not index.is_file():
        return {}
    entries = json.loads(index.read_text()).get("meshes", [])
    return {Path(e["file"]).stem: list(e.get("category", [])) for e in entries if Path(e.get("file", "")).stem in shapes}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else platform.processor()
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average_at_start": list(os.getloadavg())}


def per_shape_of(per_shape: Mapping[str, Mapping[str, dict]], method: str) -> dict[str, dict]:
    """{shape: metrics} of one method."""
    return {s: rows[method] for s, rows in per_shape.items() if method in rows}


def encode_info(m: Measured) -> dict:
    """Sizes, times and memory of one measured encode (steps: both phases together)."""
    lib: Library = m.value
    h = lib.history[-1]
    n = len(lib.names)
    return {"bytes_per_shape": lib.code_bytes(), "bytes_shared": lib.shared_bytes(),
            "amortised_bytes_per_shape": lib.code_bytes() + lib.shared_bytes() / n, "encode_wall_s": round(m.seconds, 2),
            "train_s": h["seconds"], "steps": h.get("steps", h.get("coarse_steps", 0) + h.get("detail_steps", 0)),
            "encode_peak_mb": round(m.peak_mb, 1),
            "idle_mb": round(m.idle_mb, 1), "preset": lib.preset.name, "device": h.get("device", "cpu")}


def evaluate_library(lib: Library, shapes: Mapping[str, Mesh], oracle_cd: Mapping[str, float], cfg: BenchConfig,
                     band: float | None = None) -> dict[str, dict]:
    """Decode every shape of ``shapes`` from ``lib`` and measure it."""
    rows = {}
    for name, gt in shapes.items():
        dec = decode(lib, name, resolution=cfg.resolution, band=cfg.band if band is None else band)
        rows[name] = fidelity(gt, as_mesh(dec), oracle_cd[name], cfg.samples, cfg.seed) | {
            "decode_s": dec.stats["seconds"], "detail_fraction": dec.stats["detail_fraction"]}
    return rows


def train_methods(cfg: BenchConfig, shapes: Mapping[str, Mesh], preset: Preset, samples_dir: Path) -> tuple[dict, dict]:
    """Ours, then generalization-only and grid-only for the wall-clock time ours trained; (info, libraries)."""
    log("encoding (ours)")
    ours = isolated(encode, shapes, preset=preset, seed=cfg.seed, device=cfg.device, cache_dir=samples_dir)
    info = {OURS: encode_info(ours) | {"grid_nodes": len(ours.value.model.detail.grid.keys)}}
    budget = info[OURS]["train_s"]
    log(f"ours: {info[OURS]['steps']} steps in {budget:.0f} s; baselines get {budget:.0f} s each")
    gen = isolated(encode, shapes, preset=generalization_only(with_training(preset, time_budget_s=budget)),
                   seed=cfg.seed, device=cfg.device, cache_dir=samples_dir)
    info[GEN] = encode_info(gen)
    grid_res = grid_only_resolution(info[OURS]["grid_nodes"], cfg.grid_only_cap)
    log(f"grid-only baseline: dense {grid_res}^3 grid")
    grid = isolated(encode_grid_only, shapes, preset, grid_res, budget, cfg.seed, samples_dir)
    info[GRID] = encode_info(grid) | {"grid_resolution": grid_res, "grid_nodes": grid_res**3}
    return info, {OURS: ours.value, GEN: gen.value, GRID: grid.value}


def measure_shapes(cfg: BenchConfig, shapes: Mapping[str, Mesh], libs: Mapping[str, Library], oracles: Mapping[str, Mesh],
                   per_shape: dict[str, dict[str, dict]], budgets: list[float], images: Path) -> list[dict]:
    """Decode and measure every shape with every method (into ``per_shape``), decimate the source to
    each byte budget (the first and last are table rows), draw the comparison figures; the
    decimation curve."""
    curve: dict[float, list[dict]] = {b: [] for b in budgets}
    for name, gt in shapes.items():
        log(f"decode and measure {name}")
        ocd = per_shape[name][ORACLE]["cd_l1"]
        meshes = {ORACLE: oracles[name]}
        for method, lib in libs.items():
            dec = decode(lib, name, resolution=cfg.resolution, band=cfg.band)
            meshes[method] = as_mesh(dec)
            per_shape[name][method] = fidelity(gt, meshes[method], ocd, cfg.samples, cfg.seed) | {
                "decode_s": dec.stats["seconds"], "detail_fraction": dec.stats["detail_fraction"]}
        for i, b in enumerate(budgets):
            rec = decimate_to_bytes(gt, b)
            row = fidelity(gt, rec, ocd, cfg.samples, cfg.seed) | {"bytes": mesh_bytes(rec), "source_fits": rec is gt}
            curve[b].append(row)
            if i in (0, len(budgets) - 1):
                label = DEC_CODE if i == 0 else DEC_AMORTISED
                per_shape[name][label], meshes[label] = row, rec
        if cfg.pictures:
            panels = [render.Panel("ground truth", normalized(gt, gt), gt.faces)]
            for method, rec in meshes.items():
                row = per_shape[name][method]
                size = "" if "bytes" not in row else (" (source fits)" if row["source_fits"] else f" ({row['bytes']} B)")
                label = method.replace(" @ ", " @\n")
                panels.append(render.Panel(f"{label}{size}\nCD-L1 {row['cd_l1']:.2e}", normalized(gt, rec), rec.faces,
                                           vertex_errors(gt, rec)))
            render.comparison_figure(images / f"compare_{name}.png", name, panels, ERROR_VMAX)
    return [{"budget": b, "mean_bytes": float(np.mean([r["bytes"] for r in rows])),
             "mean_cd_l1": float(np.mean([r["cd_l1"] for r in rows])),
             "source_fits_share": float(np.mean([r["source_fits"] for r in rows]))} for b, rows in curve.items()]


def interpolations(cfg: BenchConfig, lib: Library, pairs: list[tuple[str, str]], images: Path) -> list[dict]:
    """Quality of each interpolation path (and its picture strip)."""
    out = []
    for a, b in pairs:
        log(f"interpolation {a} → {b}")
        resolution = cfg.path_resolution or cfg.resolution
        path = interpolation_path(lib, a, b, cfg.inbetweens, resolution, cfg.band, cfg.path_samples, cfg.seed)
        out.append({"a": a, "b": b, "inbetweens": cfg.inbetweens, "closed_share": path.closed_share,
                    "single_component_share": path.single_component_share, "endpoint_cd_l1": path.endpoint_cd_l1,
                    "step_ratios": path.step_ratios})
        if cfg.pictures:
            render.strip_figure(images / f"interpolation_{a}_{b}.png", f"{a} → {b} (slerp, {resolution}³)",
                                [(f"t = {t:.2f}", m.vertices, m.faces) for t, m in zip(path.weights, path.meshes)])
    return out


def unseen(cfg: BenchConfig, shapes: Mapping[str, Mesh], preset: Preset, holdout: list[str], per_shape: dict,
           samples_dir: Path) -> dict:
    """Train on the other shapes with our settings, invert each held-out shape, compare with training mode."""
    log(f"unseen shapes: encoding without {', '.join(holdout)}, then inverting them")
    seen = {n: m for n, m in shapes.items() if n not in holdout}
    base = isolated(encode, seen, preset=preset, seed=cfg.seed, device=cfg.device, cache_dir=samples_dir)
    out: dict = {"library": encode_info(base), "shapes": {}}
    lib = base.value
    oracle_cd = {n: per_shape[n][ORACLE]["cd_l1"] for n in holdout}
    for name in holdout:
        start = time.perf_counter()
        lib = invert(lib, shapes[name], name, steps=cfg.invert_steps, seed=cfg.seed, device=cfg.device, cache_dir=samples_dir)
        invert_s = time.perf_counter() - start
        row = evaluate_library(lib, {name: shapes[name]}, oracle_cd, cfg)[name]
        out["shapes"][name] = {"training_mode": per_shape[name][OURS], "unseen": row, "invert_s": round(invert_s, 2),
                               "invert_steps": lib.history[-1]["steps"]}
    return out


def run(cfg: BenchConfig) -> dict:
    """Every stage of the benchmark; the JSON-ready results."""
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    shapes = load_shapes(cfg)
    preset = with_training(get_preset(cfg.preset), steps=cfg.steps, time_budget_s=cfg.budget_s)
    holdout = [n for n in cfg.holdout if n in shapes]
    pairs = [(a, b) for a, b in cfg.pairs if a in shapes and b in shapes]
    uncached = _uncached(shapes, preset.sample, cfg.cache, cfg.seed)
    stages = estimate_s(cfg, len(shapes), uncached, cfg.budget_s if cfg.steps is None else 0.0)
    log(f"{len(shapes)} shapes ({', '.join(shapes)}), preset {preset.name}, "
        + (f"{cfg.steps} steps per phase" if cfg.steps else f"training budget {cfg.budget_s:.0f} s per encode")
        + f", {cfg.resolution}^3, {uncached} shapes to sample")
    log("estimated budget: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in stages.items())
        + f"; total ≈ {sum(stages.values()) / 60:.0f} min" + (" + training steps (not estimated)" if cfg.steps else ""))
    samples_dir = cfg.cache / "samples"
    images = cfg.out / IMAGE_DIR
    if cfg.pictures:
        images.mkdir(parents=True, exist_ok=True)

    log("oracle meshes")
    oracles = {n: oracle(m, cfg.resolution, cfg.cache / "bench") for n, m in shapes.items()}
    per_shape = {n: {ORACLE: fidelity(m, oracles[n], None, cfg.samples, cfg.seed)} for n, m in shapes.items()}
    methods, libs = train_methods(cfg, shapes, preset, samples_dir)
    code_bytes, amortised = methods[OURS]["bytes_per_shape"], methods[OURS]["amortised_bytes_per_shape"]
    budgets = [float(b) for b in np.geomspace(code_bytes, amortised, max(2, cfg.decimation_points))]
    curve = measure_shapes(cfg, shapes, libs, oracles, per_shape, budgets, images)
    for label, b in ((DEC_CODE, budgets[0]), (DEC_AMORTISED, budgets[-1])):
        methods[label] = {"bytes_per_shape": float(np.mean([per_shape[n][label]["bytes"] for n in shapes])),
                          "byte_budget": b, "bytes_shared": 0}
    oracle_cd = {n: per_shape[n][ORACLE]["cd_l1"] for n in shapes}
    if cfg.pictures:
        neural = {m: (methods[m]["bytes_per_shape"], methods[m]["amortised_bytes_per_shape"],
                      mean_metrics(per_shape_of(per_shape, m))["cd_l1"]) for m in libs}
        render.bytes_plot(images / "cd_vs_bytes.png", neural,
                          [(d["mean_bytes"], d["mean_cd_l1"]) for d in curve if d["source_fits_share"] < 1],
                          float(np.mean(list(oracle_cd.values()))), f"{len(shapes)} shapes, decoded and oracle at {cfg.resolution}³")
    results = {"started": started, "config": cfg.to_dict(), "machine": machine(), "estimate_s": stages,
               "methods": methods, "per_shape": per_shape, "categories": categories(cfg.meshes, shapes),
               "grid_channels": preset.model.grid_channels, "decimation_curve": curve,
               "interpolation": interpolations(cfg, libs[OURS], pairs, images)}
    if holdout:
        results["unseen"] = unseen(cfg, shapes, preset, holdout, per_shape, samples_dir)
    if cfg.ablations:
        results["ablations"] = ablations(cfg, shapes, preset, libs[OURS], methods[OURS], oracle_cd, samples_dir, per_shape)
    if cfg.scaling:
        results["scaling"] = scaling(cfg, shapes, preset, libs[OURS], samples_dir)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    return results


def ablations(cfg: BenchConfig, shapes: Mapping[str, Mesh], preset: Preset, ours: Library, ours_info: dict,
              oracle_cd: Mapping[str, float], samples_dir: Path, per_shape: dict) -> dict:
    """Decode band n = 1/3/6 (decode only); code size 32/64/256 and band sampling off (retrained with
    our training settings: the same steps, or the same time budget)."""
    out: dict = {"band": {}, "code_size": {}, "band_sampling": {}}
    for n in (1.0, 3.0, 6.0):
        log(f"ablation: decode band n = {n:g}")
        rows = per_shape_of(per_shape, OURS) if n == cfg.band else evaluate_library(ours, shapes, oracle_cd, cfg, band=n)
        out["band"][f"{n:g}"] = mean_metrics(rows)

    keep = ("bytes_per_shape", "train_s", "steps")
    for d in (32, 64, 256):
        if d == preset.model.code_size:
            out["code_size"][str(d)] = mean_metrics(per_shape_of(per_shape, OURS)) | {k: ours_info[k] for k in keep}
            continue
        log(f"ablation: code size {d}")
        spec = dataclasses.replace(preset, model=dataclasses.replace(preset.model, code_size=d))
        m = isolated(encode, shapes, preset=spec, seed=cfg.seed, device=cfg.device, cache_dir=samples_dir)
        info = encode_info(m)
        rows = evaluate_library(m.value, shapes, oracle_cd, cfg)
        out["code_size"][str(d)] = mean_metrics(rows) | {k: info[k] for k in keep}
    out["band_sampling"]["with"] = mean_metrics(per_shape_of(per_shape, OURS)) | {"train_s": ours_info["train_s"]}
    log("ablation: without band sampling (dense grid, detail trained on all samples)")
    m = isolated(encode_without_band_sampling, shapes, preset, cfg.seed, samples_dir)
    rows = evaluate_library(m.value, shapes, oracle_cd, cfg)
    out["band_sampling"]["without"] = mean_metrics(rows) | {
        "train_s": encode_info(m)["train_s"], "bytes_shared": m.value.shared_bytes()}
    return out


def scaling(cfg: BenchConfig, shapes: Mapping[str, Mesh], preset: Preset, ours: Library, samples_dir: Path) -> dict:
    """Encode wall time and peak memory vs shape count (``scaling_steps`` per phase, first shapes by
    name); decode time and peak memory vs resolution (the first shape, from our library)."""
    out: dict = {"encode": [], "decode": [], "encode_steps_per_phase": cfg.scaling_steps}
    names = list(shapes)
    for k in [c for c in cfg.scaling_counts if c <= len(names)]:
        log(f"scaling: encode {k} shapes")
        spec = dataclasses.replace(preset, train=dataclasses.replace(preset.train, steps=cfg.scaling_steps,
                                                                     detail_steps=cfg.scaling_steps, time_budget_s=None))
        m = isolated(encode, {n: shapes[n] for n in names[:k]}, preset=spec, seed=cfg.seed, device=cfg.device, cache_dir=samples_dir)
        keep = ("encode_wall_s", "train_s", "encode_peak_mb", "idle_mb", "bytes_shared")
        out["encode"].append({"shapes": k} | {key: v for key, v in encode_info(m).items() if key in keep})
    name = names[0]
    for r in cfg.scaling_resolutions:
        log(f"scaling: decode {name} at {r}^3")
        m = isolated(decode_cost, ours, name, r, cfg.band)
        out["decode"].append({"shape": name, "resolution": r, "wall_s": round(m.seconds, 3), "peak_mb": round(m.peak_mb, 1),
                              "idle_mb": round(m.idle_mb, 1)} | m.value)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cfg = parse_args(argv)
    results = run(cfg)
    results["command"] = " ".join([".venv/bin/python -m bench.run", *map(shlex.quote, argv)])
    files = write_outputs(results, cfg.out)
    print(headline_table(results))
    log("wrote " + ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
