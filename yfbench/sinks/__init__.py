"""Where a run's records go: metrics.jsonl (always on, the source of truth) and Weights &
Biases (optional), behind one fan-out object the trainer emits to."""

from yfbench.sinks.fanout import Sinks
from yfbench.sinks.jsonl import JsonlSink, MetricsPosition
from yfbench.sinks.wandb_sink import WandbSink

__all__ = ["JsonlSink", "MetricsPosition", "Sinks", "WandbSink"]
