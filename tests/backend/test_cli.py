"""The command line, end to end on the tiny preset, including Ctrl-C and bad input."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.interfaces.cli import EXIT_CANCELLED, EXIT_ERROR, main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cli_library(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("cli")
    lib = out / "lib.csdf"
    args = ["-q", "encode", str(data_dir / "sphere.obj"), str(data_dir / "torus.obj"), "-o", str(lib),
            "--preset", "tiny", "--steps", "200", "--cache", str(out / "cache")]
    assert main(args) == 0
    return lib


def test_encode_decode_info(cli_library, tmp_path, capsys):
    assert main(["-q", "decode", str(cli_library), "--all", "-o", str(tmp_path), "--resolution", "48"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sphere.obj", "torus.obj"]
    assert main(["info", str(cli_library)]) == 0
    out = capsys.readouterr().out
    assert "2 shapes" in out and "torus" in out


def test_interpolate_and_invert(cli_library, tmp_path, data_dir, capsys):
    assert main(["-q", "interpolate", str(cli_library), "sphere", "torus", "--steps", "3", "-o", str(tmp_path), "--resolution", "40"]) == 0
    assert len(list(tmp_path.glob("sphere-torus_*.obj"))) == 3
    assert "path positions 0.000 0.500 1.000" in capsys.readouterr().out
    assert main(["-q", "interpolate", str(cli_library), "sphere", "torus", "--steps", "3", "--pace", "even",
                 "-o", str(tmp_path / "even"), "--resolution", "32"]) == 0
    positions = capsys.readouterr().out.split("path positions ")[1].split()
    assert len(positions) == 3 and positions[0] == "0.000" and positions[-1] == "1.000"
    grown = tmp_path / "grown.csdf"
    assert main(["-q", "invert", str(cli_library), str(data_dir / "spot_low_resolution.obj"), "--steps", "30", "-o", str(grown),
                 "--cache", str(tmp_path / "cache")]) == 0
    assert main(["info", str(grown)]) == 0


def test_eval_reports_oracle(tmp_path, data_dir, capsys):
    assert main(["eval", str(data_dir / "sphere.obj"), str(data_dir / "sphere.obj"), "--resolution", "32", "--samples", "5000", "--json"]) == 0
    assert '"fidelity_ratio"' in capsys.readouterr().out


def test_clear_errors(cli_library, tmp_path, data_dir, capsys):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(data_dir / "sphere.obj", other / "sphere.obj")
    dup = ["-q", "encode", str(data_dir / "sphere.obj"), str(other / "sphere.obj"), "-o", str(tmp_path / "x.csdf"), "--preset", "tiny"]
    assert main(dup) == EXIT_ERROR
    assert "two inputs are named 'sphere'" in capsys.readouterr().err
    assert main(["-q", "encode", str(data_dir / "sphere.obj"), "-o", str(cli_library), "--preset", "tiny"]) == EXIT_ERROR
    assert "--add" in capsys.readouterr().err
    junk = tmp_path / "junk.csdf"
    junk.write_text("not a library")
    assert main(["info", str(junk)]) == EXIT_ERROR
    assert "not a Compact SDF library" in capsys.readouterr().err
    empty = tmp_path / "empty.obj"
    empty.write_text("v 0 0 0\nv 1 0 0\n")
    assert main(["-q", "encode", str(empty), "-o", str(tmp_path / "e.csdf"), "--preset", "tiny"]) == EXIT_ERROR
    assert "empty.obj" in capsys.readouterr().err
    assert not (tmp_path / "e.csdf").exists()


def test_ctrl_c_leaves_library_untouched(cli_library, tmp_path, data_dir):
    """Cancel mid-training: exit 130 and the existing library is byte-identical."""
    lib = tmp_path / "lib.csdf"
    shutil.copy(cli_library, lib)
    before = lib.read_bytes()
    cmd = [sys.executable, "-m", "backend", "encode", str(data_dir / "spot_low_resolution.obj"), "-o", str(lib), "--add",
           "--preset", "tiny", "--steps", "100000", "--cache", str(tmp_path / "cache")]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = ""
    deadline = time.monotonic() + 120
    while "training" not in seen and time.monotonic() < deadline:
        seen += proc.stderr.read(1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_CANCELLED, seen + err
    assert "cancelled" in err
    assert lib.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_remove_rename_replace_explore(cli_library, tmp_path, data_dir, capsys):
    """Library editing and latent-space exploration from the command line, each writing a new file."""
    from backend.store.library import Library

    renamed, smaller, replaced = tmp_path / "renamed.csdf", tmp_path / "smaller.csdf", tmp_path / "replaced.csdf"
    assert main(["-q", "rename", str(cli_library), "torus", "ring", "-o", str(renamed)]) == 0
    assert Library.load(renamed).names == ["sphere", "ring"]
    assert main(["-q", "remove", str(renamed), "ring", "-o", str(smaller)]) == 0
    assert Library.load(smaller).names == ["sphere"] and smaller.stat().st_size < renamed.stat().st_size
    assert main(["-q", "replace", str(renamed), "ring", str(data_dir / "spot_low_resolution.obj"), "--steps", "20",
                 "-o", str(replaced), "--cache", str(tmp_path / "cache")]) == 0
    old, new = Library.load(renamed), Library.load(replaced)
    assert new.names == ["sphere", "ring"]
    assert new.shape_info("ring")["source_sha256"] != old.shape_info("ring")["source_sha256"]
    capsys.readouterr()
    out_dir = tmp_path / "explore"
    assert main(["-q", "explore", str(cli_library), "--random", "3", "--spread", "0.3", "--nearest", "1",
                 "-o", str(out_dir), "--resolution", "32"]) == 0
    out = capsys.readouterr().out
    assert "nearest shapes" in out and ((out_dir / "variant_seed3.obj").is_file() or "no surface" in out)
    assert main(["-q", "explore", str(cli_library), "--base", "sphere", "--vary", "0.5"]) == 0
    assert "sphere" in capsys.readouterr().out
    assert main(["-q", "interpolate", str(cli_library), "sphere", "torus", "--steps", "3", "--detail", "0.5",
                 "--mode", "distance", "-o", str(tmp_path / "strip"), "--resolution", "32"]) == 0
    assert main(["-q", "rename", str(cli_library), "sphere", "../evil", "-o", str(tmp_path / "x.csdf")]) == EXIT_ERROR


@pytest.mark.parametrize("version", [2, 3])
def test_upgrade_rewrites_an_older_file_in_the_current_format_with_the_same_shapes(cli_library, tmp_path, capsys,
                                                                                   monkeypatch, version):
    """A format-2 or -3 file (as earlier versions wrote it: layouts pinned in test_codec) reads as it
    is, and ``upgrade`` rewrites it in the current format with the same codes, features and meshes."""
    import numpy as np
    import torch

    import backend.store.library as library_module
    from backend.api import decode
    from backend.store.library import Library
    from backend.store.library_meta import FORMAT_VERSION, read_library_meta

    old, new = tmp_path / "old.csdf", tmp_path / "new.csdf"
    with monkeypatch.context() as patch:
        patch.setattr(library_module, "FORMAT_VERSION", version)
        Library.load(cli_library).save(old)
    assert read_library_meta(old)["format_version"] == version < FORMAT_VERSION == 4
    before = Library.load(old)
    assert main(["upgrade", str(old), "-o", str(new)]) == 0
    assert f"format {version} -> 4" in capsys.readouterr().out
    after = Library.load(new)
    assert read_library_meta(new)["format_version"] == 4
    channels = before.preset.model.grid_channels  # per shape: the same streams, plus a 5-byte entry per channel
    for was, now in zip(read_library_meta(old)["shapes"], read_library_meta(new)["shapes"]):
        assert now["detail_bytes"] <= was["detail_bytes"] + 5 * channels
    assert after.history[-1]["kind"] == "upgrade" and after.history[-1]["from_format"] == version
    assert torch.equal(after.codes, before.codes)
    assert torch.equal(after.model.detail.grid.features, before.model.detail.grid.features)
    for name in before.names:
        a, b = decode(before, name, resolution=32), decode(after, name, resolution=32)
        assert len(a.faces) and np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
    assert main(["upgrade", str(old)]) == 0  # in place
    assert read_library_meta(old)["format_version"] == 4
    assert main(["upgrade", str(old)]) == 0 and "already format 4" in capsys.readouterr().out


def test_upgrade_of_a_file_from_before_distance_bits_moves_features_by_under_half_a_step(tmp_path):
    """The corpus's oldest readable file (format 2, no ``distance_bits``) holds an int8 -128, one level
    beyond what the codec writes: like any re-save of it, the upgrade re-rounds, by under half a step."""
    import torch

    from backend.field.codec import DetailCodec
    from backend.store.library import Library

    old = REPO / "tests" / "fuzz_corpus" / "library" / "format2_valid.csdf"
    assert main(["-q", "upgrade", str(old), "-o", str(tmp_path / "new.csdf")]) == 0
    before, after = Library.load(old), Library.load(tmp_path / "new.csdf")
    step = torch.from_numpy(DetailCodec.of(before.preset.storage).quantize(before.model.detail.grid.features)[1])
    moved = (after.model.detail.grid.features - before.model.detail.grid.features).abs()
    assert torch.all(moved <= step / 2 + 1e-7)
