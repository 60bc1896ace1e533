"""``python -m bench.run [--quick] [--scaling] [--all-pairs] [--sizes ...] ...``: the benchmark of issues 5, 8 and 9.

Stages: oracle meshes → our joint encode (and one per extra size setting) → baselines
(generalization-only = our library decoded with detail 0, i.e. the coarse branch alone with the
same codes; with ``--trained-baselines`` generalization-only and grid-only trained for ours' time;
quadric decimation, Draco and a narrow-band SDF grid per shape) → per-shape decode and metrics
(+ pictures) → rate–distortion → adding a new mesh (by default a twisted collection mesh) to the
main library, timed against the full encode, and removing it → interpolation paths → random
variants → optional scaling and ablations → Markdown/CSV/JSON.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from backend.api import decode, encode, remove
from backend.config import RANDOM_VARIANT_MIX, DecodeConfig, Preset, with_training
from backend.store.library import Library
from backend.geometry.meshes import MESH_SUFFIXES, Mesh, load_mesh, normalization
from backend.geometry.metrics import component_count
from backend.geometry.sampling import SampleConfig

from . import render
from .baselines import (decimate_to_bytes, draco_available, draco_round_trip, encode_grid_only, generalization_only,
                        grid_only_resolution, mesh_bytes, narrow_band_round_trip)
from .config import BenchConfig, estimate_s, parse_args
from .evaluate import (as_mesh, fidelity, interpolation_path, normalized, one_closed_piece, oracle, roughness_deg,
                       vertex_errors)
from .measure import Measured, isolated
from .report import IMAGE_DIR, headline_table, mean_metrics, write_outputs

OURS, GEN, GRID, ORACLE = "ours", "generalization-only", "grid-only", "oracle"
ERROR_VMAX = 0.01  #: heatmap colour scale top (normalised units; the F@0.01 threshold)


def log(message: str, start: float = time.perf_counter()) -> None:
    print(f"[{time.perf_counter() - start:7.1f} s] {message}", flush=True)


def load_shapes(cfg: BenchConfig) -> dict[str, Mesh]:
    """The collection in a fixed order (sorted by name); every name in cfg.shapes must exist."""
    files = {p.stem: p for p in sorted(cfg.meshes.iterdir()) if p.suffix.lower() in MESH_SUFFIXES}
    names = cfg.shapes or sorted(files)
    missing = [n for n in names if n not in files]
    if missing:
        raise SystemExit(f"no mesh named {', '.join(missing)} in {cfg.meshes}")
    return {n: load_mesh(files[n]) for n in sorted(names)}


def twisted(mesh: Mesh, turn_deg: float = 90.0) -> Mesh:
    """``mesh`` twisted about its bounding box's vertical (y) axis: each vertex rotated about the
    vertical line through the box's x–z centre by an angle proportional to its height above the
    box's bottom, ``turn_deg`` over the full height. Deterministic; faces unchanged."""
    v = np.asarray(mesh.vertices, dtype=np.float64)
    lo, hi = v.min(0), v.max(0)
    centre = (lo + hi) / 2
    angle = np.deg2rad(turn_deg) * (v[:, 1] - lo[1]) / max(hi[1] - lo[1], 1e-12)
    x, z = v[:, 0] - centre[0], v[:, 2] - centre[2]
    c, s = np.cos(angle), np.sin(angle)
    out = v.copy()
    out[:, 0] = centre[0] + c * x + s * z
    out[:, 2] = centre[2] - s * x + c * z
    return Mesh(out, np.asarray(mesh.faces))


def load_add_mesh(cfg: BenchConfig, shapes: Mapping[str, Mesh]) -> tuple[str, Mesh] | None:
    """The mesh ``--add-mesh`` names: ``twist:NAME`` (collection mesh NAME, twisted: ``NAME_twisted``)
    or a mesh file (named by its stem); None for ''."""
    spec = cfg.add_mesh
    if not spec:
        return None
    if spec.startswith("twist:"):
        source = spec.split(":", 1)[1]
        files = {p.stem: p for p in cfg.meshes.iterdir() if p.suffix.lower() in MESH_SUFFIXES}
        if source not in shapes and source not in files:
            raise SystemExit(f"--add-mesh {spec}: no mesh named {source} in {cfg.meshes}")
        name, mesh = f"{source}_twisted", twisted(shapes[source] if source in shapes else load_mesh(files[source]))
    else:
        path = Path(spec)
        if not path.is_file():
            raise SystemExit(f"--add-mesh {spec}: no such file (give a mesh file or twist:NAME)")
        name, mesh = path.stem, load_mesh(path)
    if name in shapes:
        raise SystemExit(f"--add-mesh {spec}: the library already has a shape named {name}")
    return name, mesh


