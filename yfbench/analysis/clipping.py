"""Does the task's gradient clip bind, and for whom? The share of training steps whose
gradient norm before clipping exceeds the clip (``task.grad_clip_norm``), per optimizer's
tuned point: the range over its seeds (all of them: this describes the runs, it is not a
comparison).

Runs since the trainer logged ``grad_norm`` (the global norm before the clip) give the
share directly. Older YellowFin runs log only ``grad_norm_sq``, the squared norm *after*
the global clip and YellowFin's own adaptive clip to sqrt(100 h_max) (h_max of the step
before). That still brackets the share: a norm at the task's clip (within ``AT_CLIP``)
was clipped by it; a norm at the adaptive threshold (below the task's clip) may or may
not have been; any other norm was clipped by neither. Such rows show the range
"low–high". Runs with neither field say "not logged".
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from yfbench.analysis.protocol import seed_list
from yfbench.analysis.speedup import GridPoint
from yfbench.analysis.tables import markdown_table

# Relative distance from the clip within which a post-clip norm counts as clipped.
AT_CLIP = 1e-4
# YellowFin's adaptive clip: sqrt(STAT_PROTECT * h_max of the step before).
STAT_PROTECT = 100.0
CLIP_KEY = "task.grad_clip_norm"
COLUMNS = ["task", "scale", "setting", "optimizer", "clip", "source", "seeds", "low", "high"]


def binding_share(train: pd.DataFrame, clip: float) -> tuple[float, float, str]:
    """Share of steps at which the clip binds (low, high: equal when measured directly),
    and how it was measured."""
    if "grad_norm" in train and train["grad_norm"].notna().any():
        share = float(np.mean(train["grad_norm"].dropna().to_numpy(dtype=float) > clip))
        return share, share, "grad_norm"
    if "grad_norm_sq" in train and "h_max" in train and train["grad_norm_sq"].notna().any():
        run = train.sort_values("step")
        norms = np.sqrt(run["grad_norm_sq"].to_numpy(dtype=float))
        threshold = np.sqrt(STAT_PROTECT * run["h_max"].shift(1).to_numpy(dtype=float))
        at_clip = norms >= clip * (1 - AT_CLIP)
        adaptive = (np.abs(norms - threshold) <= AT_CLIP * threshold) & (threshold < clip)
        keep = np.isfinite(norms)
        low = float(np.mean(at_clip[keep]))
        return low, float(np.mean((at_clip | adaptive)[keep])), "YellowFin grad_norm_sq after clips"
    return math.nan, math.nan, "not logged"


def clipping_rows(
    group: pd.DataFrame, tuned: dict[str, GridPoint], clip: float | None
) -> list[dict]:
    """One row per optimizer's tuned point; none when the task does not clip."""
    if clip is None or not math.isfinite(clip):
        return []
    first = group.iloc[0]
    rows = []
    for optimizer, point in sorted(tuned.items()):
        lows, highs, sources = {}, {}, set()
        for seed, run_dir in sorted(point.run_dirs.items()):
            train = group[(group["run_dir"] == run_dir) & (group["split"] == "train")]
            low, high, source = binding_share(train, clip)
            sources.add(source)
            if not math.isnan(low):
                lows[seed], highs[seed] = low, high
        rows.append(
            {
                "task": first["task"],
                "scale": first["scale"],
                "setting": first["setting"],
                "optimizer": optimizer,
                "clip": clip,
                "source": ", ".join(sorted(sources)),
                "seeds": seed_list(lows),
                "low": min(lows.values()) if lows else math.nan,
                "high": max(highs.values()) if highs else math.nan,
            }
        )
    return rows


def display_clipping(table: pd.DataFrame) -> pd.DataFrame:
    """``2.1%`` (one value over seeds), ``0.0%–0.3%`` (the range over seeds, or the
    bracket of a post-clip norm) or ``not logged``."""
    rows = []
    for _, row in table.iterrows():
        if math.isnan(row["low"]):
            cell = "not logged"
        elif row["low"] == row["high"]:
            cell = f"{row['low']:.1%}"
        else:
            cell = f"{row['low']:.1%}–{row['high']:.1%}"
        rows.append(
            [
                row["task"],
                row["scale"],
                row["setting"],
                row["optimizer"],
                f"{row['clip']:g}",
                row["seeds"] or "—",
                cell,
                row["source"],
            ]
        )
    headers = ["task", "scale", "setting", "optimizer", "clip", "seeds", "steps clipped", "from"]
    return pd.DataFrame(rows, columns=headers)


def clip_norm(group: pd.DataFrame) -> float | None:
    """The task's clip, from the runs' records (the ``clip`` column the loader reads)."""
    if "grad_clip_norm" not in group:
        return None
    values = group.drop_duplicates("run_dir")["grad_clip_norm"].dropna().unique()
    return float(values[0]) if len(values) == 1 else None


def section(table: pd.DataFrame) -> list[str]:
    if table.empty:
        return []
    return [
        "## Does the gradient clip bind?",
        "",
        "Share of training steps whose global gradient norm before clipping exceeds the "
        "task's clip, per optimizer's tuned point (range over its seeds). Runs before the "
        'trainer logged `grad_norm` say "not logged"; YellowFin\'s older runs are bracketed '
        "from its `grad_norm_sq` after the clips (see `yfbench/analysis/clipping.py`).",
        "",
        markdown_table(display_clipping(table)),
    ]
