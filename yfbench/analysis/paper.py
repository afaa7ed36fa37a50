"""The paper's own numbers and how the report names things, in one place.

``paper_numbers.json`` holds what the paper reports (speedups with their confidence, the
authors' setup, each task's label); every page and sentence that sets a number of ours
beside the paper's reads it from here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.json")
# How the suite's optimizers are written in sentences; others keep their config name.
NAMES = {"adam": "Adam", "yellowfin": "YellowFin", "momentum_sgd": "momentum SGD", "sgd": "SGD"}


def paper_numbers(path: Path = PAPER_NUMBERS) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def optimizer_name(optimizer: str) -> str:
    return NAMES.get(optimizer, optimizer)


def task_label(paper: dict[str, Any], task: str) -> str:
    return paper["tasks"].get(task, {}).get("label", task)
