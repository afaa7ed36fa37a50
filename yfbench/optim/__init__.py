"""Optimizers: YellowFin (torch-only, usable in any project) and the baseline registry."""

from yfbench.optim.yellowfin import YellowFin, cubic_momentum_root, robust_momentum

__all__ = ["YellowFin", "cubic_momentum_root", "robust_momentum"]
