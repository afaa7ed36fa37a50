"""A run's training time across sessions, read from the host clock (never a device sync)."""

from __future__ import annotations

import time


class WallClock:
    """Training time of every session of a run: the earlier sessions' total (from the
    checkpoint) plus this session's since :meth:`start`. Start-up (data, model, loggers)
    comes before :meth:`start`, so it never counts as training."""

    def __init__(self) -> None:
        self.earlier_s = 0.0
        self.session_steps = 0
        self._started: float | None = None
        self._stopped: float | None = None

    def start(self, earlier_s: float) -> None:
        self.earlier_s = earlier_s
        self._started = time.perf_counter()

    def stop(self) -> None:
        """The session ends: its time and rate no longer change."""
        if self._started is not None and self._stopped is None:
            self._stopped = time.perf_counter()

    @property
    def started(self) -> bool:
        return self._started is not None

    def session_s(self) -> float:
        if self._started is None:
            return 0.0
        return (self._stopped or time.perf_counter()) - self._started

    def total_s(self) -> float:
        """Training time of earlier sessions plus this one's."""
        return self.earlier_s + self.session_s()

    def step(self) -> None:
        self.session_steps += 1

    def steps_per_s(self) -> float:
        """This session's rate (0 before its first step)."""
        elapsed = self.session_s()
        return self.session_steps / elapsed if elapsed > 0 else 0.0
