"""Scale-out benchmark (issue 12): sampling on a process pool, and training on 1 and 2 torchrun ranks.

    .venv/bin/python -m bench.scale_out [--shapes 6] [--steps 300] [--ranks 1,2]

On a procedural collection (``backend.geometry.procedural``), in one run: sampling every shape serially
and on a process pool (same samples bit for bit), then the same ``encode`` command on each rank
count — one process with every core, or ``torchrun`` with one thread per rank — with a fresh
sample cache each, so wall times include sampling. Throughput is shapes per hour of that command;
the projection for the default schedule of a larger collection combines the measured seconds
per coarse step, per detail step and per sampled shape (stated as a projection, not a measurement).
Writes ``out/bench-scale-out/scale_out.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _time_sampling(meshes: list, preset: str, workers: int) -> tuple[float, list]:
    from backend.config import get_preset
    from backend.geometry.sampling import sample_shapes

    start = time.perf_counter()
    samples = sample_shapes(meshes, get_preset(preset).sample, None, workers=workers)
    return time.perf_counter() - start, samples


def _encode(files: list[Path], out: Path, preset: str, ranks: int, steps: int | None) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if ranks > 1:
        env["OMP_NUM_THREADS"] = "1"
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
    else:  # one process uses every core
        env.pop("OMP_NUM_THREADS", None)
        launcher = [sys.executable]
    cmd = [*launcher, "-m", "backend", "-q", "encode", *map(str, files), "-o", str(out), "--overwrite", "--preset", preset,
           "--cache", str(out.with_suffix(".cache")), "--checkpoint-every", "0"] + (["--steps", str(steps)] if steps else [])
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def _quality(library_path: Path, meshes: dict) -> float:
    from backend.api import decode
    from backend.store.library import Library
    from backend.geometry.meshes import Mesh
    from backend.geometry.metrics import compare_meshes

    library = Library.load(library_path)
    cds = []
    for name, mesh in meshes.items():
        rec = decode(library, name, resolution=128)
        cds.append(compare_meshes(mesh, Mesh(rec.vertices, rec.faces), n_samples=50_000).cd_l1)
    return float(np.mean(cds))


def run(shapes: int, preset: str, steps: int | None, ranks: list[int], out: Path) -> dict:
    from backend.config import get_preset
    from backend.store.library import Library
    from backend.geometry.meshes import Mesh, load_mesh, normalization
    from backend.geometry.procedural import procedural_collection, write_collection
    from backend.geometry.sampling import default_workers

    out.mkdir(parents=True, exist_ok=True)
    meshes_dir = out / "meshes"
    write_collection(procedural_collection(shapes, seed=12), meshes_dir)
    files = sorted(meshes_dir.glob("*.obj"))
    meshes = {f.stem: load_mesh(f) for f in files}
    normalized = [Mesh(normalization(m.vertices).apply(m.vertices), m.faces) for m in meshes.values()]
    workers = default_workers(len(normalized))
    serial_s, serial = _time_sampling(normalized, preset, 1)
    pool_s, pooled = _time_sampling(normalized, preset, workers)
    identical = all(np.array_equal(a.band_sdf, b.band_sdf) and np.array_equal(a.points_sdf, b.points_sdf)
                    for a, b in zip(serial, pooled))
    nodes = sum(len(s.band_index) for s in serial)
    rows = []
    for r in ranks:
        lib_path = out / f"ranks{r}.csdf"
        wall = _encode(files, lib_path, preset, r, steps)
        history = Library.load(lib_path).history[-1]
        rows.append({"ranks": r, "wall_s": round(wall, 1), "shapes_per_hour": round(shapes * 3600 / wall, 1),
                     "train_s": history["seconds"], "coarse_s": history["coarse_seconds"],
                     "coarse_steps": history["coarse_steps"], "detail_steps": history["detail_steps"],
                     "mean_cd_l1_128": _quality(lib_path, meshes)})
    base = rows[0]
    for row in rows:
        row["speedup"] = round(base["wall_s"] / row["wall_s"], 2)
        row["cd_vs_1_rank"] = round(row["mean_cd_l1_128"] / base["mean_cd_l1_128"], 3)
    train, n = get_preset(preset).train, 100
    projection = []
    for row in rows:  # the default schedule of n shapes like these, from this run's seconds per step and per shape
        t_coarse = row["coarse_s"] / row["coarse_steps"]
        t_detail = (row["train_s"] - row["coarse_s"]) / row["detail_steps"]
        other = row["wall_s"] - row["train_s"]  # sampling, start-up, gathering and saving
        hours = (other / shapes * n + t_coarse * train.coarse_steps_for(n)
                 + t_detail * train.detail_steps_for(nodes // shapes * n)) / 3600
        projection.append({"ranks": row["ranks"], "shapes": n, "hours": round(hours, 2), "kind": "from measured rates"})
    if len(rows) > 1:  # 8 ranks if the largest measured rank count's parallel efficiency held
        last = rows[-1]
        efficiency = last["speedup"] / last["ranks"]
        projection.append({"ranks": 8, "shapes": n, "hours": round(projection[0]["hours"] / (8 * efficiency), 2),
                           "kind": f"assumes the {last['ranks']}-rank parallel efficiency ({efficiency:.2f}) holds"})
    results = {"shapes": shapes, "preset": preset, "steps_per_phase": steps, "stored_nodes": nodes, "cores": os.cpu_count(),
               "load_average_at_start": list(os.getloadavg()), "sampling": {
                   "serial_s": round(serial_s, 1), "pool_s": round(pool_s, 1), "workers": workers,
                   "speedup": round(serial_s / pool_s, 2), "bit_identical": identical},
               "encode": rows, "projection_default_schedule": projection}
    (out / "scale_out.json").write_text(json.dumps(results, indent=1))
    return results


def table(results: dict) -> str:
    s = results["sampling"]
    lines = [f"Sampling {results['shapes']} shapes: serial {s['serial_s']} s, {s['workers']} processes {s['pool_s']} s "
             f"({s['speedup']}x, bit-identical: {s['bit_identical']})", "",
             "| ranks | wall s | shapes/hour | training s | speed-up | mean CD-L1 (128³) | CD vs 1 rank |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["encode"]:
        lines.append(f"| {r['ranks']} | {r['wall_s']} | {r['shapes_per_hour']} | {r['train_s']} | {r['speedup']}x "
                     f"| {r['mean_cd_l1_128']:.6f} | {r['cd_vs_1_rank']} |")
    lines += ["", "| ranks | shapes | projected hours, default schedule | basis |", "|---:|---:|---:|---|"]
    lines += [f"| {p['ranks']} | {p['shapes']} | {p['hours']} | {p['kind']} |" for p in results["projection_default_schedule"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_out", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=int, default=6, help="procedural shapes (default 6)")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--steps", type=int, default=300, help="steps per phase (0: the default collection-scaled schedule)")
    parser.add_argument("--ranks", default="1,2", help="process counts to compare (default 1,2)")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench-scale-out")
    args = parser.parse_args(argv)
    results = run(args.shapes, args.preset, args.steps or None, [int(r) for r in args.ranks.split(",")], args.out)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
