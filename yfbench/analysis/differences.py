"""Every way a scale's runs differ from the paper's setup, read from the runs' own config.

Three sources, each named in the output: the runs' recorded config (``run_config.json``),
the paper's setup as the authors' scripts have it (``paper_numbers.json`` ``setup``, from
paper_digest.md section 3), and this repository's ``scale=paper`` config of the task
(composed from the config tree). Beyond differing keys, three derived facts: run length
(iterations and epochs), the smoothing window, and how far the hand-set learning-rate
decay gets by the last iteration, so that a schedule that never engages at a scale's
length is said to ("decay never engages").
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import pandas as pd

from yfbench.analysis.runs import flatten
from yfbench.analysis.seeds import steps_per_epoch

# Config prefixes that describe the workload (not the run's bookkeeping).
WORKLOAD = ("task.",)
IGNORED = {"task.name", "task.paper_max_steps", "task.eval_batch_size", "task.source"}


@cache
def paper_scale_config(task: str) -> dict[str, str]:
    """The flat config ``python -m yfbench task=TASK scale=paper`` would run; empty for a
    task the config tree does not define."""
    from omegaconf import OmegaConf

    from yfbench.config import CONFIG_DIR, compose

    if not (CONFIG_DIR / "task" / f"{task}.yaml").is_file():
        return {}
    return flatten(OmegaConf.to_container(compose([f"task={task}", "scale=paper"]), resolve=True))


def decay_at_end(rate: float, start_epoch: float, last_epoch: int) -> float:
    """The lr multiplier rate^max(epoch - start, 0) in force at epoch index ``last_epoch``."""
    return rate ** max(last_epoch - start_epoch, 0)


def differences(
    task: str, scale: str, runs: pd.DataFrame, frame: pd.DataFrame, paper: dict[str, Any]
) -> list[str]:
    """Lines, one per difference, for one task and scale (``runs``: one row per run;
    ``frame``: their records, for the epoch length)."""
    config: dict[str, str] = runs["flat_config"].iloc[0]
    setup = paper.get("tasks", {}).get(task, {}).get("setup", {})
    lines = []
    for key, value in sorted(setup.get("config", {}).items()):
        ours = config.get(key, "unset")
        if ours != value:
            lines.append(f"`{key}` = {ours} (paper: {value})")
    paper_scale = paper_scale_config(task)
    for key in sorted(k for k in config if k.startswith(WORKLOAD) and k not in IGNORED):
        if key in setup.get("config", {}) or not paper_scale:
            continue
        if paper_scale.get(key, "unset") != config[key]:
            lines.append(f"`{key}` = {config[key]} (scale=paper: {paper_scale.get(key, 'unset')})")
    lines += _derived(config, runs, frame, setup)
    return lines


def _derived(
    config: dict[str, str], runs: pd.DataFrame, frame: pd.DataFrame, setup: dict[str, Any]
) -> list[str]:
    if runs["max_steps"].isna().any():
        return []
    steps = int(runs["max_steps"].max())
    epoch = steps_per_epoch(frame)
    epochs = f", {steps / epoch:.1f} epochs" if epoch else ""
    lines = [f"run length {steps:,} iterations{epochs}"]
    if runs["paper_max_steps"].notna().all():
        paper_steps = int(runs["paper_max_steps"].iloc[0])
        paper_epochs = f", {setup['epochs']} epochs" if "epochs" in setup else ""
        lines[0] += f" (paper: {paper_steps:,}{paper_epochs}; {steps / paper_steps:.0%})"
    windows = runs["window"].dropna().unique()
    if len(windows) == 1 and int(windows[0]) != setup.get("window", 500):
        lines.append(f"smoothing window {int(windows[0])} (paper: {setup.get('window', 500)})")
    rate = float(config.get("task.lr_decay.rate", "1"))
    start = float(config.get("task.lr_decay.start_epoch", "0"))
    if rate != 1.0 and epoch:
        ours = decay_at_end(rate, start, (steps - 1) // epoch)
        text = f"lr decay {setup.get('schedule', '')} reaches x{ours:.2f} by the last iteration"
        if "epochs" in setup:
            text += f" (paper: x{decay_at_end(rate, start, setup['epochs'] - 1):.2f})"
        if math.isclose(ours, 1.0):
            text += ": the decay never engages at this length"
        lines.append(text)
    sources = sorted({str(d) for d in runs["data_source"].dropna()})
    if sources:
        lines.append(f"data: {', '.join(sources)} (paper: {setup.get('data', 'see the digest')})")
    elif "task.data.wsj_dir" in config and config["task.data.wsj_dir"] == "None":
        lines.append(f"data: the NLTK 10% WSJ sample (paper: {setup.get('data')})")
    return lines


def differences_section(
    runs: pd.DataFrame, frame: pd.DataFrame, paper: dict[str, Any]
) -> list[str]:
    """The report's section: per task and scale, every difference from the paper's setup."""
    lines = [
        "## Our runs against the paper's setup",
        "",
        "Every difference between a scale's runs and the paper's setup, read from the runs' "
        "recorded config: keys against the authors' scripts (paper_digest.md section 3, "
        "`paper_numbers.json`) and against this repository's `scale=paper` config; then run "
        "length, smoothing window, how far the lr decay gets, and the data copy.",
        "",
    ]
    for (task, scale), group in runs.groupby(["task", "scale"], sort=True):
        own = frame[frame["run_dir"].isin(group["run_dir"])]
        found = differences(task, scale, group, own, paper)
        lines.append(f"- **{task} ({scale})**: " + "; ".join(found) + ".")
    return lines + [""]
