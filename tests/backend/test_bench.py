"""Smoke test of the benchmark harness: a two-shape tiny run produces sane tables, JSON, CSV and PNGs."""

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image


def test_twist_turns_a_quarter_over_the_height():
    from backend.geometry.meshes import Mesh
    from bench.run import twisted

    v = np.array([[1.0, 0.0, 0.0], [1.0, 2.0, 0.0], [-1.0, 1.0, -1.0], [0.0, 1.0, 1.0]])
    out = twisted(Mesh(v, np.array([[0, 1, 2], [0, 2, 3]])))
    assert np.allclose(out.vertices[0], v[0])  # bottom: no turn
    assert np.allclose(out.vertices[1], [0.0, 2.0, -1.0])  # top: 90° about the vertical axis through the box centre
    assert np.allclose(np.linalg.norm(out.vertices[:, [0, 2]], axis=1), np.linalg.norm(v[:, [0, 2]], axis=1))
    assert np.array_equal(out.faces, [[0, 1, 2], [0, 2, 3]])


@pytest.mark.slow
def test_quick_benchmark_writes_sane_results(tmp_path, data_dir, capsys):
    from bench.baselines import draco_available
    from bench.run import main

    out = tmp_path / "bench"
    argv = ["--quick", "--meshes", str(data_dir), "--shapes", "sphere,torus", "--steps", "5", "--resolution", "40",
            "--samples", "4000", "--add-mesh", "twist:torus", "--pairs", "sphere:torus", "--inbetweens", "1",
            "--path-resolution", "32", "--timing-resolutions", "32", "--narrow-band-resolutions", "32",
            "--draco-bits", "10", "--decimation-budgets", "5000", "--scaling", "--scaling-counts", "1,2",
            "--out", str(out), "--cache", str(tmp_path / "cache")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| ours |" in printed and "| generalization-only |" in printed

    results = json.loads((out / "results.json").read_text())
    # default baselines: generalization-only = ours decoded with detail 0; grid-only only with --trained-baselines
    methods = {"oracle", "ours", "generalization-only", "decimated @ 5 kB", "narrow band 32³"}
    if draco_available():
        methods.add("Draco 10 bits")
    assert set(results["per_shape"]) == {"sphere", "torus"}
    for shape, rows in results["per_shape"].items():
        assert set(rows) == methods, shape
        assert rows["oracle"]["fidelity_ratio"] == 1.0
        for method, r in rows.items():
            assert 0 <= r["f_0.005"] <= r["f_0.01"] <= 1 and 0 <= r["nc"] <= 1, (shape, method)
            assert r["cd_l1"] > 0 and r["hd"] >= r["cd_l1"], (shape, method)
            assert method == "oracle" or r["bytes"] > 0, (shape, method)
        # 5 steps per phase: a rough but real surface, well inside the working cube
        assert rows["ours"]["cd_l1"] < 0.5 and rows["ours"]["faces"] > 100
        assert rows["decimated @ 5 kB"]["bytes"] <= 5000 or rows["decimated @ 5 kB"]["faces"] <= 4
        assert rows["generalization-only"]["bytes"] < rows["ours"]["bytes"]

    ours = results["methods"]["ours"]
    assert ours["file_bytes"] > 0 and ours["bytes_per_shape"] == pytest.approx(ours["file_bytes"] / 2)
    assert ours["code_bytes"] == 16 * 4  # tiny preset: 16 float32 per code
    assert ours["coarse_steps"] == 5 and ours["detail_steps"] == 5
    assert ours["train_s"] > 0 and ours["encode_peak_mb"] >= ours["idle_mb"] > 0
    assert {r["method"] for r in results["rate_distortion"]} == methods - {"oracle"}

    add = results["add_remove"]
    assert add["shape"] == "torus_twisted" and add["old_shapes"] == 2 and add["add_wall_s"] > 0
    assert add["old_before"]["torus"] == results["per_shape"]["torus"]["ours"]  # the main rows, reused
    assert 0 <= add["max_old_cd_change"] <= 0.02 and add["remove_keeps_old_codes"]
    assert math.isfinite(add["new"]["fidelity_ratio"])

    interp = results["interpolation"]
    (path,) = interp["paths"]
    assert len(path["step_cd_l1"]) == 2 and all(math.isfinite(x) and x > 0 for x in path["step_cd_l1"])
    assert len(path["roughness_deg"]) == 3 and all(0 < x < 180 for x in path["roughness_deg"])
    assert path["max_step_ratio"] >= 0.5 and set(interp["summary"]["inbetween_s"]) == {"32"}
    assert "skipped" in results["random_variants"] or 0 <= results["random_variants"]["single_piece_share"] <= 1
    assert [r["shapes"] for r in results["scaling"]] == [1, 2]

    with open(out / "results.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 2 * len(methods)
    page = (out / "benchmarks.md").read_text()
    for section in ("## Targets", "## Rate–distortion", "## Add and remove", "## Scaling with the collection",
                    "## Interpolation", "--steps 5"):
        assert section in page, section
    assert (out / "libraries" / "ours-default.csdf").is_file()
    for name in ("compare_sphere.png", "compare_torus.png", "interpolation_sphere_torus.png", "cd_vs_bytes.png"):
        image = np.asarray(Image.open(out / "images" / "benchmarks" / name).convert("L"))
        assert image.min() < 128 < image.max(), name  # something drawn on a light background


def test_morph_bench_scores_a_stretched_sphere_family(tmp_path, data_dir):
    """bench.morph on a two-pose family of one connectivity (a sphere and the same mesh stretched):
    the floor is near 0, every method's row is there, and a family of two connectivities is refused."""
    from backend.geometry.meshes import load_mesh, save_mesh
    from bench.morph import main

    sphere = load_mesh(data_dir / "sphere.obj")
    family = tmp_path / "family"
    family.mkdir()
    save_mesh(family / "round.obj", sphere.vertices, sphere.faces)
    save_mesh(family / "long.obj", sphere.vertices * [1.6, 1.0, 1.0], sphere.faces)
    out = tmp_path / "morph.json"
    main([str(family), "--resolution", "32", "--samples", "4000", "--count", "4", "--out", str(out)])
    rows = json.loads(out.read_text())
    assert {r["method"] for r in rows} == {"floor", "exact blend"} and len(rows) == 4  # 2 in-betweens × 2 methods
    floor = [r for r in rows if r["method"] == "floor"]
    assert all(r["morph_error"] < 0.5 and r["pieces"] == r["floor_pieces"] == 1 for r in floor)
    torus = load_mesh(data_dir / "torus.obj")
    save_mesh(family / "other.obj", torus.vertices, torus.faces)
    with pytest.raises(SystemExit, match="face list"):
        main([str(family)])


def test_morph_bench_on_a_collection_counts_fallbacks(saved, tmp_path, capsys):
    """bench.morph --collection: every pair in every mode, with the morph's fallback (a ball and a
    ring) counted and the distance blend measured in its place."""
    from bench.morph import main

    out = tmp_path / "pairs.json"
    main(["--collection", str(saved), "--mode", "morph", "slerp", "--resolution", "32", "--count", "3", "--out", str(out)])
    rows = json.loads(out.read_text())
    assert [r["method"] for r in rows] == ["engine morph", "engine slerp"]
    assert "holes" in rows[0]["fallback"] and rows[1]["fallback"] is None
    assert all(len(r["one_piece"]) == 1 and r["roughness_ratio"] > 0 for r in rows)
    assert "| engine morph |" in capsys.readouterr().out


def test_detail_bytes_accounts_for_every_stored_byte(tiny_library, tmp_path):
    """bench.detail_bytes splits each shape's stored detail into its mask and channel streams; with
    the stream table and the scales that is exactly what the library file records per shape."""
    from bench.detail_bytes import entropy_bits, report, shape_rows
    from backend.store.library_meta import read_library_meta

    path = tmp_path / "lib.csdf"
    tiny_library.save(path)
    rows, meta = shape_rows(tiny_library), read_library_meta(path)
    channels = tiny_library.preset.model.grid_channels
    for row, shape in zip(rows, meta["shapes"]):
        assert row["name"] == shape["name"] and row["nodes"] == shape["nodes"] and len(row["channels"]) == channels
        stored = row["mask_bytes"] + sum(ch["bytes"] for ch in row["channels"]) + channels * (5 + 4)
        assert stored == shape["detail_bytes"]
        assert all(ch["mode"] in ("as is", "diff", "predicted") and 0 <= ch["bits_as_is"] <= 8 for ch in row["channels"])
        assert all(0 <= ch["bits_predicted"] <= 8 for ch in row["channels"])
    assert entropy_bits(np.array([1, 1, 2, 2])) == 1.0 and entropy_bits(np.array([3])) == 0.0
    assert "mean stored detail" in report(path)[-1]


def test_lattice_ceiling_reads_a_stored_sphere_back(data_dir):
    """Catmull-Rom weights sum to one and reproduce a line; a sphere stored at 24³ and read at 24³
    comes back at its meshing limit (ratio ~1 with exact distances), cubic no worse than trilinear at 40³."""
    from bench.lattice_ceiling import catmull_rom, measure

    t = np.linspace(0, 1, 7)
    weights = catmull_rom(t)
    np.testing.assert_allclose(weights.sum(-1), 1.0)
    np.testing.assert_allclose(weights @ np.array([-1.0, 0.0, 1.0, 2.0]), t, atol=1e-12)
    rows = [r.strip("| ").split(" | ") for r in measure(data_dir / "sphere.obj", [24], [24, 40], band=4.5, exact=True)]
    ratio = {(r[2], r[3]): float(r[6]) for r in rows}
    assert ratio[("24³", "trilinear")] == pytest.approx(1.0, abs=0.05)
    assert ratio[("40³", "cubic")] <= ratio[("40³", "trilinear")] * 1.05


def test_compact_bench_reports_bytes_decodes_and_baselines(saved, data_dir, tmp_path):
    """bench.compact: every stored byte of the file is some shape's (its own or its share of the
    networks), each shape is decoded at every resolution in a fresh process and compared with its
    source, the baselines are measured once and then read from the cache."""
    import shutil

    from bench.compact import measure, report, stored_bytes
    from backend.store.library import Library

    meshes = tmp_path / "meshes"
    meshes.mkdir()
    for name in ("sphere", "torus"):
        shutil.copy(data_dir / f"{name}.obj", meshes / f"{name}.obj")
    costs = stored_bytes(saved, Library.load(saved))
    assert sum(costs.values()) == pytest.approx(saved.stat().st_size)
    cache = tmp_path / "cache"
    rows = measure(saved, meshes, [32, 48], [], [32], cache, 2000)
    assert [r["name"] for r in rows] == ["sphere", "torus"]
    for row in rows:
        assert set(row["decodes"]) == {32, 48} and all(d["cd_l1"] > 0 and d["peak_mb"] > 0 for d in row["decodes"].values())
        assert row["baselines"]["float16 narrow band 32³"]["bytes"] > 0
    cached = sorted(p.name for p in cache.iterdir())
    assert measure(saved, meshes, [32], [], [32], cache, 2000)[0]["baselines"] == rows[0]["baselines"]
    assert sorted(p.name for p in cache.iterdir()) == cached  # nothing recomputed
    lines = report(rows, [32, 48])
    assert any(line.startswith("- 48³ against 32³") for line in lines)
