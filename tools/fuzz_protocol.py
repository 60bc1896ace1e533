"""Coverage-guided fuzzing (atheris) of the worker's request, argument and event parsers.

Every line must parse or raise ProtocolError, and so must the typed arguments of every request
that parses (``parse_args``, which the worker runs before each job); anything else is a finding
(the worker's reader thread would die, or a job would fail with a traceback instead of a message). ``check_protocol_bytes`` is the entry point; CI replays the corpus through
it without atheris (tests/backend/test_fuzz_corpus.py).

Run (libFuzzer adds new inputs to the first directory: a scratch one, the repo's seeds second;
crashes land in ./crash-*). A short run takes -max_total_time=180, a long one 3600 or more::

    mkdir -p /tmp/corpus-protocol && .venv/bin/python tools/fuzz_protocol.py /tmp/corpus-protocol \\
        tests/fuzz_corpus/protocol -max_total_time=3600

``pip install atheris`` first.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def check_protocol_bytes(data: bytes) -> None:
    """Parse ``data`` as a request (and its typed arguments) and as an event, as bytes and as
    text; only ProtocolError may escape."""
    from backend.interfaces.protocol import ProtocolError, parse_args, parse_event, parse_request

    def typed_request(line: str | bytes) -> None:
        parse_args(parse_request(line))

    text = data.decode("utf-8", errors="surrogateescape")
    for parse in (typed_request, parse_event):
        for line in (data, text):
            try:
                parse(line)
            except ProtocolError as exc:
                if not str(exc).strip():
                    raise AssertionError("a ProtocolError without a message") from exc


def main() -> None:
    import atheris

    with atheris.instrument_imports(include=["backend"]):
        import backend.interfaces.protocol  # noqa: F401
    atheris.Setup(sys.argv, check_protocol_bytes)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
