"""What an optimizer costs besides its arithmetic: state bytes and host reads per step.

Host reads are counted, not timed, so the count is the same on a CPU as on an accelerator
(where each one is a device sync): every call that turns a tensor into a Python value
(``.item()``, ``.tolist()``, ``float()``, ``int()``, ``bool()`` - comparisons in an ``if``
or ``max`` -, ``.numpy()``, ``.cpu()``) made inside ``step``, through a TorchFunctionMode.
On a CPU every tensor is a host tensor, so the scalars torch's own optimizers keep on the
host even for accelerator parameters (``step`` and NAdam's ``mu_product``, unless
``capturable``) are left out: reading them never waits for a device.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from torch import Tensor
from torch.optim import Optimizer
from torch.overrides import TorchFunctionMode

# Per-parameter state torch's optimizers keep as host tensors (torch/optim/*.py, capturable=False).
HOST_SCALARS = ("step", "mu_product")
HOST_READS = frozenset(
    {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "cpu"}
)


class HostReads(TorchFunctionMode):
    """Counts, by name, the tensor-to-host reads made while it is active."""

    def __init__(self, host_tensors: Iterable[Tensor] = ()) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self._host = {id(t) for t in host_tensors}

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None):
        name = getattr(func, "__name__", "")
        if name in HOST_READS and not (args and id(args[0]) in self._host):
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


def host_scalars(optimizer: Optimizer) -> list[Tensor]:
    """The optimizer's per-parameter scalars that torch keeps on the host."""
    return [
        value
        for state in optimizer.state.values()
        if isinstance(state, dict)
        for key, value in state.items()
        if key in HOST_SCALARS and isinstance(value, Tensor)
    ]


def state_bytes(optimizer: Optimizer) -> int:
    """Bytes of every tensor in the optimizer's ``state_dict`` (averaged copies included)."""
    return _tensor_bytes(optimizer.state_dict())


def _tensor_bytes(node: Any) -> int:
    if isinstance(node, Tensor):
        return node.numel() * node.element_size()
    if isinstance(node, dict):
        return sum(_tensor_bytes(value) for value in node.values())
    if isinstance(node, list | tuple):
        return sum(_tensor_bytes(value) for value in node)
    return 0
