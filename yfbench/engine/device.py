"""Devices and precisions yfbench supports, checked before anything is built."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from yfbench.errors import UserError

SUPPORTED_TYPES = ("cpu", "cuda")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``; anything else refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise UserError(
            f"trainer.device={name!r} is not a device: use auto, cpu, cuda or cuda:N"
        ) from error
    if device.type not in SUPPORTED_TYPES:
        raise UserError(
            f"trainer.device={name} is not supported: yfbench runs and tests its workloads on "
            "cpu and cuda only; use auto, cpu, cuda or cuda:N"
        )
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                f"trainer.device={name} but no CUDA device is available; use cpu or auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(
                f"trainer.device={name} but only {torch.cuda.device_count()} CUDA device(s) "
                "exist; use cuda:0 .. cuda:N-1"
            )
    return device


def check_precision(
    precision: str, device: torch.device, task: str, cpu_precisions: tuple[str, ...]
) -> None:
    """Refuse a precision the task cannot train in on this device (e.g. fp16 LSTMs on CPU)."""
    if device.type == "cpu" and precision not in cpu_precisions:
        raise UserError(
            f"trainer.precision={precision} is not supported for {task} on CPU (its kernels "
            f"have no {precision} version there); use one of {', '.join(cpu_precisions)}, or a "
            "CUDA device"
        )


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """The forward pass's autocast context for ``precision`` (none for fp32)."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])
