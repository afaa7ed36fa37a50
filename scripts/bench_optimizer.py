"""Time one ``step()`` of YellowFin (eager and fused), Adam and momentum SGD on the paper's models.

Only the optimizer step is timed: random gradients (from a small pool, so consecutive steps
differ) are copied into ``.grad`` before each step, outside the timer. Methods are
interleaved repeat by repeat, in rotating order, after a warm-up that covers YellowFin's
step-0/1/2 code paths and fused YellowFin's compilation (its first step, reported as the
compile time); the table reports the median and the ratio to ``Adam(fused=True)``.
``--reference`` adds the authors' ``tuner_utils/yellowfin.py`` from a local clone of
JianGoForIt/YellowFin_Pytorch. The Markdown report records the machine, its load before
and after, and the exact command.

    python scripts/bench_optimizer.py --threads 1 --repeats 30   # -> results/perf/optimizer_cpu.md
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import inspect
import io
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from yfbench.errors import UserError
from yfbench.models.lstm import LSTMLanguageModel
from yfbench.models.resnet import CifarResNet, units_for_depth
from yfbench.optim import YellowFin

MODELS: dict[str, Callable[[], nn.Module]] = {
    "cifar10_resnet110": lambda: CifarResNet(
        num_classes=10, units_per_stage=units_for_depth(110, bottleneck=False), bottleneck=False
    ),
    "ptb_lstm": lambda: LSTMLanguageModel(10000, 200, 2, embed_size=200),
    "cifar10_resnet32": lambda: CifarResNet(
        num_classes=10, units_per_stage=units_for_depth(32, bottleneck=False), bottleneck=False
    ),
}
DEFAULT_MODELS = ["cifar10_resnet110", "ptb_lstm"]
BASELINE = "Adam (fused)"
FUSED_YELLOWFIN = "YellowFin (fused)"
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
        "YellowFin (eager)": lambda params: YellowFin(params),
        FUSED_YELLOWFIN: lambda params: YellowFin(params, fused=True),
        "Adam (foreach)": lambda params: torch.optim.Adam(params, lr=1e-3, foreach=True),
        BASELINE: lambda params: torch.optim.Adam(params, lr=1e-3, fused=True),
        "SGD momentum 0.9 (foreach)": lambda params: torch.optim.SGD(
            params, lr=1e-2, momentum=0.9, foreach=True
        ),
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
            p.grad.copy_(g)  # fused YellowFin's .grad are views of its flat buffer
        _sync(device)
        with contextlib.redirect_stdout(io.StringIO()):  # the reference prints on clipping
            start = time.perf_counter()
            self.optimizer.step()
            _sync(device)
            elapsed = time.perf_counter() - start
        self.steps += 1
        return elapsed


@dataclass
class _Result:
    """Per method: timed step durations (s), first-step duration (s), or an error text."""

    times: dict[str, list[float]] = field(default_factory=dict)
    first_step: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _bench_model(
    model: nn.Module,
    methods: dict[str, Callable[[list[Tensor]], object]],
    device: torch.device,
    warmup: int,
    repeats: int,
) -> _Result:
    base = [p for p in model.to(device).parameters() if p.requires_grad]
    gen = torch.Generator(device=device).manual_seed(0)
    pool = [
        [torch.randn(p.shape, generator=gen, device=device) for p in base] for _ in range(GRAD_POOL)
    ]
    runners: dict[str, _Runner] = {}
    result = _Result()
    for name, factory in methods.items():
        try:
            runners[name] = _Runner(base, factory)
            result.times[name] = []
        except Exception as error:  # report, do not abort the other methods
            result.errors[name] = f"failed to construct: {error!r}"
    for rep in range(warmup + repeats):
        names = list(runners)
        for name in names[rep % len(names) :] + names[: rep % len(names)] if names else []:
            runner = runners[name]
            try:
                elapsed = runner.step(pool[runner.steps % GRAD_POOL], device)
            except Exception as error:
                result.errors[name] = f"step {runner.steps} failed: {error!r}"
                result.times.pop(name)
                del runners[name]
                continue
            if rep == 0:
                result.first_step[name] = elapsed
            elif rep >= warmup:
                result.times[name].append(elapsed)
    return result


def _profile_yellowfin(model: nn.Module, device: torch.device, fused: bool, steps: int = 10) -> str:
    """torch.profiler's top operators over ``steps`` YellowFin steps (after warm-up).

    The gradients are set once: ``step()`` leaves ``.grad`` alone, so only the step is profiled.
    """
    params = [nn.Parameter(p.detach().clone()) for p in model.to(device).parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer = YellowFin(params, fused=fused)
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


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _machine(device: torch.device) -> list[str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    lines = [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical cores ({usable} usable by this process)",
        f"- torch {torch.__version__}, Python {platform.python_version()}, "
        f"{torch.get_num_threads()} intra-op thread(s)",
    ]
    if device.type == "cuda":
        lines.append(f"- GPU: {torch.cuda.get_device_name(device)}")
    return lines


def _ms(seconds: list[float]) -> tuple[float, float, float]:
    """Median and quartiles in milliseconds."""
    ms = [t * 1e3 for t in seconds]
    quartiles = statistics.quantiles(ms, n=4)
    return statistics.median(ms), quartiles[0], quartiles[2]


def _table(results: dict[str, _Result], sizes: dict[str, tuple[int, int]], device: str) -> str:
    lines = [
        f"| model ({device}) | parameters (tensors) | optimizer | ms/step (median) | IQR (ms) "
        f"| × {BASELINE} |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for model_name, result in results.items():
        numel, tensors = sizes[model_name]
        where = f"| {model_name} | {numel:,} ({tensors}) "
        baseline = result.times.get(BASELINE)
        base_ms = _ms(baseline)[0] if baseline else None
        for name, times in result.times.items():
            median, low, high = _ms(times)
            ratio = f"{median / base_ms:.2f}" if base_ms else "n/a"
            lines.append(f"{where}| {name} | {median:.3f} | {low:.3f}–{high:.3f} | {ratio} |")
        lines += [f"{where}| {name} | {error} | | |" for name, error in result.errors.items()]
    return "\n".join(lines)


def _compile_lines(results: dict[str, _Result], cache: str) -> list[str]:
    parts = [
        f"{model_name} {result.first_step[FUSED_YELLOWFIN]:.1f} s"
        for model_name, result in results.items()
        if FUSED_YELLOWFIN in result.first_step
    ]
    if not parts:
        return []
    return [
        f"- First step of {FUSED_YELLOWFIN} (torch.compile of its graphs, in model order; "
        f"{cache}): {', '.join(parts)}"
    ]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--reference", type=Path, help="authors' tuner_utils/yellowfin.py")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=DEFAULT_MODELS)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1)")
    parser.add_argument("--profile", action="store_true", help="append YellowFin's top ops")
    parser.add_argument(
        "--cold-compile",
        action="store_true",
        help="compile into an empty inductor cache, so the compile time is a cold one",
    )
    parser.add_argument(
        "--out", type=Path, help="Markdown report (default results/perf/optimizer_<device>.md)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 2 or args.warmup < 3:
        parser.error("need --repeats >= 2 and --warmup >= 3 (YellowFin's steps 0-2 differ)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    args.out = args.out or Path("results") / "perf" / f"optimizer_{args.device}.md"
    return args


def main(argv: list[str] | None = None) -> None:
    command = shlex.join(["python", "scripts/bench_optimizer.py", *(argv or sys.argv[1:])])
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    try:
        methods = _methods(args.reference)
    except UserError as error:
        sys.exit(f"error: {error}")
    with contextlib.ExitStack() as stack:
        if args.cold_compile:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="inductor-")
            )
        cache = "empty inductor cache" if args.cold_compile else "inductor's on-disk cache as found"
        started = datetime.datetime.now(datetime.timezone.utc)
        load_before = os.getloadavg()
        results, sizes, profiles = {}, {}, {}
        for model_name in args.models:
            torch.manual_seed(0)
            model = MODELS[model_name]()
            params = list(model.parameters())
            sizes[model_name] = (sum(p.numel() for p in params), len(params))
            results[model_name] = _bench_model(model, methods, device, args.warmup, args.repeats)
            if args.profile:
                for fused in (False, True):
                    profiles[(model_name, fused)] = _profile_yellowfin(model, device, fused)
        load_after = os.getloadavg()
    report = [
        f"# Optimizer step time ({args.device})",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        f"- Command: `{command}`",
        *_machine(device),
        "- Load average (1, 5, 15 min): before {:.2f} {:.2f} {:.2f}, ".format(*load_before)
        + "after {:.2f} {:.2f} {:.2f}".format(*load_after),
        *_compile_lines(results, cache),
        "",
        f"Only `step()` is timed; {args.warmup} warm-up steps, then the median of "
        f"{args.repeats} repeats with methods interleaved; random gradients are copied into "
        "`.grad` before each step.",
        "",
        _table(results, sizes, args.device),
    ]
    for (model_name, fused), table in profiles.items():
        mode = "fused" if fused else "eager"
        report += ["", f"## YellowFin ({mode}) top ops, {model_name}", "", "```", table, "```"]
    text = "\n".join(report) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
