"""Progress reports and cancellation shared by every long-running engine call."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import Cancelled


@dataclass
class Progress:
    """One progress report: ``step`` of ``total`` in ``stage``, with loss and ETA where known."""

    stage: str
    step: int
    total: int
    loss: float | None = None
    eta_s: float | None = None
    message: str = ""


ProgressCallback = Callable[[Progress], None]
StopCallback = Callable[[], bool]


class Reporter:
    """Sends Progress to an optional callback and raises Cancelled when ``should_stop()`` says so."""

    def __init__(self, on_progress: ProgressCallback | None = None, should_stop: StopCallback | None = None) -> None:
        self.on_progress = on_progress
        self.should_stop = should_stop
        self._stage_start = time.perf_counter()
        self._stage_step = 0
        self._stage = ""

    def check(self) -> None:
        """Raise Cancelled if the caller asked to stop."""
        if self.should_stop is not None and self.should_stop():
            raise Cancelled("cancelled by the user; nothing was written")

    def report(self, stage: str, step: int, total: int, loss: float | None = None, message: str = "") -> None:
        """Check for cancellation, then report; the ETA extrapolates this stage's pace so far."""
        self.check()
        now = time.perf_counter()
        if stage != self._stage:
            self._stage, self._stage_start, self._stage_step = stage, now, step
        done = step - self._stage_step
        eta = (now - self._stage_start) / done * (total - step) if done > 0 else None
        if self.on_progress is not None:
            self.on_progress(Progress(stage, step, total, loss, eta, message))
