"""Optimizers: YellowFin and closed-loop YellowFin (torch only) and the baseline registry."""

from yfbench.optim.closed_loop import ClosedLoopYellowFin
from yfbench.optim.yellowfin import YellowFin, cubic_momentum_root, robust_momentum

__all__ = ["ClosedLoopYellowFin", "YellowFin", "cubic_momentum_root", "robust_momentum"]
