"""Results as Markdown (docs-ready), CSV (one row per shape and method) and JSON."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

IMAGE_DIR = Path("images") / "benchmarks"  #: pictures, relative to the output dir (and to docs/)
METHOD_ORDER = ["ours", "generalization-only", "grid-only", "decimated @ code bytes", "decimated @ amortised bytes", "oracle"]
_MEAN_KEYS = ["cd_l1", "cd_l2", "f_0.005", "f_0.01", "nc", "hd", "fidelity_ratio", "components", "faces", "decode_s",
              "detail_fraction", "bytes"]


def mean_metrics(rows: Mapping[str, Mapping]) -> dict[str, float]:
    """Mean of each metric over shapes, plus the shares of closed and single-component meshes."""
    rows = list(rows.values())
    out = {k: float(np.mean([r[k] for r in rows])) for k in _MEAN_KEYS if rows and all(k in r for r in rows)}
    out["closed_share"] = float(np.mean([bool(r["closed"]) for r in rows]))
    out["single_component_share"] = float(np.mean([r["components"] == 1 for r in rows]))
    out["shapes"] = len(rows)
    return out


def _sci(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else ("∞" if math.isinf(x) else f"{x:.3g}")


def _f(x: float, digits: int = 3) -> str:
    return "—" if x is None or math.isnan(x) else ("∞" if math.isinf(x) else f"{x:.{digits}f}")


def _bytes(n: float | None) -> str:
    if n is None:
        return "—"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _means(results: dict) -> dict[str, dict]:
    methods = {m for rows in results["per_shape"].values() for m in rows}
    return {m: mean_metrics({s: rows[m] for s, rows in results["per_shape"].items() if m in rows})
            for m in METHOD_ORDER if m in methods}


def headline_table(results: dict) -> str:
    """Mean metrics, bytes and times per method (Markdown)."""
    rows = []
    for m, mean in _means(results).items():
        info = results["methods"].get(m, {})
        raw = info.get("bytes_per_shape")
        rows.append([m, _sci(mean["cd_l1"]), _sci(mean["cd_l2"]), _f(mean["f_0.005"]), _f(mean["f_0.01"]), _f(mean["nc"]),
                     _sci(mean["hd"]), _f(mean["fidelity_ratio"], 2), _f(mean["components"], 1), _f(mean["closed_share"], 2),
                     _bytes(raw), _bytes(info.get("amortised_bytes_per_shape", raw if m.startswith("decimated") else None)),
                     _bytes(info.get("bytes_shared")), _f(info.get("train_s", float("nan")), 0),
                     _f(info.get("encode_peak_mb", float("nan")), 0), _f(mean.get("decode_s", float("nan")), 2)])
    header = ["method", "CD-L1", "CD-L2", "F@0.005", "F@0.01", "NC", "HD", "fidelity ratio", "components", "closed",
              "bytes/shape (raw)", "bytes/shape (amortised)", "shared", "train s", "encode peak MB", "decode s/shape"]
    return _table(header, rows)


def _per_shape_table(results: dict) -> str:
    cats = results.get("categories", {})
    rows = []
    for shape, r in results["per_shape"].items():
        o = r["ours"]
        rows.append([shape, ", ".join(cats.get(shape, [])) or "—", _sci(r["oracle"]["cd_l1"]), _sci(o["cd_l1"]), _sci(o["cd_l2"]),
                     _f(o["f_0.005"]), _f(o["f_0.01"]), _f(o["nc"]), _sci(o["hd"]), _f(o["fidelity_ratio"], 2),
                     str(o["components"]), "yes" if o["closed"] else "no",
                     _sci(r["generalization-only"]["cd_l1"]), _sci(r["grid-only"]["cd_l1"]),
                     _sci(r["decimated @ amortised bytes"]["cd_l1"]), _f(o["decode_s"], 2)])
    header = ["shape", "category", "oracle CD-L1", "CD-L1", "CD-L2", "F@0.005", "F@0.01", "NC", "HD", "fidelity ratio",
              "components", "closed", "gen.-only CD-L1", "grid-only CD-L1", "decimated (amortised) CD-L1", "decode s"]
    return _table(header, rows)


def _targets(results: dict, means: dict[str, dict]) -> list[str]:
    ours, gen = means["ours"], means["generalization-only"]
    gain = gen["cd_l1"] / ours["cd_l1"] if ours["cd_l1"] > 0 else float("nan")
    ratio = ours["fidelity_ratio"]
    res = results["config"]["resolution"]
    worst = sorted(results["per_shape"], key=lambda s: -results["per_shape"][s]["ours"]["fidelity_ratio"])[:3]
    cats = results.get("categories", {})
    return [
        f"- Ours vs generalization-only at equal code size and training time: mean CD-L1 {_sci(ours['cd_l1'])} vs "
        f"{_sci(gen['cd_l1'])}, **{gain:.2f}× lower** (target ≥ 3×: {'met' if gain >= 3 else 'NOT met'}).",
        f"- Ours at {res}³: mean fidelity ratio **{ratio:.2f}** (target ≤ 3.0: {'met' if ratio <= 3 else 'NOT met'}; "
        f"aim ≤ 2.0: {'met' if ratio <= 2 else 'not met'}).",
        "- Worst shapes by fidelity ratio: " + "; ".join(
            f"{s} (ratio {results['per_shape'][s]['ours']['fidelity_ratio']:.2f}, "
            f"components {results['per_shape'][s]['ours']['components']}, HD {_sci(results['per_shape'][s]['ours']['hd'])}"
            + (f"; {', '.join(cats[s])}" if cats.get(s) else "") + ")" for s in worst) + ".",
    ]


def markdown(results: dict) -> str:
    """The docs-ready results page (copy to docs/benchmarks.md, pictures to docs/images/benchmarks/)."""
    cfg, mach, methods = results["config"], results["machine"], results["methods"]
    means = _means(results)
    n = len(results["per_shape"])
    ours, grid = methods["ours"], methods["grid-only"]
    lines = [
        "# Benchmarks", "",
        f"Measured by `{results['command']}` on {results['started']} (finished {results['finished']}).", "",
        f"- Machine: {mach['cpu']}, {mach['cores']} cores, torch {mach['torch']} ({mach['torch_threads']} threads), "
        f"device `{ours['device']}`{', GPU ' + mach['cuda'] if mach.get('cuda') else ''}; load average at start "
        f"{mach['load_average_at_start'][0]:.1f}, at end {mach['load_average_at_end'][0]:.1f} (timings are wall clock).",
        f"- Collection: {n} shapes from `{Path(cfg['meshes']).name}/`, encoded jointly with preset `{ours['preset']}`; "
        + (f"{cfg['steps']} steps per phase" if cfg["steps"] else f"training budget {cfg['budget_s']:.0f} s")
        + f" → {ours['steps']} steps in {ours['train_s']:.0f} s (encode wall time {ours['encode_wall_s']:.0f} s incl. sampling).",
        f"- Metrics as in DESIGN §3: normalised frame (longest side 1.8), {cfg['samples']:,} surface samples, point-to-mesh "
        f"distances; decoding and oracle at {cfg['resolution']}³, band n = {cfg['band']:g}; fidelity ratio = CD-L1 ÷ oracle CD-L1.",
        "- Baselines: *generalization-only* = our model without the detail branch and grid (DeepSDF-style), same code "
        f"size, trained for the same wall-clock time as ours ({ours['train_s']:.0f} s); *grid-only* = one dense shared "
        f"feature grid ({grid['grid_resolution']}³ = {grid['grid_nodes']:,} nodes × {results['grid_channels']} channels; our "
        f"sparse grid has {ours['grid_nodes']:,} nodes) read by the detail MLP with the code, no coarse branch, trained on "
        "every sample for the same time; "
        "*decimated* = quadric decimation (fast-simplification) of the source mesh until its float32 vertices + int32 "
        "faces fit our code bytes per shape, or our amortised bytes per shape (code + shared ÷ shapes); *oracle* = "
        "marching cubes of the exact ground-truth SDF (needs the ground truth; the meshing limit).",
        "- Peak memory: resident-set high-water mark (`VmHWM`) of a fresh process that runs only that encode (includes Python and torch: "
        f"{ours['idle_mb']:.0f} MB idle).", "",
        "## Headline (mean over shapes)", "", headline_table(results), "",
        *_targets(results, means), "",
        "## Per shape (ours, with the baselines' CD-L1)", "", _per_shape_table(results), "",
    ]
    images = IMAGE_DIR.as_posix()
    if cfg["pictures"]:
        lines += ["## Pictures", "",
                  "Top row: renders; bottom row: the same meshes coloured by distance to the ground truth "
                  "(0 → 0.01 normalised units, the F@0.01 threshold).", ""]
        lines += [f"![{s}]({images}/compare_{s}.png)" for s in results["per_shape"]]
        lines += ["", f"![CD-L1 vs bytes per shape]({images}/cd_vs_bytes.png)", "",
                  "Neural methods are plotted at their code bytes (hollow) and at their amortised bytes per shape (filled: "
                  f"code + shared ÷ {n}); the decimation curve runs between our code bytes and our amortised bytes per "
                  "shape (budgets where every source mesh already fits are left out: they are exact).", ""]
    if results["interpolation"]:
        rows = [[f"{p['a']} → {p['b']}", str(p["inbetweens"]), _f(p["closed_share"], 2), _f(p["single_component_share"], 2),
                 _sci(p["endpoint_cd_l1"]), _f(max(p["step_ratios"]), 3), _f(float(np.mean(p["step_ratios"])), 3),
                 _f(1 / (p["inbetweens"] + 1), 3)] for p in results["interpolation"]]
        lines += ["## Interpolation (slerp between codes)", "",
                  f"Paths decoded at {cfg['path_resolution'] or cfg['resolution']}³. CD-L1 between consecutive steps "
                  f"({cfg['path_samples']:,} samples) divided by the CD-L1 between the end points; "
                  "a path of evenly spaced changes has every ratio 1/(K+1).", "",
                  _table(["path", "K", "closed share", "single-component share", "endpoint CD-L1", "max step ratio",
                          "mean step ratio", "1/(K+1)"], rows), ""]
        if cfg["pictures"]:
            lines += [f"![{p['a']} → {p['b']}]({images}/interpolation_{p['a']}_{p['b']}.png)" for p in results["interpolation"]] + [""]
    if "unseen" in results:
        u = results["unseen"]
        rows = [[s, _sci(r["training_mode"]["cd_l1"]), _f(r["training_mode"]["fidelity_ratio"], 2), _sci(r["unseen"]["cd_l1"]),
                 _f(r["unseen"]["fidelity_ratio"], 2), _f(r["unseen"]["cd_l1"] / r["training_mode"]["cd_l1"], 2),
                 str(r["unseen"]["components"]), f"{r['invert_s']:.0f} s / {r['invert_steps']}"] for s, r in u["shapes"].items()]
        lines += ["## Unseen shapes", "",
                  f"A second library trained on the other {n - len(u['shapes'])} shapes with the same settings "
                  f"({u['library']['steps']} steps, {u['library']['train_s']:.0f} s); each held-out shape is then inverted "
                  "(its code optimised with everything shared frozen). Training mode = the same shape in the main library.", "",
                  _table(["shape", "training-mode CD-L1", "ratio", "unseen CD-L1", "ratio", "unseen ÷ training",
                          "components", "invert time / steps"], rows), ""]
    if "ablations" in results:
        a = results["ablations"]
        lines += ["## Ablations", "", "Decode band half-width n (voxels), same library:", "",
                  _table(["n", "CD-L1", "fidelity ratio", "F@0.005", "components", "detail fraction", "decode s"],
                         [[k, _sci(v["cd_l1"]), _f(v["fidelity_ratio"], 2), _f(v["f_0.005"]), _f(v["components"], 1),
                           _f(v["detail_fraction"], 4), _f(v["decode_s"], 2)] for k, v in a["band"].items()]), "",
                  "Code size (retrained with our training settings):", "",
                  _table(["code size", "bytes/shape", "CD-L1", "fidelity ratio", "F@0.005", "train s", "steps"],
                         [[k, _bytes(v["bytes_per_shape"]), _sci(v["cd_l1"]), _f(v["fidelity_ratio"], 2), _f(v["f_0.005"]),
                           _f(v["train_s"], 0), str(v["steps"])] for k, v in a["code_size"].items()]), "",
                  "Band sampling: *without* = the shared grid stored at every node of its lattice and the detail branch "
                  "trained on every sample (near, wide, uniform), so one shape's detail can act anywhere in the cube "
                  "(decoding stays band-fused in both):", "",
                  _table(["sampling", "CD-L1", "fidelity ratio", "HD", "components", "single-component share", "train s"],
                         [[k, _sci(v["cd_l1"]), _f(v["fidelity_ratio"], 2), _sci(v["hd"]), _f(v["components"], 1),
                           _f(v["single_component_share"], 2), _f(v["train_s"], 0)] for k, v in a["band_sampling"].items()]), ""]
    if "scaling" in results:
        s = results["scaling"]
        lines += ["## Scaling", "",
                  f"Encode with {s['encode_steps_per_phase']} steps per phase (a cheap setting: the cost of sampling "
                  "and of the per-shape passes, not of a full training), each in a fresh process:", "",
                  _table(["shapes", "encode wall s", "train s", "peak MB", "shared bytes"],
                         [[str(e["shapes"]), _f(e["encode_wall_s"], 1), _f(e["train_s"], 1), _f(e["encode_peak_mb"], 0),
                           _bytes(e["bytes_shared"])] for e in s["encode"]]), "",
                  "Decode one shape from the main library vs resolution (fresh process each):", "",
                  _table(["resolution", "decode s", "detail evaluations", "detail fraction", "faces", "peak MB"],
                         [[f"{d['resolution']}³", _f(d["decode_s"], 2), f"{d['detail_evaluations']:,}", _f(d["detail_fraction"], 4),
                           f"{d['faces']:,}", _f(d["peak_mb"], 0)] for d in s["decode"]]), ""]
    stages = ", ".join(f"{k} {v / 60:.1f} min" for k, v in results["estimate_s"].items())
    lines += ["## Reproduce", "", f"```\n{results['command']}\n```", "",
              f"Estimated at start: {stages}. Raw numbers: `results.json`, `results.csv`.", ""]
    return "\n".join(lines)


def write_csv(results: dict, path: Path) -> None:
    rows = [{"shape": s, "method": m} | r for s, methods in results["per_shape"].items() for m, r in methods.items()]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def write_outputs(results: dict, out: Path) -> list[Path]:
    """results.json, results.csv and benchmarks.md in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "results.csv", out / "benchmarks.md"]
    paths[0].write_text(json.dumps(results, indent=1, default=float))
    write_csv(results, paths[1])
    paths[2].write_text(markdown(results))
    return paths
