"""Prodigy (Mishchenko & Defazio 2024), package ``prodigyopt``.

The step it takes is d * lr (times Adam's bias correction when that is on), where d is
the estimate *before* the step updates it; the param group's ``lr`` stays 1, so the
adapter reports d * lr as the lr.
"""

from __future__ import annotations

import prodigyopt

from yfbench.peers.reporting import ReportsDTimesLr


class Prodigy(ReportsDTimesLr, prodigyopt.Prodigy):
    """The package's optimizer, reporting the step it takes (d * lr)."""