def size_label(size: str) -> str:
    return f"ours ({size})"


def normalized_area(mesh: Mesh) -> float:
    """Surface area of ``mesh`` in its normalised frame (DESIGN §3), for the time estimate."""
    v = normalization(mesh.vertices).apply(mesh.vertices)
    f = np.asarray(mesh.faces, dtype=np.int64)
    return float(0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum())


def _uncached(shapes: Mapping[str, Mesh], sample: SampleConfig, cache: Path, seed: int) -> int:
    """Shapes whose training samples are not in the cache yet (for the estimate)."""
    from backend.geometry.meshes import normalization, validate_mesh

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


def file_bytes(lib: Library, path: Path | None = None) -> int:
    """Bytes of ``lib`` saved as a ``.csdf`` file (at ``path``, or in a temporary directory)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lib.save(path)
        return path.stat().st_size
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "lib.csdf"
        lib.save(target)
        return target.stat().st_size


def encode_info(m: Measured, path: Path | None = None, save: bool = True) -> dict:
    """Sizes, times and memory of one measured encode (steps: both phases together). ``save``:
    measure the library file (else the bytes are the raw tensors: code + shared per shape)."""
    lib: Library = m.value
    h = lib.history[-1]
    n = len(lib.names)
    grid = lib.model.detail.grid if lib.model.detail is not None else None
    nodes = [grid.node_count(i) for i in range(n)] if grid is not None else [0] * n
    total = file_bytes(lib, path) if save else n * lib.code_bytes() + lib.shared_bytes()
    return {"bytes_per_shape": total / n, "file_bytes": total, "file_measured": save, "code_bytes": lib.code_bytes(),
            "bytes_shared": lib.shared_bytes(), "nodes_per_shape": float(np.mean(nodes)), "stored_nodes": int(sum(nodes)),
            "encode_wall_s": round(m.seconds, 2), "train_s": h["seconds"],
            "coarse_steps": h.get("coarse_steps", 0), "detail_steps": h.get("detail_steps", 0),
            "encode_peak_mb": round(m.peak_mb, 1), "idle_mb": round(m.idle_mb, 1), "preset": lib.preset.name,
            "grid_channels": lib.preset.model.grid_channels, "storage_band": lib.preset.storage.band_cells,
            "device": h.get("device", "cpu"), "shapes": n}


def evaluate_library(lib: Library, shapes: Mapping[str, Mesh], oracle_cd: Mapping[str, float], cfg: BenchConfig,
                     bytes_per_shape: float | None = None) -> tuple[dict[str, dict], dict[str, Mesh]]:
    """Decode every shape of ``shapes`` from ``lib`` and measure it; (rows, meshes)."""
    rows, meshes = {}, {}
    for name, gt in shapes.items():
        dec = decode(lib, name, resolution=cfg.resolution, band=cfg.band)
        meshes[name] = as_mesh(dec)
        rows[name] = fidelity(gt, meshes[name], oracle_cd[name], cfg.samples, cfg.seed) | {
            "decode_s": dec.stats["seconds"], "detail_fraction": dec.stats["detail_fraction"]}
        if bytes_per_shape is not None:
            rows[name]["bytes"] = bytes_per_shape
    return rows, meshes


def coarse_info(lib: Library, ours: dict) -> dict:
    """Generalization-only as ours decoded with detail 0: codes and the coarse branch, no grids or
    detail MLP (bytes = code + coarse network as a library stores it, float16, ÷ shapes), ours' coarse
    phase of training."""
    coarse = sum(p.numel() * 2 for p in lib.model.coarse.parameters())
    n = len(lib.names)
    return {"bytes_per_shape": lib.code_bytes() + coarse / n, "file_bytes": n * lib.code_bytes() + coarse,
            "file_measured": False, "code_bytes": lib.code_bytes(), "bytes_shared": coarse, "nodes_per_shape": 0.0,
            "stored_nodes": 0, "coarse_steps": ours["coarse_steps"], "detail_steps": 0, "preset": ours["preset"],
            "device": ours["device"], "shapes": n, "decode_detail": 0.0, "trained": False}


def train_methods(cfg: BenchConfig, shapes: Mapping[str, Mesh], preset: Preset, samples_dir: Path,
                  libraries: Path) -> tuple[dict, dict]:
    """Ours; generalization-only = ours decoded with detail 0 (``--trained-baselines``: it and
    grid-only trained for the training time ours used); (info, libraries)."""
    log(f"encoding (ours, size {cfg.size})")
    # fresh samples: the wall time includes sampling, as a user's first encode does (the later
    # encodes of the run read, or fill, the sample cache; sampling is deterministic per seed)
    ours = isolated(encode, shapes, preset=preset, seed=cfg.seed, device=cfg.device,
                    cache_dir=None if cfg.fresh_samples else samples_dir)
    info = {OURS: encode_info(ours, libraries / f"ours-{cfg.size}.csdf") | {"size": cfg.size}}
    budget = info[OURS]["train_s"]
    log(f"ours: {info[OURS]['coarse_steps']} + {info[OURS]['detail_steps']} steps in {budget:.0f} s "
        f"(wall {info[OURS]['encode_wall_s']:.0f} s), {info[OURS]['bytes_per_shape'] / 1e3:.0f} kB per shape"
        + (f"; baselines get {budget:.0f} s of training each" if cfg.trained_baselines else ""))
    if not cfg.trained_baselines:
        info[GEN] = coarse_info(ours.value, info[OURS])
        return info, {OURS: ours.value, GEN: ours.value}
    # encode() gives the coarse phase half of a time budget (the detail phase the other half); a
    # model without detail has only the coarse phase, so it gets twice the budget to train as long as ours
    gen = isolated(encode, shapes, preset=generalization_only(with_training(preset, time_budget_s=2 * budget)),
                   seed=cfg.seed, device=cfg.device, cache_dir=samples_dir)
    info[GEN] = encode_info(gen, libraries / "generalization-only.csdf") | {"trained": True}
    grid_res = grid_only_resolution(info[OURS]["stored_nodes"], cfg.grid_only_cap)
    log(f"grid-only baseline: dense {grid_res}^3 grid")
    grid = isolated(encode_grid_only, shapes, preset, grid_res, budget, cfg.seed, samples_dir)
    info[GRID] = encode_info(grid, save=False) | {"grid_resolution": grid_res, "grid_nodes": grid_res**3}
    return info, {OURS: ours.value, GEN: gen.value, GRID: grid.value}


def measure_shapes(cfg: BenchConfig, shapes: Mapping[str, Mesh], libs: Mapping[str, Library], methods: dict,
                   oracles: Mapping[str, Mesh], per_shape: dict[str, dict[str, dict]], images: Path) -> None:
    """Decode and measure every shape with every library, decimate it to each byte budget, round-trip
    it through Draco and through a narrow-band SDF grid (rows into ``per_shape``); comparison figures."""
    use_draco = bool(cfg.draco_bits) and draco_available()
    if cfg.draco_bits and not use_draco:
        log("note: DracoPy is not installed: the Draco rows are skipped (pip install DracoPy)")
    for name, gt in shapes.items():
        log(f"decode and measure {name}")
        ocd = per_shape[name][ORACLE]["cd_l1"]
        meshes = {ORACLE: oracles[name]}
        for method, lib in libs.items():
            dec = decode(lib, name, resolution=cfg.resolution, band=cfg.band, detail=methods[method].get("decode_detail", 1.0))
            meshes[method] = as_mesh(dec)
            per_shape[name][method] = fidelity(gt, meshes[method], ocd, cfg.samples, cfg.seed) | {
                "decode_s": dec.stats["seconds"], "detail_fraction": dec.stats["detail_fraction"],
                "bytes": methods[method]["bytes_per_shape"]}
        for b in cfg.decimation_budgets:
            rec = decimate_to_bytes(gt, b)
            label = f"decimated @ {b / 1e3:g} kB"
            per_shape[name][label] = fidelity(gt, rec, ocd, cfg.samples, cfg.seed) | {"bytes": mesh_bytes(rec), "source_fits": rec is gt}
            meshes[label] = rec
        for bits in cfg.draco_bits if use_draco else []:
            size, rec = draco_round_trip(gt, bits)
            label = f"Draco {bits} bits"
            per_shape[name][label] = fidelity(gt, rec, ocd, cfg.samples, cfg.seed) | {"bytes": size}
            meshes[label] = rec
        for r in cfg.narrow_band_resolutions:
            start = time.perf_counter()
            size, rec = narrow_band_round_trip(gt, r, cfg.narrow_band_voxels)
            label = f"narrow band {r}³"
            per_shape[name][label] = fidelity(gt, rec, ocd, cfg.samples, cfg.seed) | {
                "bytes": size, "encode_decode_s": round(time.perf_counter() - start, 2)}
            meshes[label] = rec
        if cfg.pictures:
            pick = [m for m in meshes if m in libs or m == ORACLE]
            pick += [m for m in meshes if m.startswith("Draco")][-2:-1] + [m for m in meshes if m.startswith("narrow band")][-1:]
            pick += [m for m in meshes if m.startswith("decimated")][1:2]
            panels = [render.Panel("ground truth", normalized(gt, gt), gt.faces)]
            for method in pick:
                row = per_shape[name][method]
                size = "" if "bytes" not in row or method == ORACLE else f" ({row['bytes'] / 1e3:.0f} kB)"
                panels.append(render.Panel(f"{method}{size}\nCD-L1 {row['cd_l1']:.2e}", normalized(gt, meshes[method]),
                                           meshes[method].faces, vertex_errors(gt, meshes[method])))
            render.comparison_figure(images / f"compare_{name}.png", name, panels, ERROR_VMAX)


def other_sizes(cfg: BenchConfig, shapes: Mapping[str, Mesh], oracle_cd: Mapping[str, float], per_shape: dict,
                samples_dir: Path, libraries: Path) -> dict[str, dict]:
    """One encode per extra size setting, every shape decoded and measured (rows into ``per_shape``)."""
    out = {}
    for size in [s for s in cfg.sizes if s != cfg.size]:
        log(f"encoding (ours, size {size})")
        m = isolated(encode, shapes, preset=cfg.preset_for(size), seed=cfg.seed, device=cfg.device, cache_dir=samples_dir)
        info = encode_info(m, libraries / f"ours-{size}.csdf") | {"size": size}
        rows, _ = evaluate_library(m.value, shapes, oracle_cd, cfg, info["bytes_per_shape"])
        for name, row in rows.items():
            per_shape[name][size_label(size)] = row
        out[size_label(size)] = info
    return out


def rate_distortion(per_shape: Mapping[str, Mapping[str, dict]]) -> list[dict]:
    """Mean bytes per shape, CD-L1 and fidelity ratio of every method that stores each shape."""
    methods = list(dict.fromkeys(m for rows in per_shape.values() for m in rows if m != ORACLE))
    out = []
    for m in methods:
        rows = per_shape_of(per_shape, m)
        if len(rows) != len(per_shape) or not all("bytes" in r for r in rows.values()):
            continue
        out.append({"method": m, "bytes_per_shape": float(np.mean([r["bytes"] for r in rows.values()])),
                    "cd_l1": float(np.mean([r["cd_l1"] for r in rows.values()])),
                    "fidelity_ratio": float(np.mean([r["fidelity_ratio"] for r in rows.values()])),
                    "max_components": int(max(r["components"] for r in rows.values()))})
    return out


def rd_series(rd: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """Rate–distortion points grouped into plot series (a method family per series)."""
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rd:
        m = row["method"]
        family = ("ours" if m == OURS or m.startswith("ours (") else "Draco" if m.startswith("Draco")
                  else "narrow-band SDF (float16, zstd)" if m.startswith("narrow band")
                  else "quadric decimation" if m.startswith("decimated") else m)
        series.setdefault(family, []).append((row["bytes_per_shape"], row["cd_l1"]))
    return series


def add_remove(cfg: BenchConfig, shapes: Mapping[str, Mesh], preset: Preset, new: str, oracle_cd: Mapping[str, float],
               samples_dir: Path) -> dict:
    """Encode every shape but ``new``, decode the old shapes, add ``new`` (sampling included: no
    sample cache), decode again; then remove it. Times, the new shape's metrics, old shapes' change."""
    old = {n: m for n, m in shapes.items() if n != new}
    log(f"add/remove: encoding {len(old)} shapes without {new}")
    base = isolated(encode, old, preset=preset, seed=cfg.seed, device=cfg.device, cache_dir=samples_dir)
    before, _ = evaluate_library(base.value, old, oracle_cd, cfg)
    log(f"add/remove: adding {new}")
    added = isolated(encode, {new: shapes[new]}, library=base.value, seed=cfg.seed, device=cfg.device, cache_dir=None)
    after, _ = evaluate_library(added.value, shapes, oracle_cd, cfg)
    change = {n: abs(after[n]["cd_l1"] - before[n]["cd_l1"]) / before[n]["cd_l1"] for n in old}
    start = time.perf_counter()
    removed = remove(added.value, [new])
    remove_s = time.perf_counter() - start
    unchanged = all(torch.equal(removed.codes[removed.index(n)], base.value.codes[base.value.index(n)]) for n in old)
    return {"shape": new, "mode": "hold-out", "old_shapes": len(old), "base_encode_wall_s": round(base.seconds, 2),
            "add_wall_s": round(added.seconds, 2), "add_train_s": added.value.history[-1]["seconds"],
            "add_peak_mb": round(added.peak_mb, 1), "new": after[new],
            "old_before": before, "old_after": {n: after[n] for n in old}, "old_cd_change": change,
            "max_old_cd_change": float(max(change.values())) if change else 0.0,
            "remove_s": round(remove_s, 4), "remove_keeps_old_codes": bool(unchanged),
            "file_bytes_after_add": file_bytes(added.value), "file_bytes_after_remove": file_bytes(removed)}


def add_new_mesh(cfg: BenchConfig, shapes: Mapping[str, Mesh], lib: Library, ours_info: dict, new: str, mesh: Mesh,
                 per_shape: Mapping[str, Mapping[str, dict]]) -> dict:
    """Add a mesh the library does not hold to the main library (fresh process, no sample cache:
    sampling included), decode the old shapes again (their rows before the add are the main rows)
    and the new one against its oracle; then remove it. Times, the new shape's metrics, old shapes' change."""
    log(f"add/remove: adding {new} ({len(mesh.faces):,} faces) to the {len(shapes)}-shape library")
    added = isolated(encode, {new: mesh}, library=lib, seed=cfg.seed, device=cfg.device, cache_dir=None)
    log(f"add/remove: added in {added.seconds:.1f} s wall ({added.seconds / ours_info['encode_wall_s']:.3f} × the full encode)")
    before = per_shape_of(per_shape, OURS)
    oracle_mesh = oracle(mesh, cfg.resolution, cfg.cache / "bench")
    new_oracle = fidelity(mesh, oracle_mesh, None, cfg.samples, cfg.seed)
    after, _ = evaluate_library(added.value, {**shapes, new: mesh}, {**{n: per_shape[n][ORACLE]["cd_l1"] for n in shapes},
                                                                     new: new_oracle["cd_l1"]}, cfg)
    change = {n: abs(after[n]["cd_l1"] - before[n]["cd_l1"]) / before[n]["cd_l1"] for n in shapes}
    start = time.perf_counter()
    removed = remove(added.value, [new])
    remove_s = time.perf_counter() - start
    unchanged = all(torch.equal(removed.codes[removed.index(n)], lib.codes[lib.index(n)]) for n in shapes)
    return {"shape": new, "source": cfg.add_mesh, "mode": "new mesh", "old_shapes": len(shapes),
            "base_encode_wall_s": ours_info["encode_wall_s"], "new_faces": int(len(mesh.faces)),
            "add_wall_s": round(added.seconds, 2), "add_train_s": added.value.history[-1]["seconds"],
            "add_peak_mb": round(added.peak_mb, 1), "new": after[new], "new_oracle": new_oracle,
            "old_before": {n: before[n] for n in shapes}, "old_after": {n: after[n] for n in shapes}, "old_cd_change": change,
            "max_old_cd_change": float(max(change.values())) if change else 0.0,
            "remove_s": round(remove_s, 4), "remove_keeps_old_codes": bool(unchanged),
            "file_bytes_after_add": file_bytes(added.value), "file_bytes_after_remove": file_bytes(removed)}


def interpolations(cfg: BenchConfig, lib: Library, pairs: list[tuple[str, str]], pictures: list[tuple[str, str]],
                   images: Path) -> dict:
    """Quality of every interpolation path (strip pictures for ``pictures``), seconds per in-between."""
    res = cfg.path_resolution
    endpoints: dict[str, Mesh] = {}
    paths, start = [], time.perf_counter()
    for i, (a, b) in enumerate(pairs):
        path = interpolation_path(lib, a, b, cfg.inbetweens, res, cfg.band, cfg.path_detail, cfg.path_samples,
                                  cfg.seed, endpoints)
        paths.append({"a": a, "b": b, "inbetweens": cfg.inbetweens, "single_piece": path.single_piece,
                      "endpoints_single_piece": path.endpoints_single_piece,
                      "components": [component_count(m.faces) for m in path.meshes],
                      "roughness_deg": path.roughness, "roughness_ratio": path.roughness_ratio,
                      "endpoint_cd_l1": path.endpoint_cd_l1, "step_cd_l1": path.step_cd_l1,
                      "max_step_ratio": path.max_step_ratio, "inbetween_s": path.inbetween_s})
        done = time.perf_counter() - start
        log(f"interpolation {i + 1}/{len(pairs)} {a} → {b}: single piece {sum(path.single_piece)}/{cfg.inbetweens}, "
            f"roughness ×{path.roughness_ratio:.2f}, max step ×{path.max_step_ratio:.2f}; "
            f"about {done / (i + 1) * (len(pairs) - i - 1) / 60:.1f} min left")
        if cfg.pictures and (a, b) in pictures:
            render.strip_figure(images / f"interpolation_{a}_{b}.png", f"{a} → {b} ({DecodeConfig().mode}, detail {cfg.path_detail:g}, {res}³)",
                                [(f"t = {t:.2f}", m.vertices, m.faces) for t, m in zip(path.weights, path.meshes)])
    timing: dict[str, list[float]] = {}
    for a, b in (pictures or pairs[:1])[: cfg.timing_pairs]:
        for r in cfg.timing_resolutions:
            dec = decode(lib, {a: 0.5, b: 0.5}, resolution=r, band=cfg.band, detail=cfg.path_detail, normalized=True)
            timing.setdefault(str(r), []).append(dec.stats["seconds"])
    counted = [p for p in paths if p["endpoints_single_piece"]]
    flags = [f for p in counted for f in p["single_piece"]]
    rough = [p["roughness_ratio"] for p in paths if np.isfinite(p["roughness_ratio"])]
    steps = [p["max_step_ratio"] for p in paths if not np.isnan(p["max_step_ratio"])]  # inf: an empty mesh on the path
    summary = {"pairs": len(paths), "pairs_counted": len(counted), "inbetweens_counted": len(flags),
               "single_piece_share": float(np.mean(flags)) if flags else float("nan"),
               "roughness_ratio_max": float(max(rough)) if rough else float("nan"),
               "roughness_ratio_mean": float(np.mean(rough)) if rough else float("nan"),
               "roughness_ratio_share_ok": float(np.mean([r <= 1.1 for r in rough])) if rough else float("nan"),
               "max_step_ratio_max": float(max(steps)) if steps else float("nan"),
               "max_step_ratio_share_ok": float(np.mean([s <= 2 for s in steps])) if steps else float("nan"),
               "inbetween_s": {r: float(np.mean(v)) for r, v in timing.items()}
               | {str(res): float(np.mean([s for p in paths for s in p["inbetween_s"]])) if paths else float("nan")},
               "wall_s": round(time.perf_counter() - start, 1)}
    return {"summary": summary, "paths": paths}


def random_variants(cfg: BenchConfig, lib: Library, images: Path) -> dict:
    """One-piece share and roughness of seeded random variants (``backend.latent.explore.random_code``,
    decoded as raw codes at the path resolution), where the engine offers them."""
    if cfg.random_variants <= 0:
        return {}
    try:
        from backend.latent.explore import random_code
    except ImportError:
        note = "the engine offers no backend.latent.explore.random_code at this commit: random variants not measured"
        log("note: " + note)
        return {"skipped": note}
    meshes, flags, rough = [], [], []
    for seed in range(cfg.random_variants):
        dec = decode(lib, random_code(lib, seed), resolution=cfg.path_resolution, detail=cfg.path_detail,
                     normalized=True)
        meshes.append(as_mesh(dec))
        flags.append(one_closed_piece(meshes[-1]))
        rough.append(roughness_deg(meshes[-1]))
    if cfg.pictures and meshes:
        render.strip_figure(images / "random_variants.png", f"random variants (seeds 0–{len(meshes) - 1}, {cfg.path_resolution}³)",
                            [(f"seed {i}", m.vertices, m.faces) for i, m in enumerate(meshes[:8])])
    return {"count": len(flags), "mix": RANDOM_VARIANT_MIX, "resolution": cfg.path_resolution,
            "single_piece_share": float(np.mean(flags)),
            "components": [component_count(m.faces) for m in meshes], "roughness_deg": rough}


def run(cfg: BenchConfig) -> dict:
    """Every stage of the benchmark; the JSON-ready results."""
    started, t0 = time.strftime("%Y-%m-%d %H:%M:%S %Z"), time.perf_counter()
    shapes = load_shapes(cfg)
    names = list(shapes)
    preset = cfg.preset_for()
    new = cfg.add_shape if cfg.add_shape and len(names) > 1 else None  # hold-out mode (replaces --add-mesh)
    if new is not None and new not in shapes:
        raise SystemExit(f"--add-shape {new} is not among the shapes")
    extra = load_add_mesh(cfg, shapes) if new is None else None
    pictures = [(a, b) for a, b in cfg.pairs if a in shapes and b in shapes]
    # every pair once, in the direction its strip picture is asked for (else by name)
    pairs = [(b, a) if (b, a) in pictures else (a, b) for a, b in itertools.combinations(names, 2)] if cfg.all_pairs else pictures
    uncached = _uncached(shapes, preset.sample, cfg.cache, cfg.seed)
    stages = estimate_s(cfg, [normalized_area(m) for m in shapes.values()], uncached, len(pairs),
                        normalized_area(extra[1]) if extra else None)
    log(f"{len(shapes)} shapes ({', '.join(shapes)}), preset {preset.name}, size {cfg.size}, "
        + (f"{cfg.steps} steps per phase" if cfg.steps else f"training budget {cfg.budget_s:.0f} s per encode"
           if cfg.budget_s else "collection-scaled steps")
        + f", {cfg.resolution}^3, {uncached} shapes to sample, {len(pairs)} interpolation pairs")
    log("estimated: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in stages.items())
        + f"; total ≈ {sum(stages.values()) / 60:.0f} min")
    if cfg.estimate_only:
        return {"estimate_s": stages}
    samples_dir = cfg.cache / "samples"
    images = cfg.out / IMAGE_DIR
    libraries = cfg.out / "libraries"
    if cfg.pictures:
        images.mkdir(parents=True, exist_ok=True)

    log("oracle meshes")
    oracles = {n: oracle(m, cfg.resolution, cfg.cache / "bench") for n, m in shapes.items()}
    per_shape = {n: {ORACLE: fidelity(m, oracles[n], None, cfg.samples, cfg.seed)} for n, m in shapes.items()}
    oracle_cd = {n: per_shape[n][ORACLE]["cd_l1"] for n in shapes}
    methods, libs = train_methods(cfg, shapes, preset, samples_dir, libraries)
    measure_shapes(cfg, shapes, libs, methods, oracles, per_shape, images)
    methods |= other_sizes(cfg, shapes, oracle_cd, per_shape, samples_dir, libraries)
    rd = rate_distortion(per_shape)
    if cfg.pictures:
        render.rd_plot(images / "cd_vs_bytes.png", rd_series(rd), float(np.mean(list(oracle_cd.values()))),
                       f"{len(shapes)} shapes, decoded and oracle at {cfg.resolution}³")
    results = {"started": started, "config": cfg.to_dict(), "machine": machine(), "estimate_s": stages,
               "methods": methods, "per_shape": per_shape, "categories": categories(cfg.meshes, shapes),
               "rate_distortion": rd, "draco_available": draco_available(), "uncached": uncached,
               "sampling_cached": not cfg.fresh_samples and uncached == 0}
    save_partial(results, cfg.out)
    if new is not None:
        results["add_remove"] = add_remove(cfg, shapes, preset, new, oracle_cd, samples_dir)
    elif extra is not None:
        results["add_remove"] = add_new_mesh(cfg, shapes, libs[OURS], methods[OURS], *extra, per_shape)
    log(f"interpolation: {len(pairs)} pairs × {cfg.inbetweens} in-betweens at {cfg.path_resolution}^3 "
        f"(estimated {stages['interpolation'] / 60:.1f} min)")
    save_partial(results, cfg.out)
    results["interpolation"] = interpolations(cfg, libs[OURS], pairs, pictures, images)
    results["random_variants"] = random_variants(cfg, libs[OURS], images)
    save_partial(results, cfg.out)
    if cfg.scaling:
        results["scaling"] = scaling(cfg, shapes, preset, per_shape, methods[OURS], samples_dir)
        save_partial(results, cfg.out)
    if cfg.ablations:
        results["ablations"] = ablations(cfg, shapes, preset, methods[OURS], oracle_cd, samples_dir, per_shape)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    return results


def save_partial(results: dict, out: Path) -> None:
    """The stages measured so far, so a run that dies late still leaves its numbers."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.partial.json").write_text(json.dumps(results, indent=1, default=float))


