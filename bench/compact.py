"""``python -m bench.compact LIBRARY``: what each shape of a library costs, and how close it decodes (issue 21).

Per shape: its stored bytes (detail and code, plus the shared networks amortised over the
library), CD-L1 to its source mesh (DESIGN §3) decoded at each ``--resolution`` with that decode's
wall time and peak memory (each in a fresh process), and the ratio to the 256³ meshing limit.
Beside it, the rate–distortion baselines of the same source: Draco at ``--draco-bits`` and float16
narrow bands at ``--narrow-band-resolutions``. Oracle meshes and baseline results are memoised in
``--cache`` (they depend on the source mesh alone). Prints Markdown tables and the summary lines
the issue's targets read.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from bench.baselines import draco_available, draco_round_trip, narrow_band_round_trip
from bench.config import DEFAULT_MESHES, _ints
from bench.evaluate import oracle
from bench.measure import isolated
from backend.geometry.meshes import Mesh, load_mesh
from backend.geometry.metrics import compare_meshes
from backend.store.library import Library
from backend.store.library_meta import read_header

_LIMIT_RESOLUTION = 256  #: the meshing limit every ratio is taken against


def decode_job(library: str, name: str, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, faces) of one shape decoded at ``resolution``: run in a fresh process by ``isolated``."""
    from backend.api import decode

    decoded = decode(Library.load(library), name, resolution=resolution)
    return decoded.vertices, decoded.faces


def stored_bytes(path: Path, library: Library) -> dict[str, float]:
    """Per shape: its own stored bytes (detail, code) by name, and the shared bytes (networks, metadata) amortised."""
    header = read_header(path)
    own = {name: 0 for name in library.names}
    for key, entry in header.items():
        if key.startswith("shape"):
            own[library.names[int(key[5:].split(".")[0])]] += entry["data_offsets"][1] - entry["data_offsets"][0]
    own_total = sum(own.values()) + library.codes.numel() * 4
    shared = (path.stat().st_size - own_total) / len(library.names)
    return {name: own[name] + library.code_bytes() + shared for name in library.names}


def _memo(cache: Path, key: str, compute) -> dict:
    """``compute()`` (a JSON-able dict), memoised as ``cache/key.json``."""
    file = cache / f"{key}.json"
    if file.is_file():
        return json.loads(file.read_text())
    value = compute()
    cache.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(value))
    return value


def baselines(source: Mesh, draco_bits: list[int], narrow_bands: list[int], cache: Path, samples: int) -> dict[str, dict]:
    """Bytes and CD-L1 of each baseline of ``source``, by label."""
    digest = source.content_hash()[:24]
    rows = {}
    jobs = [(f"Draco {b} bits", lambda b=b: draco_round_trip(source, b)) for b in (draco_bits if draco_available() else [])]
    jobs += [(f"float16 narrow band {r}³", lambda r=r: narrow_band_round_trip(source, r)) for r in narrow_bands]
    for label, job in jobs:
        def compute(job=job) -> dict:
            size, mesh = job()
            return {"bytes": size, "cd_l1": compare_meshes(source, mesh, n_samples=samples).cd_l1}
        rows[label] = _memo(cache, f"baseline-{digest}-{label.replace(' ', '_')}", compute)
    return rows


def measure(path: Path, meshes: Path, resolutions: list[int], draco_bits: list[int], narrow_bands: list[int],
            cache: Path, samples: int) -> list[dict]:
    """One row per shape of the library at ``path`` (see the module docstring)."""
    library = Library.load(path)
    costs = stored_bytes(path, library)
    rows = []
    for name in library.names:
        source = load_mesh(meshes / f"{name}.obj")
        limit = compare_meshes(source, oracle(source, _LIMIT_RESOLUTION, cache), n_samples=samples).cd_l1
        row = {"name": name, "bytes": costs[name], "limit": limit, "decodes": {},
               "baselines": baselines(source, draco_bits, narrow_bands, cache, samples)}
        for resolution in resolutions:
            job = isolated(decode_job, str(path), name, resolution)
            cd = compare_meshes(source, Mesh(*job.value), n_samples=samples).cd_l1
            row["decodes"][resolution] = {"cd_l1": cd, "seconds": job.seconds, "peak_mb": job.peak_mb}
        rows.append(row)
        print(f"<!-- {name}: {json.dumps(row)} -->", flush=True)
    return rows


