"""Replay the fuzzing seed corpora through the fuzz targets' entry functions (no atheris needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.fuzz_library import check_library_bytes
from tools.fuzz_protocol import check_protocol_bytes

CORPUS = Path(__file__).resolve().parents[1] / "fuzz_corpus"


@pytest.mark.parametrize("path", sorted((CORPUS / "library").iterdir()), ids=lambda p: p.name)
def test_library_corpus(path):
    check_library_bytes(path.read_bytes())


@pytest.mark.parametrize("path", sorted((CORPUS / "protocol").iterdir()), ids=lambda p: p.name)
def test_protocol_corpus(path):
    check_protocol_bytes(path.read_bytes())
