"""Registry of workloads. Modules are imported lazily so one task never pays for another."""

from __future__ import annotations

import importlib

from omegaconf import DictConfig

from yfbench.errors import UserError
from yfbench.tasks.base import Task, TaskContext

# task name -> "module:builder"; each builder is ``build(cfg, ctx) -> Task``.
TASKS: dict[str, str] = {
    "noisy_quadratic": "yfbench.tasks.noisy_quadratic:build",
    "tinyshakespeare_lstm": "yfbench.tasks.language_model:build_tinyshakespeare",
    "ptb_lstm": "yfbench.tasks.language_model:build_ptb",
    "wsj_parse_lstm": "yfbench.tasks.wsj_parse:build",
    "cifar10_resnet": "yfbench.tasks.cifar:build_cifar10",
    "cifar100_resnet": "yfbench.tasks.cifar:build_cifar100",
    "pixel_lstm": "yfbench.tasks.pixel_lstm:build",
}


def build_task(cfg: DictConfig, ctx: TaskContext) -> Task:
    """Build the task named ``cfg.name``."""
    name = cfg.name
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    module_name, builder = TASKS[name].split(":")
    return getattr(importlib.import_module(module_name), builder)(cfg, ctx)


__all__ = ["TASKS", "Task", "TaskContext", "build_task"]
