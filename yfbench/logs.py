"""Logging helpers for Hydra's job-logging config (conf/hydra/job_logging/yfbench.yaml)."""

from __future__ import annotations

import logging


class BelowLevel(logging.Filter):
    """Passes records below ``level``: INFO goes to stdout, warnings and errors to stderr."""

    def __init__(self, level: str | int = logging.WARNING) -> None:
        super().__init__()
        self.level = logging.getLevelName(level) if isinstance(level, str) else level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level
