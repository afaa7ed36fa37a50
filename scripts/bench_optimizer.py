"""Time one ``step()`` of YellowFin, Adam and momentum SGD on the paper's models.

Only the optimizer step is timed: random gradients (from a small pool, so consecutive steps
differ) are copied into ``.grad`` before each step, outside the timer.  Methods are
interleaved repeat by repeat, in rotating order, after a warm-up that covers YellowFin's
step-0/1/2 code paths; the table reports the median.  ``--reference`` adds the authors'
``tuner_utils/yellowfin.py`` from a local clone of JianGoForIt/YellowFin_Pytorch.

    python scripts/bench_optimizer.py --device cpu --out results/bench_optimizer_cpu.md
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from yfbench.errors import UserError
from yfbench.models.lstm import LSTMLanguageModel
from yfbench.models.resnet import CifarResNet
from yfbench.optim import YellowFin

MODELS: dict[str, Callable[[], nn.Module]] = {
    "cifar10_resnet32": lambda: CifarResNet(num_classes=10, units_per_stage=5, bottleneck=False),
    "ptb_lstm": lambda: LSTMLanguageModel(10000, 200, 2),
}
GRAD_POOL = 3  # distinct random gradients, cycled through


def _load_reference(path: Path) -> type:
    """The authors' ``YFOptimizer`` class, imported from a user's file (it is not vendored)."""
    if path.is_dir():
        path = path / "tuner_utils" / "yellowfin.py"
    if not path.is_file():
        raise UserError(
            f"--reference {path} not found; pass tuner_utils/yellowfin.py of a clone of "
            "JianGoForIt/YellowFin_Pytorch (or the clone's root)"
        )
    spec = importlib.util.spec_from_file_location("yellowfin_reference", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # any import-time failure of third-party code
        raise UserError(
            f"could not import the reference YellowFin from {path}: {error!r}"
        ) from error
    if not hasattr(module, "YFOptimizer"):
        raise UserError(f"{path} defines no YFOptimizer class; is it tuner_utils/yellowfin.py?")
    return module.YFOptimizer


def _reference_factory(cls: type) -> Callable[[list[Tensor]], object]:
    accepted = inspect.signature(cls).parameters
    quiet = {"verbose": False} if "verbose" in accepted else {}
    return lambda params: cls(params, lr=1.0, mu=0.0, **quiet)


def _methods(reference: Path | None) -> dict[str, Callable[[list[Tensor]], object]]:
    methods: dict[str, Callable[[list[Tensor]], object]] = {
        "Adam (foreach)": lambda params: torch.optim.Adam(params, lr=1e-3, foreach=True),
        "SGD momentum 0.9 (foreach)": lambda params: torch.optim.SGD(
            params, lr=1e-2, momentum=0.9, foreach=True
        ),
        "YellowFin (yfbench)": lambda params: YellowFin(params),
    }
    if reference is not None:
        methods["YellowFin (authors' reference)"] = _reference_factory(_load_reference(reference))
    return methods


class _Runner:
    """One optimizer on its own copy of the parameters; ``step`` returns seconds or raises."""

    def __init__(self, base: list[Tensor], factory: Callable[[list[Tensor]], object]) -> None:
        self.params = [nn.Parameter(p.detach().clone()) for p in base]
        for p in self.params:
            p.grad = torch.zeros_like(p)
        self.optimizer = factory(self.params)
        self.steps = 0

    def step(self, grads: list[Tensor], device: torch.device) -> float:
        for p, g in zip(self.params, grads, strict=True):
            p.grad.copy_(g)
        _sync(device)
        with contextlib.redirect_stdout(io.StringIO()):  # the reference prints on clipping
            start = time.perf_counter()
            self.optimizer.step()
            _sync(device)
            elapsed = time.perf_counter() - start
        self.steps += 1
        return elapsed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _bench_model(
    model: nn.Module,
    methods: dict[str, Callable[[list[Tensor]], object]],
    device: torch.device,
    warmup: int,
    repeats: int,
) -> dict[str, list[float] | str]:
    """Per method, the timed step durations in seconds, or an error text if it failed."""
    base = [p for p in model.to(device).parameters() if p.requires_grad]
    gen = torch.Generator(device=device).manual_seed(0)
    pool = [
        [torch.randn(p.shape, generator=gen, device=device) for p in base] for _ in range(GRAD_POOL)
    ]
    runners: dict[str, _Runner] = {}
    results: dict[str, list[float] | str] = {}
    for name, factory in methods.items():
        try:
            runners[name] = _Runner(base, factory)
            results[name] = []
        except Exception as error:  # report, do not abort the other methods
            results[name] = f"failed to construct: {error!r}"
    for rep in range(warmup + repeats):
        names = list(runners)
        for name in names[rep % len(names) :] + names[: rep % len(names)] if names else []:
            runner = runners[name]
            try:
                elapsed = runner.step(pool[runner.steps % GRAD_POOL], device)
            except Exception as error:
                results[name] = f"step {runner.steps} failed: {error!r}"
                del runners[name]
                continue
            if rep >= warmup:
                results[name].append(elapsed)
    return results


def _profile_yellowfin(model: nn.Module, device: torch.device, steps: int = 10) -> str:
    """torch.profiler's top operators over ``steps`` YellowFin steps (after warm-up).

    The gradients are set once: ``step()`` leaves ``.grad`` alone, so only the step is profiled.
    """
    params = [nn.Parameter(p.detach().clone()) for p in model.to(device).parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer = YellowFin(params)
    for _ in range(3):
        optimizer.step()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            optimizer.step()
        _sync(device)
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort_by, row_limit=15)


def _machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    parts = [
        f"CPU: {cpu} ({os.cpu_count()} logical cores)",
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads",
        f"Python {platform.python_version()}",
        "load average {:.2f} {:.2f} {:.2f} at start".format(*os.getloadavg()),
    ]
    if device.type == "cuda":
        parts.append(f"GPU: {torch.cuda.get_device_name(device)}")
    return "; ".join(parts)


def _table(
    results: dict[str, dict[str, list[float] | str]], sizes: dict[str, int], device: torch.device
) -> str:
    lines = [
        f"| model ({device.type}) | parameters | optimizer | ms/step (median) | IQR (ms) "
        "| × Adam |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for model_name, per_method in results.items():
        adam = per_method.get("Adam (foreach)")
        adam_ms = statistics.median(adam) * 1e3 if isinstance(adam, list) and adam else None
        for name, times in per_method.items():
            if isinstance(times, str):
                lines.append(f"| {model_name} | {sizes[model_name]:,} | {name} | {times} | | |")
                continue
            ms = [t * 1e3 for t in times]
            quartiles = statistics.quantiles(ms, n=4)
            ratio = f"{statistics.median(ms) / adam_ms:.2f}" if adam_ms else "n/a"
            lines.append(
                f"| {model_name} | {sizes[model_name]:,} | {name} | {statistics.median(ms):.3f} "
                f"| {quartiles[0]:.3f}–{quartiles[2]:.3f} | {ratio} |"
            )
    return "\n".join(lines)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--reference", type=Path, help="authors' tuner_utils/yellowfin.py")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--profile", action="store_true", help="append YellowFin's top ops")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)
    if args.repeats < 2 or args.warmup < 3:
        parser.error("need --repeats >= 2 and --warmup >= 3 (YellowFin's steps 0-2 differ)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    return args


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    try:
        methods = _methods(args.reference)
    except UserError as error:
        sys.exit(f"error: {error}")
    results, sizes, profiles = {}, {}, {}
    for model_name in args.models:
        torch.manual_seed(0)
        model = MODELS[model_name]()
        sizes[model_name] = sum(p.numel() for p in model.parameters())
        results[model_name] = _bench_model(model, methods, device, args.warmup, args.repeats)
        if args.profile:
            profiles[model_name] = _profile_yellowfin(model, device)
    report = [
        "# Optimizer step time",
        "",
        _machine(device),
        "",
        f"Command: `python scripts/bench_optimizer.py {' '.join(argv or sys.argv[1:])}`",
        "",
        f"Only `step()` is timed; {args.warmup} warm-up steps, then the median of "
        f"{args.repeats} repeats with methods interleaved; random gradients are copied into "
        "`.grad` before each step.",
        "",
        _table(results, sizes, device),
    ]
    for model_name, table in profiles.items():
        report += [
            "",
            f"## YellowFin top ops, {model_name} (torch.profiler)",
            "",
            "```",
            table,
            "```",
        ]
    text = "\n".join(report) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
