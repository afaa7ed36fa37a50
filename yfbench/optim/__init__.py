"""Optimizers: YellowFin (depends on torch only) and the registry of baselines."""

from yfbench.optim.yellowfin import YellowFin, cubic_momentum_root, robust_momentum

__all__ = ["YellowFin", "cubic_momentum_root", "robust_momentum"]
