"""Optimizers: YellowFin and closed-loop YellowFin (torch only) and the baseline registry."""

from yfbench.optim.closed_loop import ClosedLoopYellowFin
from yfbench.optim.phases import cubic_momentum_root, robust_momentum
from yfbench.optim.yellowfin import YellowFin

__all__ = ["ClosedLoopYellowFin", "YellowFin", "cubic_momentum_root", "robust_momentum"]
