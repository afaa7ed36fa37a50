"""Atomic checkpoints loaded safely (``weights_only=True``), tied to their run.

A checkpoint names the config hash of the run that wrote it and the metrics.jsonl prefix
it was saved with; resuming checks both before anything is written, so another run's
checkpoint, or a metrics file that was cut or swapped, is refused instead of mixed.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import torch

from yfbench.engine.run_dir import write_atomic
from yfbench.errors import UserError
from yfbench.sinks import MetricsPosition

FORMAT_VERSION = 2
RESTART = "Delete it to restart the run from step 0."
# What differs between the processes of one run (torchrun): each rank's own RNGs, task
# state (its rows' LSTM state) and divergence watch; the rest is the same on every rank.
PER_RANK = ("rng", "task", "divergence")


def save(path: Path, payload: dict[str, Any], config_hash: str, metrics: MetricsPosition) -> None:
    """A checkpoint is either fully written or not there: a crash never leaves half a file."""
    buffer = io.BytesIO()
    torch.save(
        {
            "format_version": FORMAT_VERSION,
            "config_hash": config_hash,
            "metrics": metrics.as_dict(),
            **payload,
        },
        buffer,
    )
    write_atomic(path, buffer.getvalue())


def load(path: Path, config_hash: str) -> tuple[dict[str, Any], MetricsPosition]:
    """The payload and metrics position of this run's checkpoint, or why it cannot be used."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling failure means a bad file
        raise UserError(
            f"checkpoint {path} is corrupt or not a yfbench checkpoint ({type(error).__name__}: "
            f"{error}). {RESTART}"
        ) from error
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"checkpoint {path} has an incompatible format (expected version {FORMAT_VERSION}). "
            f"{RESTART}"
        )
    if payload.get("config_hash") != config_hash:
        raise UserError(
            f"checkpoint {path} was saved by a run with another config (another seed, "
            "optimizer or setting; it was copied or moved here), so resuming would mix two "
            f"runs. {RESTART}"
        )
    return payload, MetricsPosition(**payload["metrics"])


def with_ranks(payload: dict[str, Any], every_rank: list[dict[str, Any]]) -> dict[str, Any]:
    """The payload of a run of several processes: the shared parts once, and under
    ``"ranks"`` each rank's own parts (a single process's payload is left as it was)."""
    if len(every_rank) == 1:
        return payload
    shared = {key: value for key, value in payload.items() if key not in PER_RANK}
    return {**shared, "ranks": every_rank}


def for_rank(payload: dict[str, Any], path: Path, rank: int, world_size: int) -> dict[str, Any]:
    """What rank ``rank`` of ``world_size`` loads: the shared parts and its own.

    A run resumes with the number of processes it started with: each rank's share of
    the batch, and the state it carries, depend on it.
    """
    saved = payload["ranks"] if "ranks" in payload else [payload]
    if len(saved) != world_size:
        raise UserError(
            f"checkpoint {path} was saved by a run of {len(saved)} process(es), and this one "
            f"has {world_size}: resume it with {len(saved)} (torchrun's --nproc_per_node "
            f"times --nnodes; 1 is plain python -m yfbench). {RESTART}"
        )
    return {**payload, **{key: saved[rank][key] for key in PER_RANK}}


def rng_state() -> dict[str, Any]:
    """Every RNG the training step may draw from (dropout, augmentation fallbacks)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
