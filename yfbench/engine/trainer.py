"""The training loop and the run contract (metrics.jsonl, summary.json, checkpoint.pt).

A run is resumable at any point: the batch of each iteration is a function of
(seed, step), and the checkpoint holds model, optimizer, task state, every RNG and
the metrics.jsonl offset, so a resumed run rewrites exactly the records an
uninterrupted run would have written.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from yfbench.data.files import cache_dir, data_dir
from yfbench.engine import checkpoint
from yfbench.engine.staleness import StaleGradients
from yfbench.errors import UserError
from yfbench.logging import JsonlSink, WandbSink
from yfbench.logging.jsonl import json_safe
from yfbench.optim.registry import build_optimizer, hyperparameters, set_lr_multiplier
from yfbench.tasks import TaskContext, build_task

FINISHED = ("completed", "diverged")
LOWER_IS_BETTER = {"loss", "perplexity", "dist_to_opt"}
# Keys that may change between a run and its resumption without changing its results.
NON_SEMANTIC_KEYS = ("trainer.checkpoint_every", "trainer.progress", "logger", "analysis")


class Diverged(Exception):
    """Loss or parameters became NaN/inf."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserError(
            f"trainer.device={name!r} is not a device: use auto, cpu, cuda or cuda:N"
        ) from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"trainer.device={name} but no CUDA device is available; use cpu or auto")
    return device


def validate(cfg: DictConfig) -> None:
    """Reject out-of-range trainer values before anything is built."""
    trainer = cfg.trainer
    for key in ("max_steps", "log_every", "eval_every", "checkpoint_every"):
        value = trainer[key]
        minimum = 1 if key in ("max_steps", "log_every") else 0
        if not isinstance(value, int) or value < minimum:
            raise UserError(f"trainer.{key} must be an integer >= {minimum}, got {value!r}")
    if trainer.precision not in ("fp32", "bf16", "fp16"):
        raise UserError(f"trainer.precision must be fp32, bf16 or fp16, got {trainer.precision!r}")
    staleness = trainer.staleness
    if not isinstance(staleness, int) or staleness < 0:
        raise UserError(f"trainer.staleness must be an integer >= 0, got {staleness!r}")
    if staleness and trainer.precision == "fp16":
        raise UserError(
            "trainer.staleness > 0 cannot be combined with precision=fp16 (delayed gradients "
            "would be unscaled with a later loss scale); use bf16 or fp32"
        )
    if cfg.optimizer.name == "yellowfin_closed_loop" and cfg.optimizer.staleness != staleness:
        raise UserError(
            f"optimizer.staleness={cfg.optimizer.staleness} must equal trainer.staleness="
            f"{staleness} (closed-loop YellowFin pairs each gradient with the step it was "
            "computed for); set both, e.g. trainer=async"
        )
    if not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {cfg.seed!r}")


