"""What a run tells the person watching it: a progress bar, and how long a long run takes."""

from __future__ import annotations

import logging
import sys
from typing import Any

from tqdm import tqdm

log = logging.getLogger("yfbench")


class ProgressBar:
    """tqdm over the run's steps: shown on a terminal (``trainer.progress=auto``) or when
    asked (``true``), by the main process only."""

    def __init__(self, setting: str | bool, is_main: bool, label: str, total: int, start: int):
        show = (sys.stderr.isatty() if setting == "auto" else bool(setting)) and is_main
        self._bar = tqdm(total=total, initial=start, disable=not show, desc=label)

    def show(self, record: dict[str, Any]) -> None:
        """Advance to the train record's step, with its loss, lr and momentum."""
        self._bar.update(record["step"] - self._bar.n)
        self._bar.set_postfix(loss=record["loss"], lr=record["lr"], mu=record["momentum"])

    def close(self) -> None:
        self._bar.close()


class LongRunOnCpu:
    """A long run (``trainer.long_run``, set by scale=paper) on a CPU: warned about up
    front, checkpointed so it can be resumed, and its remaining time estimated once the
    first ``after_steps`` steps are timed."""

    def __init__(self, max_steps: int, after_steps: int = 20) -> None:
        self.max_steps = max_steps
        self.after_steps = after_steps
        self._estimated = False

    def warn(self, trainer: Any) -> None:
        """Say how long it is; turn checkpoints on (every 1000 steps) when they are off."""
        log.warning(
            "a long run (trainer.long_run, e.g. scale=paper) on a CPU: %d iterations; how "
            "long they take follows after %d steps",
            self.max_steps,
            self.after_steps,
        )
        if not trainer.checkpoint_every and self.max_steps > 1000:
            trainer.checkpoint_every = 1000
            log.warning("checkpointing every 1000 steps, so the run can be resumed")

    def estimate(self, session_steps: int, session_s: float, step: int) -> None:
        """Log the remaining time once, after ``after_steps`` steps of this session."""
        if self._estimated or session_steps < self.after_steps or session_s <= 0:
            return
        self._estimated = True
        rate = session_steps / session_s
        remaining = (self.max_steps - step) / rate
        minutes = remaining / 60
        duration = f"{minutes:.0f} minutes" if minutes < 90 else f"{minutes / 60:.1f} hours"
        log.warning(
            "at %.1f it/s this run needs about %s more on this CPU (%d of %d steps left)",
            rate,
            duration,
            self.max_steps - step,
            self.max_steps,
        )
