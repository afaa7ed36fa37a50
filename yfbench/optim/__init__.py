"""Optimizers: YellowFin and closed-loop YellowFin, a torch-only library (the runner's
registry of every optimizer it builds is :mod:`yfbench.engine.optimizers`)."""

from yfbench.optim.closed_loop import ClosedLoopYellowFin
from yfbench.optim.phases import cubic_momentum_root, robust_momentum
from yfbench.optim.yellowfin import YellowFin

__all__ = ["ClosedLoopYellowFin", "YellowFin", "cubic_momentum_root", "robust_momentum"]
