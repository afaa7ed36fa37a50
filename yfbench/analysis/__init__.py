"""Analysis of run directories: load runs, the paper's speedup, plots and the report.

Reads run directories only (DESIGN.md run contract), so it works for any optimizer.
"""

from yfbench.analysis.runs import load_runs, runs_table
from yfbench.analysis.speedup import smooth, speedup_table

__all__ = ["load_runs", "runs_table", "smooth", "speedup_table"]
