"""Metric sinks: JSONL (always on, the source of truth) and Weights & Biases (optional)."""

from yfbench.logging.jsonl import JsonlSink
from yfbench.logging.wandb_sink import WandbSink

__all__ = ["JsonlSink", "WandbSink"]
