"""Wall time and peak memory of one job, measured in a fresh process.

Peak memory is the child's ``VmHWM`` from ``/proc/self/status``: the resident-set high-water mark
of its own address space (Python, torch and everything the job allocated). ``ru_maxrss`` is not
used: Linux carries the parent's peak over into a spawned child's ``ru_maxrss``, so every job would
report at least the benchmark process's size. ``idle_mb`` is the same reading taken before the job
starts (the cost of the imports alone).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Measured:
    """A job's result, its wall time in seconds and the process's peak and idle RSS in MB."""

    value: Any
    seconds: float
    peak_mb: float
    idle_mb: float


def _rss_mb() -> float:
    """Peak resident set size of this process's address space so far, in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # reported in kB
    raise RuntimeError("no VmHWM in /proc/self/status: peak memory needs Linux")


def _job(fn: Callable[..., Any], args: tuple, kwargs: dict) -> Measured:
    import torch  # noqa: F401  (imported before the idle reading, as every job needs it)

    idle = _rss_mb()
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return Measured(value, time.perf_counter() - start, _rss_mb(), idle)


def isolated(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Measured:
    """Run ``fn(*args, **kwargs)`` in a new spawned process; ``fn`` must be importable by name."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_job, fn, args, kwargs).result()
