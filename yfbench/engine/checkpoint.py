"""Atomic checkpoints loaded safely (``weights_only=True``)."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Any

import torch

from yfbench.errors import UserError

FORMAT_VERSION = 1


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save_atomic(path: Path, payload: dict[str, Any]) -> None:
    """A checkpoint is either fully written or not there: a crash never leaves half a file."""
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **payload}, buffer)
    write_atomic(path, buffer.getvalue())


def load(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_atomic`, or explain why it cannot be used."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means a bad file
        raise UserError(
            f"checkpoint {path} is corrupt or not a yfbench checkpoint ({type(error).__name__}: "
            f"{error}). Delete it to restart the run from step 0."
        ) from error
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"checkpoint {path} has an incompatible format (expected version {FORMAT_VERSION}). "
            "Delete it to restart the run from step 0."
        )
    return payload


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