def ablations(cfg: BenchConfig, shapes: Mapping[str, Mesh], preset: Preset, ours_info: dict,
              oracle_cd: Mapping[str, float], samples_dir: Path, per_shape: dict) -> dict:
    """Code size 32/64/256, retrained with our training settings."""
    out: dict = {"code_size": {}}
    keep = ("bytes_per_shape", "train_s", "coarse_steps", "detail_steps")
    for d in (32, 64, 256):
        if d == preset.model.code_size:
            out["code_size"][str(d)] = mean_metrics(per_shape_of(per_shape, OURS)) | {k: ours_info[k] for k in keep}
            continue
        log(f"ablation: code size {d}")
        spec = dataclasses.replace(preset, model=dataclasses.replace(preset.model, code_size=d))
        m = isolated(encode, shapes, preset=spec, seed=cfg.seed, device=cfg.device, cache_dir=samples_dir)
        info = encode_info(m)
        rows, _ = evaluate_library(m.value, shapes, oracle_cd, cfg)
        out["code_size"][str(d)] = mean_metrics(rows) | {k: info[k] for k in keep}
    return out


def scaling(cfg: BenchConfig, shapes: Mapping[str, Mesh], preset: Preset, per_shape: dict, ours_info: dict,
            samples_dir: Path) -> list[dict]:
    """Encode the first k shapes (fixed order) for each k: mean fidelity ratio, worst extra
    components over the oracle, encode minutes, library file bytes per shape."""
    names = list(shapes)
    out = []
    for k in [c for c in cfg.scaling_counts if c <= len(names)]:
        subset = {n: shapes[n] for n in names[:k]}
        if k == len(names):
            rows, info = per_shape_of(per_shape, OURS), ours_info
        else:
            log(f"scaling: encode {k} shapes")
            m = isolated(encode, subset, preset=preset, seed=cfg.seed, device=cfg.device, cache_dir=samples_dir)
            info = encode_info(m)
            rows, _ = evaluate_library(m.value, subset, {n: per_shape[n][ORACLE]["cd_l1"] for n in subset}, cfg)
        extra = [rows[n]["components"] - per_shape[n][ORACLE]["components"] for n in subset]
        out.append({"shapes": k, "names": list(subset), "mean_fidelity_ratio": float(np.mean([rows[n]["fidelity_ratio"] for n in subset])),
                    "worst_extra_components": int(max(extra)), "encode_wall_s": info["encode_wall_s"],
                    "train_s": info["train_s"], "coarse_steps": info["coarse_steps"], "detail_steps": info["detail_steps"],
                    "bytes_per_shape": info["bytes_per_shape"], "encode_peak_mb": info["encode_peak_mb"]})
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cfg = parse_args(argv)
    results = run(cfg)
    if cfg.estimate_only:
        return 0
    results["command"] = " ".join([".venv/bin/python -m bench.run", *map(shlex.quote, argv)])
    files = write_outputs(results, cfg.out)
    print(headline_table(results))
    log("wrote " + ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
