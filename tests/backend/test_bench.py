"""Smoke test of the benchmark harness: a two-shape tiny run produces sane tables, JSON, CSV and PNGs."""

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image


@pytest.mark.slow
def test_quick_benchmark_writes_sane_results(tmp_path, data_dir, capsys):
    from bench.run import main

    out = tmp_path / "bench"
    argv = ["--quick", "--meshes", str(data_dir), "--shapes", "sphere,torus", "--steps", "5", "--resolution", "40",
            "--samples", "4000", "--holdout", "torus", "--invert-steps", "20", "--pairs", "sphere:torus", "--inbetweens", "1",
            "--out", str(out), "--cache", str(tmp_path / "cache")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| ours |" in printed and "| generalization-only |" in printed

    results = json.loads((out / "results.json").read_text())
    methods = ["oracle", "ours", "generalization-only", "grid-only", "decimated @ code bytes", "decimated @ amortised bytes"]
    assert set(results["per_shape"]) == {"sphere", "torus"}
    for shape, rows in results["per_shape"].items():
        assert set(rows) == set(methods), shape
        assert rows["oracle"]["fidelity_ratio"] == 1.0
        for method, r in rows.items():
            assert 0 <= r["f_0.005"] <= r["f_0.01"] <= 1 and 0 <= r["nc"] <= 1, (shape, method)
            assert r["cd_l1"] > 0 and r["hd"] >= r["cd_l1"], (shape, method)
        # 5 steps per phase: a rough but real surface, well inside the working cube
        assert rows["ours"]["cd_l1"] < 0.5 and rows["ours"]["faces"] > 100

    ours = results["methods"]["ours"]
    assert ours["bytes_per_shape"] == 16 * 4  # tiny preset: 16 float32 per code
    assert ours["amortised_bytes_per_shape"] == pytest.approx(64 + ours["bytes_shared"] / 2)
    assert results["methods"]["generalization-only"]["bytes_per_shape"] == 64
    assert ours["train_s"] > 0 and ours["encode_peak_mb"] >= ours["idle_mb"] > 0
    for label, budget in (("decimated @ code bytes", 64), ("decimated @ amortised bytes", ours["amortised_bytes_per_shape"])):
        for shape in ("sphere", "torus"):
            r = results["per_shape"][shape][label]
            assert r["bytes"] <= budget or r["faces"] <= 4, (label, shape, r["bytes"])

    path = results["interpolation"][0]
    assert len(path["step_ratios"]) == 2 and all(math.isfinite(x) and x > 0 for x in path["step_ratios"])
    assert 0 <= path["closed_share"] <= 1 and 0 <= path["single_component_share"] <= 1
    unseen = results["unseen"]["shapes"]["torus"]
    assert math.isfinite(unseen["unseen"]["cd_l1"]) and unseen["invert_steps"] > 0

    with open(out / "results.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 2 * len(methods)
    page = (out / "benchmarks.md").read_text()
    assert "## Headline" in page and "## Unseen shapes" in page and "--steps 5" in page
    for name in ("compare_sphere.png", "compare_torus.png", "interpolation_sphere_torus.png", "cd_vs_bytes.png"):
        image = np.asarray(Image.open(out / "images" / "benchmarks" / name).convert("L"))
        assert image.min() < 128 < image.max(), name  # something drawn on a light background