def comparable_config(cfg: DictConfig) -> dict[str, Any]:
    """The config minus keys that do not affect results (used to guard resumption)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for dotted in NON_SEMANTIC_KEYS:
        *parents, leaf = dotted.split(".")
        node = plain
        for parent in parents:
            node = node.get(parent, {})
        node.pop(leaf, None)
    return plain


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(json_safe(payload), indent=2) + "\n"
    checkpoint.write_atomic(path, text.encode())


class _SkipTracker:
    """Declares divergence when YellowFin skipped every step for a long stretch."""

    limit = 50

    def __init__(self, step: int) -> None:
        self.last_step, self.last_skipped, self.consecutive = step, None, 0

    def update(self, step: int, skipped: int) -> None:
        if self.last_skipped is not None and skipped - self.last_skipped == step - self.last_step:
            self.consecutive += step - self.last_step
        else:
            self.consecutive = 0
        self.last_step, self.last_skipped = step, skipped
        if self.consecutive >= self.limit:
            raise Diverged(
                f"the optimizer skipped every step from {step - self.consecutive + 1} to {step} "
                "(non-finite gradients or statistics)"
            )


class Trainer:
    """Runs one configured training run inside ``run_dir``."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.summary_path = self.run_dir / "summary.json"
        self.checkpoint_path = self.run_dir / "checkpoint.pt"
        self._stop_signal: str | None = None

    # ---------------------------------------------------------------- entry point
    def run(self) -> dict[str, Any]:
        """Train (or resume, or skip a finished run) and return the summary."""
        self._ensure_writable()
        with open(self.run_dir / ".lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                raise UserError(
                    f"{self.run_dir} is in use by another yfbench process; wait for it to "
                    "finish (or stop it) before running this command again"
                ) from error
            return self._run_locked()

    def _run_locked(self) -> dict[str, Any]:
        try:
            validate(self.cfg)
        except UserError as error:
            if not self.summary_path.exists():  # never overwrite a finished run's summary
                failed = {"status": "failed", "steps": 0, "error": str(error)}
                _write_json_atomic(self.summary_path, failed)
            raise
        previous = json.loads(self.summary_path.read_text()) if self.summary_path.exists() else {}
        finished = previous.get("status") in FINISHED
        self._guard_config(protect=finished or self.checkpoint_path.exists())
        if finished:
            print(f"[yfbench] {self.run_dir}: already {previous['status']}, skipping")
            return previous
        return self._train()

    def _on_signal(self, signum: int, frame: Any) -> None:
        """First signal: stop after this step, with a checkpoint. A second one: stop now."""
        del frame
        self._stop_signal = signal.Signals(signum).name
        signal.signal(signum, signal.SIG_DFL)

    def _ensure_writable(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            probe = self.run_dir / ".write_test"
            probe.write_text("")
            probe.unlink()
        except OSError as error:
            raise UserError(
                f"cannot write to the run directory {self.run_dir} ({error}); "
                "pick a writable one with hydra.run.dir=... (or hydra.sweep.dir=... with -m)"
            ) from error

    def _guard_config(self, protect: bool) -> None:
        """Refuse to continue (or skip as done) a run made with another config.

        ``protect`` is false when the directory holds nothing worth keeping (no checkpoint,
        no finished run): then the new config simply replaces the old one.
        """
        snapshot = self.run_dir / "run_config.json"
        current = comparable_config(self.cfg)
        if protect and snapshot.exists():
            changed = _differences(json.loads(snapshot.read_text()), current)
            if changed:
                raise UserError(
                    f"{self.run_dir} already holds a run with a different config "
                    f"(differs in: {', '.join(changed)}). Resuming it would mix two runs: "
                    "use another hydra.run.dir=..., or delete that directory."
                )
        else:
            _write_json_atomic(snapshot, current)

    # ---------------------------------------------------------------- the loop
    def _train(self) -> dict[str, Any]:
        cfg = self.cfg
        started = time.perf_counter()
        sink = JsonlSink(self.run_dir / "metrics.jsonl")
        wandb = self._wandb_sink()
        summary: dict[str, Any] = {"status": "failed", "steps": 0, "error": None}
        progress = {"step": 0, "wall_time_s": 0.0, "best": {}, "final": {}}
        session_steps = 0
        base_wall = 0.0  # wall time of earlier sessions of this run (resumed runs)
        data_source = device = None
        handlers = {}
        try:
            device = resolve_device(cfg.trainer.device)
            if device.type == "cuda":
                torch.backends.cudnn.benchmark = True
            torch.manual_seed(cfg.seed)
            ctx = TaskContext(
                seed=cfg.seed,
                device=device,
                data_dir=data_dir(),
                cache_dir=cache_dir(),
                channels_last=cfg.trainer.channels_last,
            )
            task = build_task(cfg.task, ctx)
            data_source = getattr(task, "data_source", None)
            model = task.model.to(device)
            if cfg.trainer.channels_last:
                model.to(memory_format=torch.channels_last)
            optimizer = build_optimizer(model.parameters(), OmegaConf.to_container(cfg.optimizer))
            scaler = torch.amp.GradScaler(device.type, enabled=cfg.trainer.precision == "fp16")
            self.stale_gradients = StaleGradients(cfg.trainer.staleness)
            if self.checkpoint_path.exists():
                progress = self._resume(task, optimizer, scaler, sink)
            else:
                sink.truncate(0)
            step = progress["step"]
            summary["steps"] = step
            base_wall = progress["wall_time_s"]
            bar = self._progress_bar(step)
            diverged = torch.zeros((), dtype=torch.bool, device=device)
            skips = _SkipTracker(step)
            for sig in (signal.SIGTERM, signal.SIGINT):
                handlers[sig] = signal.signal(sig, self._on_signal)
            while step < cfg.trainer.max_steps:
                set_lr_multiplier(optimizer, task.lr_multiplier(step // task.steps_per_epoch))
                loss = self._update(task, optimizer, scaler, step)
                diverged |= ~torch.isfinite(loss.detach())
                step += 1
                session_steps += 1
                summary["steps"] = step
                wall = base_wall + time.perf_counter() - started
                checkpoint_every = cfg.trainer.checkpoint_every
                periodic = bool(checkpoint_every) and step % checkpoint_every == 0
                last = step == cfg.trainer.max_steps
                if step % cfg.trainer.log_every == 0 or last:
                    record = self._train_record(step, loss, optimizer, wall)
                    self._emit(record, sink, wandb)
                    progress["final"]["train_loss"] = record["loss"]
                    bar.update(step - bar.n)
                    bar.set_postfix(loss=record["loss"], lr=record["lr"], mu=record["momentum"])
                    skips.update(step, record.get("skipped_steps", 0))
                    if bool(diverged):
                        raise Diverged(f"the loss became non-finite by step {step}")
                eval_every = cfg.trainer.eval_every
                if (eval_every and step % eval_every == 0) or last:
                    self._evaluate(task, step, wall, progress, sink, wandb)
                stop = self._stop_signal  # read once: a signal may arrive at any moment
                if stop or periodic or last:
                    # Never checkpoint (or finish with) a diverged state; this is a pass over
                    # the parameters, so it runs at these points only.
                    if bool(diverged) or not _finite_parameters(model):
                        raise Diverged(f"loss or parameters became non-finite by step {step}")
                if stop or periodic:
                    progress.update(step=step, wall_time_s=wall)
                    self._save(task, optimizer, scaler, sink, progress)
                if stop:
                    summary["status"] = "interrupted"
                    summary["error"] = f"stopped by {stop} at step {step}; rerun to resume"
                    break
            else:
                summary["status"] = "completed"
            bar.close()
        except Diverged as error:
            summary.update(status="diverged", error=str(error))
        except UserError as error:
            summary.update(status="failed", error=str(error))
            raise
        except Exception as error:  # noqa: BLE001 - recorded, then re-raised for the runner
            summary.update(status="failed", error=f"{type(error).__name__}: {error}")
            raise
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            elapsed = time.perf_counter() - started
            summary.update(
                wall_time_s=base_wall + elapsed,
                steps_per_s=session_steps / elapsed if elapsed > 0 else 0.0,
                final=progress["final"],
                best=progress["best"],
                device=_describe(device) if device is not None else None,
                task=cfg.task.name,
                optimizer=cfg.optimizer.name,
                seed=cfg.seed,
                data_source=data_source,
            )
            _write_json_atomic(self.summary_path, summary)
            sink.close()
            wandb.close(exit_code=0 if summary["status"] in FINISHED else 1)
        return summary

    def _update(self, task, optimizer, scaler, step: int) -> torch.Tensor:  # noqa: ANN001
        """One optimizer step on the batch of iteration ``step``; returns the loss."""
        precision = self.cfg.trainer.precision
        device_type = next(task.model.parameters()).device.type
        if precision == "fp32":
            autocast = nullcontext()
        else:
            dtype = torch.bfloat16 if precision == "bf16" else torch.float16
            autocast = torch.autocast(device_type, dtype=dtype)
        with autocast:
            loss = task.train_loss(step)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        # Simulated asynchrony: the update applies the gradient of `staleness` steps ago.
        self.stale_gradients.swap(task.model.parameters())
        if task.grad_clip_norm is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(task.model.parameters(), task.grad_clip_norm)
        scaler.step(optimizer)  # skipped (never reaching the optimizer) on fp16 overflow
        scaler.update()
        return loss.float()

    # ---------------------------------------------------------------- records
    def _train_record(self, step, loss, optimizer, wall) -> dict[str, Any]:  # noqa: ANN001
        record = {"step": step, "split": "train", "loss": float(loss.detach())}
        record.update(hyperparameters(optimizer))
        record["time_s"] = round(wall, 4)
        return record

    def _evaluate(self, task, step, wall, progress, sink, wandb) -> None:  # noqa: ANN001
        metrics = task.evaluate()
        epoch = round(step / task.steps_per_epoch, 4)
        record = {
            "step": step,
            "split": "valid",
            "epoch": epoch,
            **metrics,
            "time_s": round(wall, 4),
        }
        self._emit(record, sink, wandb)
        best = progress["best"]
        for key, value in metrics.items():
            lower = key in LOWER_IS_BETTER
            if math.isfinite(value) and (
                key not in best or (value < best[key] if lower else value > best[key])
            ):
                best[key] = value
        progress["final"].update({f"valid_{k}": v for k, v in metrics.items()})

    @staticmethod
    def _emit(record: dict[str, Any], sink: JsonlSink, wandb: WandbSink) -> None:
        sink.log(record)
        wandb.log(record)

    def _progress_bar(self, start: int) -> tqdm:
        setting = self.cfg.trainer.progress
        show = sys.stderr.isatty() if setting == "auto" else bool(setting)
        label = f"{self.cfg.task.name}/{self.cfg.optimizer.name}"
        return tqdm(total=self.cfg.trainer.max_steps, initial=start, disable=not show, desc=label)

    def _wandb_sink(self) -> WandbSink | _NullSink:
        settings = self.cfg.logger.wandb
        if not settings.enabled:
            return _NullSink()
        config = OmegaConf.to_container(self.cfg, resolve=True)
        return WandbSink(self.run_dir, config, settings.project, settings.entity, settings.mode)

    # ---------------------------------------------------------------- checkpoints
    def _save(self, task, optimizer, scaler, sink, progress) -> None:  # noqa: ANN001
        checkpoint.save_atomic(
            self.checkpoint_path,
            {
                "model": task.model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "stale_gradients": self.stale_gradients.state_dict(),
                "task": task.state_dict(),
                "rng": checkpoint.rng_state(),
                "metrics_position": sink.position(),
                "progress": progress,
            },
        )

    def _resume(self, task, optimizer, scaler, sink) -> dict[str, Any]:  # noqa: ANN001
        payload = checkpoint.load(self.checkpoint_path)
        try:
            task.model.load_state_dict(payload["model"])
            optimizer.load_state_dict(payload["optimizer"])
            scaler.load_state_dict(payload["scaler"])
            self.stale_gradients.load_state_dict(payload["stale_gradients"])
            task.load_state_dict(payload["task"])
        except (KeyError, RuntimeError, ValueError) as error:
            raise UserError(
                f"checkpoint {self.checkpoint_path} does not fit this run's model or optimizer "
                f"({error}). Delete it to restart from step 0."
            ) from error
        checkpoint.set_rng_state(payload["rng"])
        sink.truncate(payload["metrics_position"])
        progress = payload["progress"]
        print(f"[yfbench] resuming {self.run_dir} from step {progress['step']}")
        return progress


class _NullSink:
    def log(self, record: dict[str, Any]) -> None:
        del record

    def close(self, exit_code: int = 0) -> None:
        del exit_code


def _finite_parameters(model: torch.nn.Module) -> bool:
    norms = torch._foreach_norm([p.detach() for p in model.parameters()])
    return bool(torch.isfinite(torch.stack(norms)).all())


def _describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({os.cpu_count()} cores, torch {torch.__version__})"
