"""The training loop, and when it writes the run's files (:mod:`yfbench.run_contract`).

Read top to bottom, :func:`run` claims the run directory, and :meth:`Trainer.train`
goes through its phases: set-up, resume, then per step the schedule, the update (no host
sync), the buffered train record, and at sync points the flush, the evaluation and the
checkpoint. A run is resumable at any point: the batch of each iteration is a function
of (seed, step), and the checkpoint holds model, optimizer, task state, every RNG, the
divergence watch and the metrics.jsonl prefix, so a resumed run writes exactly the
records an uninterrupted one would have written.

Under torchrun every process runs this same loop on its share of each batch, with the
model wrapped in DistributedDataParallel (:mod:`yfbench.engine.distributed`). Rank 0 alone
claims and writes the run directory; the ranks meet at the sync points (the logged loss,
the flush, the evaluation, the checkpoint) and take every decision there together.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.optim import Optimizer

from yfbench import sweep_signals
from yfbench.config import refuse_mistyped_values, refuse_unknown_keys, validate
from yfbench.data.files import cache_dir, data_dir
from yfbench.engine import checkpoint, environment, provenance
from yfbench.engine.batch_norm import recomputed_statistics
from yfbench.engine.clock import WallClock
from yfbench.engine.device import autocast, check_precision
from yfbench.engine.distributed import ONE_PROCESS, Ranks, joined
from yfbench.engine.divergence import (
    Diverged,
    DivergenceSettings,
    DivergenceWatch,
    finite_parameters,
)
from yfbench.engine.modes import eval_mode, train_mode
from yfbench.engine.optimizers import (
    LrSchedule,
    applied_hyperparameters,
    build_optimizer,
    step_statistics,
    takes_loss,
)
from yfbench.engine.progress import LongRunOnCpu, ProgressBar
from yfbench.engine.run_dir import RunDirectory, identity_of, write_error
from yfbench.engine.run_state import RunState
from yfbench.engine.staleness import StaleGradients
from yfbench.engine.threads import set_threads
from yfbench.engine.train_records import TrainRecords
from yfbench.errors import UserError
from yfbench.fingerprint import file_fingerprint
from yfbench.run_contract import RunIdentity
from yfbench.seeding import seed_global
from yfbench.sinks import MetricsPosition, Sinks
from yfbench.tasks import Task, TaskContext, build_task

log = logging.getLogger("yfbench")
# Signals that stop a run after its current step, with a checkpoint. SIGUSR2 is what
# SLURM (through submitit) sends before a job's time limit.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)


def run(
    cfg: DictConfig,
    run_dir: Path,
    overrides: Sequence[str] = (),
    choices: dict[str, Any] | None = None,
    reference: DictConfig | None = None,
) -> dict[str, Any]:
    """Train (or resume, or skip a finished run) in ``run_dir``; return its summary.

    ``reference`` is the config of the same choices without value overrides: keys and
    types are checked against it (the CLI passes it; Python callers may not). Under
    torchrun every process calls this; only rank 0 claims and identifies ``run_dir``.
    """
    ranks = Ranks.from_environment()
    directory = RunDirectory(run_dir)
    with joined(ranks, cfg.trainer.device), _claimed_by_main(directory, ranks):
        identity = None
        try:
            identity = identity_of(cfg, overrides, choices)
            if reference is not None:
                refuse_unknown_keys(cfg, reference)
                refuse_mistyped_values(cfg, reference)
            validate(cfg)
            if ranks.is_main:
                directory.identify(identity)
        except UserError as error:
            if ranks.is_main:
                directory.record_failure(str(error), identity)
            raise
        # SYNC POINT (several processes): rank 0 says whether the run is already finished.
        finished = ranks.broadcast(directory.finished_summary() if ranks.is_main else None)
        if finished is not None:
            log.info("%s: already %s, skipping", run_dir, finished["status"])
            return finished
        return Trainer(cfg, directory, identity, ranks).train()


def _claimed_by_main(directory: RunDirectory, ranks: Ranks) -> AbstractContextManager:
    """Rank 0 holds the run directory's lock; the other ranks never touch the directory."""
    return directory.claimed() if ranks.is_main else nullcontext(directory)


