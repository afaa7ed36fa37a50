"""Train records gathered on the device and written in batches: no host sync per step.

Each logged step stacks its loss and the optimizer's 0-d statistics into one small
device tensor; host-side fields (step, wall time, scheduled lr) are kept beside it. A
flush moves every pending row, plus the divergence flags, to the host in one transfer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

# Statistics that are counts: written as integers, as before the buffering.
INTEGER_STATISTICS = ("skipped_steps",)


@dataclass
class _Pending:
    row: Tensor
    names: tuple[str, ...]
    host: dict[str, Any]


@dataclass
class TrainRecords:
    """Pending train records; :meth:`flush` returns them as metrics.jsonl dicts."""

    pending: list[_Pending] = field(default_factory=list)

    def add(
        self,
        step: int,
        loss: Tensor,
        statistics: dict[str, Tensor] | None,
        hyperparameters: dict[str, float],
        time_s: float,
    ) -> None:
        """Queue the record of ``step`` (device tensors stay on the device)."""
        statistics = statistics or {}
        names = ("loss", *statistics)
        row = torch.stack([loss.detach().float(), *(v.float() for v in statistics.values())])
        host = {"step": step, "split": "train", **hyperparameters, "time_s": round(time_s, 4)}
        self.pending.append(_Pending(row, names, host))

    def flush(self, extra: Tensor) -> tuple[list[dict[str, Any]], list[float]]:
        """The pending records and ``extra`` (the divergence flags), in one transfer."""
        rows = [p.row for p in self.pending]
        values = torch.cat([*rows, extra.reshape(-1).to(torch.float64)]).tolist()
        records, offset = [], 0
        for pending in self.pending:
            count = len(pending.names)
            record = {"step": pending.host["step"], "split": "train"}
            record.update(_named(pending.names, values[offset : offset + count]))
            for key, value in pending.host.items():
                record.setdefault(key, value)
            records.append(_ordered(record))
            offset += count
        self.pending.clear()
        return records, values[offset:]


def _named(names: tuple[str, ...], values: list[float]) -> dict[str, Any]:
    return {
        name: int(value) if name in INTEGER_STATISTICS else value
        for name, value in zip(names, values, strict=True)
    }


def _ordered(record: dict[str, Any]) -> dict[str, Any]:
    """step, split, loss, lr, momentum, statistics..., time_s: the order of every record."""
    time_s = record.pop("time_s")
    return {**record, "time_s": time_s}
