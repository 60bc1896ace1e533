"""``python -m bench.detail_bytes LIBRARY...``: where each shape's stored detail bytes go.

No training and no decoding: it re-packs every shape's stored features with the current codec and
prints, per shape, its node count, the bytes of its node mask and of each feature channel as
stored (the mode each channel's stream chose), and each channel's order-0 entropy in bits per node
as it is, as differences along node order and as residuals of the lattice prediction (format 4):
what a better coder could reach without changing a single stored value.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import zstandard

from backend.field.band_prediction import BandPredictor
from backend.field.codec import STREAM_ENTRY, DetailCodec
from backend.store.library import Library

_MODES = {0: "as is", 1: "diff", 2: "predicted"}


def entropy_bits(values: np.ndarray) -> float:
    """Order-0 entropy of ``values`` in bits per value (0 for fewer than two values)."""
    if len(values) < 2:
        return 0.0
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def shape_rows(library: Library) -> list[dict]:
    """One dict per shape: name, nodes, mask bytes, and per channel (bytes, mode, entropy as is / as
    differences / as prediction residuals)."""
    grid = library.model.detail.grid
    codec = DetailCodec.of(library.preset.storage)
    rows = []
    for i, name in enumerate(library.names):
        features = grid.shape_features(i).detach()
        packed = codec.pack(grid.keys[i].numpy(), features, grid.resolution)
        values, _ = codec.quantize(features)
        streams = list(STREAM_ENTRY.iter_unpack(packed["streams"].tobytes()))
        predictor = BandPredictor(grid.keys[i].numpy(), grid.resolution)
        channels = []
        for c, (mode, length) in enumerate(streams):
            column = values[:, c]
            integer = column.dtype == np.int8
            diffs = np.diff(column.view(np.uint8), prepend=np.uint8(0)) if integer else column
            residuals = predictor.residuals(column) if integer else column
            channels.append({"bytes": length, "mode": _MODES[mode], "bits_as_is": entropy_bits(column),
                             "bits_diff": entropy_bits(diffs), "bits_predicted": entropy_bits(residuals)})
        rows.append({"name": name, "nodes": len(values), "mask_bytes": int(packed["nodes"].nbytes), "channels": channels})
    return rows


def report(path: Path) -> list[str]:
    """The table of ``shape_rows`` for the library at ``path``, as Markdown lines."""
    rows = shape_rows(Library.load(path))
    if not rows:
        return [f"{path}: no shapes"]
    width = len(rows[0]["channels"])
    head = "| shape | nodes | mask KB | " + " | ".join(f"ch{c} KB (mode; bits/node as is / diff / predicted)"
                                                       for c in range(width))
    lines = [f"{path} (zstd {zstandard.__version__})", "", head + " |", "|---" * (3 + width) + "|"]
    for row in rows:
        cells = [f"{ch['bytes'] / 1e3:.0f} ({ch['mode']}; {ch['bits_as_is']:.2f} / {ch['bits_diff']:.2f} / "
                 f"{ch['bits_predicted']:.2f})"
                 for ch in row["channels"]]
        lines.append(f"| {row['name']} | {row['nodes']} | {row['mask_bytes'] / 1e3:.0f} | " + " | ".join(cells) + " |")
    total = sum(row["mask_bytes"] + sum(ch["bytes"] for ch in row["channels"]) for row in rows)
    lines.append(f"\nmean stored detail: {total / len(rows) / 1e3:.0f} KB per shape")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("libraries", nargs="+", type=Path)
    for path in parser.parse_args().libraries:
        print("\n".join(report(path)))


if __name__ == "__main__":
    main()
