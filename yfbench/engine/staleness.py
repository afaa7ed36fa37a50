"""Asynchronous training simulated in one process: every update applies a stale gradient.

The paper's asynchronous runs use 16 round-robin workers, so each gradient reaches the
model ``tau = 15`` updates after the iterate it was computed at. ``StaleGradients`` keeps
the last ``tau`` gradients in a FIFO and hands the optimizer the one from ``tau`` updates
ago. During the first ``tau`` updates no gradient is that old yet; they apply the oldest
one there is, the gradient at the initial point, as the workers of a real asynchronous
run all start from the initial model.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from torch import Tensor

from yfbench.errors import UserError


class StaleGradients:
    """Delays every gradient by ``tau`` updates; ``tau = 0`` leaves training unchanged."""

    def __init__(self, tau: int) -> None:
        if not isinstance(tau, int) or tau < 0:
            raise UserError(f"trainer.staleness must be an integer >= 0, got {tau!r}")
        self.tau = tau
        self._queue: deque[list[Tensor | None]] = deque()

    def swap(self, params: Iterable[Tensor]) -> None:
        """Call after ``backward()``: queue the fresh gradients, leave the stale ones in ``.grad``.

        The queue keeps the gradient tensors themselves (no copy): each tensor is either
        in the queue or in a ``.grad``, never both, so in-place changes to ``.grad``
        (zeroing, clipping, unscaling) never reach a queued gradient.
        """
        if self.tau == 0:
            return
        params = list(params)
        self._queue.append([p.grad for p in params])
        if len(self._queue) > self.tau:
            stale = self._queue.popleft()
        else:
            stale = [None if g is None else g.clone() for g in self._queue[0]]
        for p, grad in zip(params, stale, strict=True):
            p.grad = None if grad is None else grad.to(p.device)

    def state_dict(self) -> dict[str, Any]:
        return {"queue": [list(entry) for entry in self._queue]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        queue = state["queue"]
        if len(queue) > self.tau:
            raise UserError(
                f"the checkpoint holds {len(queue)} delayed gradients but trainer.staleness is "
                f"{self.tau}; resume with the staleness the run started with"
            )
        self._queue = deque([None if g is None else g.clone() for g in entry] for entry in queue)