@dataclass
class Parts:
    """What a run trains: built once per session, restored from the checkpoint on resume."""

    device: torch.device
    task: Task
    train_module: nn.Module  # what the training forward calls: the model, or its DDP wrapper
    optimizer: Optimizer
    schedule: LrSchedule
    scaler: torch.amp.GradScaler
    stale_gradients: StaleGradients
    watch: DivergenceWatch
    step_takes_loss: bool  # a loss-aware optimizer: step(loss=...)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.task.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "stale_gradients": self.stale_gradients.state_dict(),
            "task": self.task.state_dict(),
            "divergence": self.watch.state_dict(),
            "rng": checkpoint.rng_state(),
        }

    def load_state_dict(self, payload: dict[str, Any]) -> None:
        self.task.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scaler.load_state_dict(payload["scaler"])
        self.stale_gradients.load_state_dict(payload["stale_gradients"])
        self.task.load_state_dict(payload["task"])
        self.watch.load_state_dict(payload["divergence"])
        checkpoint.set_rng_state(payload["rng"])


class Trainer:
    """Runs one configured training run in a claimed, identified run directory."""

    def __init__(
        self,
        cfg: DictConfig,
        directory: RunDirectory,
        identity: RunIdentity,
        ranks: Ranks = ONE_PROCESS,
    ) -> None:
        self.cfg = cfg
        self.trainer = cfg.trainer
        self.directory = directory
        self.identity = identity
        self.ranks = ranks
        self.state = RunState()
        self.parts: Parts | None = None
        self.sinks: Sinks | None = None  # rank 0's, once the run is resumed or started
        self.provenance: dict[str, Any] | None = None  # threads, device, data, code segments
        self.records = TrainRecords()
        self.clock = WallClock()
        self.bar: ProgressBar | None = None
        self.long_run: LongRunOnCpu | None = None  # trainer.long_run on a CPU
        self._stop_signal: str | None = None

    # ================================================================ the run
    def train(self) -> dict[str, Any]:
        # A stop signal during set-up (reading data can take minutes) is acted on as soon
        # as set-up ends, so the run is recorded as interrupted (several processes act on
        # it together, at the loop's first flush). Only the main thread may install
        # handlers: a run started from another thread is stopped by its caller.
        in_main_thread = threading.current_thread() is threading.main_thread()
        handlers = (
            {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
            if in_main_thread
            else {}
        )
        try:
            # ---- 1. set-up: device, task (data + model), optimizer and its hooks --------
            self.parts = parts = self._build()
            # ---- 2. resume: the checkpoint and metrics.jsonl are checked before any write -
            position = self._resume(parts)
            # Fresh or resumed, model and optimizer step in train mode (some optimizers
            # start in eval mode).
            train_mode(parts.task.model, parts.optimizer)
            if self.ranks.is_main:
                directory = self.directory
                self.sinks = Sinks.open(self.cfg, directory.path, directory.metrics_path, position)
            if sweep_signals.stopped():  # the sweep was stopped while this run was set up
                self._stop_signal = self._stop_signal or "SIGTERM"
            if self._stop_signal and not self.ranks.distributed:
                self._interrupt(self._stop_signal, "during set-up")
            else:
                # The clock starts after set-up: data, model and logger start-up are not
                # training.
                self.clock.start(earlier_s=self.state.wall_time_s)
                self.bar = self._progress_bar()
                # ---- 3. the loop ------------------------------------------------------
                self._loop(parts)
        except Diverged as error:
            self.state.status, self.state.error = "diverged", str(error)
            self.state.diverged_step = error.step
        except UserError as error:
            self.state.status, self.state.error = "failed", str(error)
            raise
        except OSError as error:  # a full disk, mostly: one message, not a traceback
            self.state.status = "failed"
            failure = write_error(Path(error.filename or self.directory.metrics_path), error)
            self.state.error = str(failure)
            raise failure from error
        except Exception as error:
            self.state.status, self.state.error = "failed", f"{type(error).__name__}: {error}"
            raise
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            self._finish()
        return self._summary()

    def _loop(self, parts: Parts) -> None:
        trainer, state = self.trainer, self.state
        while state.step < trainer.max_steps:
            # a. this step's lr: the recipe's per-epoch decay, or the optimizer's own warm-up +
            #    cosine schedule (host-side numbers only)
            epoch = state.step // parts.task.steps_per_epoch
            parts.schedule.apply(state.step, parts.task.lr_multiplier(epoch))
            # b. forward, backward, optimizer step: nothing waits for the device here
            loss, grad_norm = self._update(parts, state.step)
            state.step += 1
            self.clock.step()
            parts.watch.update(state.step, loss)
            last = state.step == trainer.max_steps
            if state.step % trainer.log_every == 0 or last:
                self.records.add(
                    state.step,
                    self.ranks.average(loss),  # several processes: the mean of their shares
                    {**grad_norm, **(step_statistics(parts.optimizer) or {})},
                    applied_hyperparameters(parts.optimizer),
                    self.clock.total_s(),
                )
            evaluate = bool(trainer.eval_every) and state.step % trainer.eval_every == 0 or last
            periodic = bool(trainer.checkpoint_every) and state.step % trainer.checkpoint_every == 0
            stop = self._stop_signal  # read once: a signal may arrive at any moment
            flush = state.step % trainer.flush_every == 0 or evaluate or periodic or last
            if self.ranks.distributed and not flush:
                stop = None  # several processes stop together, at a flush where all learn of it
            # c. SYNC POINT: buffered records and the divergence flags, one transfer; with
            #    several processes, the earliest divergence and any stop signal of any rank
            if flush or stop:
                stop = self._flush(stop)
            # d. SYNC POINT: evaluation (several processes: rank 0's metrics, sent to all)
            if evaluate:
                self._evaluate(parts)
            # e. SYNC POINT: never checkpoint (or finish with) non-finite parameters (every
            #    rank holds the same ones); a checkpoint gathers every rank's own state
            if (stop or periodic or last) and not finite_parameters(parts.task.model):
                raise Diverged(state.step, "the parameters became non-finite")
            if last and not stop:
                parts.watch.check_end(state.step)
            if stop or periodic:
                self._save(parts)
            if stop:
                self._interrupt(stop, f"at step {state.step}")
                return
        state.status = "completed"

    # ================================================================ phases
    def _build(self) -> Parts:
        """Device, task, model, optimizer, scaler and simulators, in that order."""
        cfg, trainer = self.cfg, self.trainer
        device = self.ranks.device(trainer.device)
        set_threads(trainer.threads)
        # Process-wide, so set either way: a run's numerics follow its own config.
        if not torch.set_flush_denormal(trainer.flush_denormal) and trainer.flush_denormal:
            log.warning("trainer.flush_denormal: this CPU cannot flush subnormals; ignored")
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if device.type == "cpu" and trainer.long_run:
            self.long_run = LongRunOnCpu(trainer.max_steps)
            self.long_run.warn(trainer)
        seed_global(cfg.seed)
        ctx = TaskContext(
            seed=cfg.seed,
            device=device,
            data_dir=data_dir(),
            cache_dir=cache_dir(),
            channels_last=trainer.channels_last,
            rank=self.ranks.rank,
            world_size=self.ranks.world_size,
        )
        task = build_task(cfg.task, ctx)
        self.ranks.own_random_stream(cfg.seed)
        check_precision(trainer.precision, device, cfg.task.name, task.cpu_precisions)
        model = task.model.to(device)
        if trainer.channels_last:
            model.to(memory_format=torch.channels_last)
        if trainer.compile:
            model.compile()
        # Several processes: DDP starts every rank from rank 0's parameters, before any
        # optimizer sees them.
        train_module = self.ranks.wrap(model, device)
        settings = OmegaConf.to_container(cfg.optimizer, resolve=True)
        optimizer = build_optimizer(model.parameters(), settings, model=model)
        return Parts(
            device=device,
            task=task,
            train_module=train_module,
            optimizer=optimizer,
            schedule=LrSchedule(optimizer, settings.get("schedule"), trainer.max_steps),
            scaler=torch.amp.GradScaler(device.type, enabled=trainer.precision == "fp16"),
            stale_gradients=StaleGradients(trainer.staleness),
            watch=DivergenceWatch(DivergenceSettings(**trainer.divergence), device),
            step_takes_loss=takes_loss(optimizer),
        )

    def _resume(self, parts: Parts) -> MetricsPosition | None:
        """Restore the checkpoint if there is one; its metrics position, or None."""
        path = self.directory.checkpoint_path
        # SYNC POINT (several processes): rank 0 reads and checks it, every rank restores it.
        found = self.ranks.broadcast(self._read_checkpoint() if self.ranks.is_main else None)
        session = provenance.Provenance.of(parts.device, parts.task.data_source)
        if found is None:
            self.provenance = provenance.start(session)
            return None
        payload, position = found
        step = int(payload["run_state"]["step"])
        self.provenance = provenance.resume(payload.get("provenance"), session, step, path)
        payload = checkpoint.for_rank(payload, path, self.ranks.rank, self.ranks.world_size)
        try:
            parts.load_state_dict(payload)
        except (KeyError, RuntimeError, ValueError) as error:
            raise UserError(
                f"checkpoint {path} does not fit this run's model or optimizer ({error}). "
                f"{checkpoint.RESTART}"
            ) from error
        self.state = RunState.from_checkpoint(payload["run_state"])
        log.info("resuming %s from step %d", self.directory.path, self.state.step)
        return position

    def _read_checkpoint(self) -> tuple[dict[str, Any], MetricsPosition] | None:
        path = self.directory.checkpoint_path
        return checkpoint.load(path, self.identity.config_hash) if path.exists() else None

    def _update(self, parts: Parts, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One optimizer step on the batch of iteration ``step``.

        Returns the loss and, where the task clips, the gradient norm before clipping
        (device tensors), so every optimizer's record says whether the clip binds.
        """
        task, optimizer, scaler = parts.task, parts.optimizer, parts.scaler
        with autocast(self.trainer.precision, parts.device):
            loss = task.train_loss(parts.train_module, step)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        # Simulated asynchrony: the update applies the gradient of `staleness` steps ago.
        parts.stale_gradients.swap(task.model.parameters())
        grad_norm = {}
        if task.grad_clip_norm is not None:
            scaler.unscale_(optimizer)
            grad_norm["grad_norm"] = torch.nn.utils.clip_grad_norm_(
                task.model.parameters(), task.grad_clip_norm
            )
        extra = {"loss": loss.detach()} if parts.step_takes_loss else {}
        scaler.step(optimizer, **extra)  # skipped (never reaching the optimizer) on fp16 overflow
        scaler.update()
        return loss.detach().float(), grad_norm

    def _flush(self, stop: str | None) -> str | None:
        """Write the buffered train records; raise Diverged if the device flags say so.

        Returns the stop signal every rank acts on (``stop`` itself in one process).
        """
        parts, state = self.parts, self.state
        flags, stop = self.ranks.agree(parts.watch.flags(), stop)
        records, (first_step, reason) = self.records.flush(flags)
        self._emit(records)
        for record in records:
            if "skipped_steps" in record:
                parts.watch.check_skips(record["step"], record["skipped_steps"])
        if records:
            state.final["train_loss"] = records[-1]["loss"]
            self.bar.show(records[-1])
        parts.watch.check(int(first_step), int(reason))
        if self.long_run is not None:
            self.long_run.estimate(self.clock.session_steps, self.clock.session_s(), state.step)
        return stop

    def _evaluate(self, parts: Parts) -> None:
        # Several processes: rank 0 evaluates (its model is the checkpointed one: batch-norm
        # statistics are per rank) and every rank takes the same decisions on its metrics.
        with eval_mode(parts.task.model, parts.optimizer):
            # An optimizer that evaluates at another point asks for batch-norm statistics
            # there (Schedule-Free's x).
            recompute = getattr(parts.optimizer, "recompute_batch_norm", 0)
            with recomputed_statistics(parts.task, recompute, self.state.step):
                metrics = self.ranks.broadcast(
                    parts.task.evaluate() if self.ranks.is_main else None
                )
        state = self.state
        record = {
            "step": state.step,
            "split": "valid",
            "epoch": round(state.step / parts.task.steps_per_epoch, 4),
            **metrics,
            "time_s": round(self.clock.total_s(), 4),
        }
        self._emit([record])
        state.observe_validation(metrics, parts.task.metrics)
        DivergenceWatch.check_validation(state.step, metrics)

    def _save(self, parts: Parts) -> None:
        run_state = {**self.state.checkpoint(), "wall_time_s": self.clock.total_s()}
        # The optimizer's evaluation point is what is saved; the payload holds live tensors,
        # so it is written before the optimizer goes back to train mode.
        with eval_mode(parts.task.model, parts.optimizer):
            payload = {
                **parts.state_dict(),
                "run_state": run_state,
                "provenance": provenance.up_to(self.provenance, self.state.step),
            }
            # SYNC POINT (several processes): every rank's own state, gathered on rank 0.
            every_rank = self.ranks.gather({key: payload[key] for key in checkpoint.PER_RANK})
            if self.ranks.is_main:
                checkpoint.save(
                    self.directory.checkpoint_path,
                    checkpoint.with_ranks(payload, every_rank),
                    self.identity.config_hash,
                    self.sinks.position(),
                )

    # ================================================================ bookkeeping
    def _emit(self, records: list[dict[str, Any]]) -> None:
        if self.ranks.is_main:
            self.sinks.emit(records)

    def _progress_bar(self) -> ProgressBar:
        label = f"{self.cfg.task.name}/{self.cfg.optimizer.name}"
        total, start = self.trainer.max_steps, self.state.step
        return ProgressBar(self.trainer.progress, self.ranks.is_main, label, total, start)

    def _interrupt(self, signal_name: str, when: str) -> None:
        self.state.status = "interrupted"
        self.state.error = f"stopped by {signal_name} {when}; rerun to resume"

    def _on_signal(self, signum: int, frame: Any) -> None:
        """First signal: stop after this step, with a checkpoint. A second one: stop now."""
        del frame
        self._stop_signal = signal.Signals(signum).name
        signal.signal(signum, signal.SIG_DFL)

    def _finish(self) -> None:
        """Summary, closed sinks (rank 0's): runs however the loop ended."""
        if self.bar is not None:
            self.bar.close()
        self.clock.stop()
        if self.clock.started:
            self.state.wall_time_s = self.clock.total_s()
        if not self.ranks.is_main:
            return
        if self.sinks is None and self.directory.checkpoint_path.exists():
            return  # not resumed: the interrupted run's summary stays as it was
        try:
            self.directory.write_summary(self._summary())
        except UserError as error:  # e.g. the disk is full: say so, keep the first error
            log.error("could not write %s: %s", self.directory.summary_path, error)
        if self.sinks is not None:
            self.sinks.close(succeeded=self.state.status == "completed")

    def _summary(self) -> dict[str, Any]:
        cfg, parts = self.cfg, self.parts
        return {
            **self.state.summary(),
            "steps_per_s": self.clock.steps_per_s(),
            "processes": self.ranks.world_size,
            "task": cfg.task.name,
            "scale": cfg.scale.name,
            "optimizer": cfg.optimizer.name,
            "seed": cfg.seed,
            "data_source": parts.task.data_source if parts else None,
            # The task's declared validation metrics: the analysis reads them from here.
            "metrics": dict(parts.task.metrics) if parts else None,
            "target_metric": parts.task.target_metric if parts else None,
            "device": environment.describe_device(parts.device) if parts else None,
            "git": environment.git_state(),
            "provenance": provenance.up_to(self.provenance, self.state.step)
            if self.provenance
            else None,
            # What the analysis verifies metrics.jsonl against (records, last step, sha256).
            "metrics_file": file_fingerprint(self.directory.metrics_path) if self.sinks else None,
            "versions": environment.versions(),
            "command": environment.command_line(),
        }