def report(rows: list[dict], resolutions: list[int]) -> list[str]:
    """Markdown tables (per shape; baselines) and the summary the targets read."""
    head = " | ".join(f"CD-L1 {r}³ (ratio; s; peak MB)" for r in resolutions)
    lines = [f"| shape | KB | limit {_LIMIT_RESOLUTION}³ | {head} |", "|---" * (3 + len(resolutions)) + "|"]
    for row in rows:
        cells = [f"{d['cd_l1']:.3g} ({d['cd_l1'] / row['limit']:.2f}; {d['seconds']:.1f}; {d['peak_mb']:.0f})"
                 for d in (row["decodes"][r] for r in resolutions)]
        lines.append(f"| {row['name']} | {row['bytes'] / 1e3:.1f} | {row['limit']:.3g} | " + " | ".join(cells) + " |")
    labels = list(rows[0]["baselines"]) if rows else []
    lines += ["", "| shape | " + " | ".join(f"{label}: KB / CD-L1" for label in labels) + " |", "|---" * (1 + len(labels)) + "|"]
    for row in rows:
        lines.append(f"| {row['name']} | " + " | ".join(
            f"{b['bytes'] / 1e3:.1f} / {b['cd_l1']:.3g}" for b in (row["baselines"][label] for label in labels)) + " |")
    lines.append("")
    mean_kb = statistics.mean(row["bytes"] for row in rows) / 1e3
    lines.append(f"- ours: {mean_kb:.1f} KB per shape (shared networks amortised over {len(rows)} shapes)")
    for r in resolutions:
        ratios = [row["decodes"][r]["cd_l1"] / row["limit"] for row in rows]
        cds = [row["decodes"][r]["cd_l1"] for row in rows]
        lines.append(f"- decoded at {r}³: ratio to the {_LIMIT_RESOLUTION}³ limit median {statistics.median(ratios):.2f}, "
                     f"mean {statistics.mean(ratios):.2f}; mean CD-L1 {statistics.mean(cds):.3g}; "
                     f"mean {statistics.mean(row['decodes'][r]['seconds'] for row in rows):.1f} s, "
                     f"peak {max(row['decodes'][r]['peak_mb'] for row in rows):.0f} MB")
    if len(resolutions) > 1:
        low, high = resolutions[0], resolutions[-1]
        gains = [row["decodes"][low]["cd_l1"] / row["decodes"][high]["cd_l1"] for row in rows]
        mean_gain = statistics.mean(row["decodes"][low]["cd_l1"] for row in rows) / statistics.mean(
            row["decodes"][high]["cd_l1"] for row in rows)
        lines.append(f"- {high}³ against {low}³: mean CD-L1 {mean_gain:.2f}× lower; per shape median "
                     f"{statistics.median(gains):.2f}×, from {min(gains):.2f}× to {max(gains):.2f}×")
    for label in labels:
        lines.append(f"- {label}: {statistics.mean(row['baselines'][label]['bytes'] for row in rows) / 1e3:.1f} KB, "
                     f"mean CD-L1 {statistics.mean(row['baselines'][label]['cd_l1'] for row in rows):.3g}, "
                     f"median ratio {statistics.median(row['baselines'][label]['cd_l1'] / row['limit'] for row in rows):.2f}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.compact", description=__doc__.splitlines()[0])
    parser.add_argument("library", type=Path)
    parser.add_argument("--meshes", type=Path, default=DEFAULT_MESHES, help="folder of the sources, NAME.obj per shape")
    parser.add_argument("--resolution", type=_ints, default=[256, 384, 512], help="decode lattices (first: the baseline)")
    parser.add_argument("--draco-bits", type=_ints, default=[10, 11, 12, 14])
    parser.add_argument("--narrow-band-resolutions", type=_ints, default=[128, 256])
    parser.add_argument("--samples", type=int, default=200_000, help="surface samples per CD-L1")
    parser.add_argument("--cache", type=Path, default=Path(".cache/compact"))
    args = parser.parse_args(argv)
    rows = measure(args.library, args.meshes, args.resolution, args.draco_bits, args.narrow_band_resolutions,
                   args.cache, args.samples)
    print("\n".join(report(rows, args.resolution)))


if __name__ == "__main__":
    main()
