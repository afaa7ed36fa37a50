"""Analysis of run directories: load runs, the speedup (two conventions, per seed, and a
speedup curve), seed independence, plots and the paper-vs-ours report.

Reads run directories only (``run_config.json``, ``summary.json``, ``metrics.jsonl[.gz]``),
so it works for any optimizer.
"""

from yfbench.analysis.runs import load_runs, runs_table
from yfbench.analysis.seeds import seed_correlations
from yfbench.analysis.speedup import compare_all, smooth, speedup_table, summary_frame

__all__ = [
    "compare_all",
    "load_runs",
    "runs_table",
    "seed_correlations",
    "smooth",
    "speedup_table",
    "summary_frame",
]
