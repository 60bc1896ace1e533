"""Coverage-guided fuzzing (atheris) of the library reader: bytes → a .csdf file → read it.

Every input must end in a parsed library or a CompactSdfError with a message; anything else
(another exception, a crash, a hang, runaway memory) is a finding. ``check_library_bytes`` is the
entry point; CI replays the corpus through it without atheris (tests/backend/test_fuzz_corpus.py).

Run (single process; libFuzzer adds new inputs to the first directory, so give it a scratch one
and the repo's seeds second; crashes land in ./crash-*). A short run takes -max_total_time=180,
a long one 3600 or more::

    mkdir -p /tmp/corpus-library && OMP_NUM_THREADS=1 .venv/bin/python tools/fuzz_library.py \\
        /tmp/corpus-library tests/fuzz_corpus/library -max_total_time=3600 -rss_limit_mb=4096 -max_len=60000

``pip install atheris`` first (3.0.0 has wheels for CPython 3.11 on Linux x86-64). Rebuild the
seed corpus with ``tools/fuzz_library.py --write-seeds tests/fuzz_corpus/library``.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_SCRATCH = Path(tempfile.mkdtemp(prefix="csdf-fuzz-")) / "input.csdf"


def check_library_bytes(data: bytes) -> None:
    """Read ``data`` as a library file both ways; re-raise anything but a clear CompactSdfError."""
    from backend.errors import CompactSdfError
    from backend.store.library import Library
    from backend.store.library_meta import read_library_meta

    _SCRATCH.write_bytes(data)
    for read in (read_library_meta, Library.load):
        try:
            read(_SCRATCH)
        except CompactSdfError as exc:
            if not str(exc).strip():
                raise AssertionError("a CompactSdfError without a message") from exc


def write_seeds(directory: Path) -> None:
    """A minimal valid library (a sphere on a 32^3 grid, its distances stored predicted), a truncated and a
    metadata-only copy."""
    from backend.api import encode
    from backend.config import Preset, TrainConfig
    from backend.geometry.meshes import load_mesh
    from backend.field.model import ModelConfig
    from backend.geometry.sampling import SampleConfig

    preset = Preset("seed", SampleConfig(grid_resolution=32, surface_points=2000, wide_points=500, uniform_points=500),
                    ModelConfig(code_size=4, pe_frequencies=1, coarse_width=8, coarse_depth=2, grid_resolution=32,
                                grid_channels=2, detail_width=8, detail_depth=2),
                    TrainConfig(steps=2, detail_steps=2, band_batch=256, point_batch=256, detail_batch=256))
    directory.mkdir(parents=True, exist_ok=True)
    library = encode({"sphere": load_mesh(REPO / "tests/data/sphere.obj")}, preset=preset, device="cpu")
    library.save(directory / "valid.csdf")
    raw = (directory / "valid.csdf").read_bytes()
    (directory / "truncated.csdf").write_bytes(raw[: len(raw) // 2])
    header = json.dumps({"__metadata__": {"compact_sdf": json.dumps(library.metadata())}}).encode()
    (directory / "meta_only.csdf").write_bytes(struct.pack("<Q", len(header)) + header)


def main() -> None:
    import atheris

    with atheris.instrument_imports(include=["backend"]):
        import backend.store.library  # noqa: F401
        import backend.store.library_meta  # noqa: F401
    atheris.Setup(sys.argv, check_library_bytes)
    atheris.Fuzz()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if sys.argv[1:2] == ["--write-seeds"]:
        write_seeds(Path(sys.argv[2]))
    else:
        main()
