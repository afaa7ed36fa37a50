"""``python -m yfbench.torchrun``: torchrun for multi-process runs, stopped cleanly by a signal.

It takes torchrun's own arguments and runs torchrun's own launcher::

    python -m yfbench.torchrun --standalone --nproc_per_node=2 -m yfbench task=ptb_lstm

Only a stop signal ends differently. torchrun's agent passes a SIGTERM or SIGINT on to its
processes, waits for them, then ends with a traceback of its own exception and exit
status 1. Each process's trainer stops the run at its next flush with a checkpoint and
records it as ``interrupted`` (yfbench/engine/trainer.py); here the agent then prints one
line (what stopped it, how to resume) and exits 130, as a single-process run does.
Against torchrun's defaults:

- SIGUSR2 (SLURM's warning before the time limit) is handled too, unless
  ``--signals_to_handle`` is given;
- the signal passed on is a *different* stop signal, as a sweep's main process passes on
  (yfbench/sweep_signals.py: SIGUSR2 for SIGTERM and SIGINT, SIGTERM for SIGUSR2): where
  the same signal also reached the processes directly (SLURM signals every process of a
  job), a repeat of it would be a second signal, which stops a process at once;
- the agent waits up to ``SHUTDOWN_TIMEOUT_S`` for its processes to reach their next
  flush and save, not 30 s, unless ``--shutdown_timeout`` or
  ``TORCH_ELASTIC_SHUTDOWN_TIMEOUT`` says otherwise (after it, torchrun kills them, and
  a rerun resumes from the last periodic checkpoint);
- a second stop signal stops at once: the processes are killed and the agent ends by
  that signal, as a single-process run does on a second signal.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType

from torch.distributed import run as torch_run
from torch.distributed.elastic.multiprocessing import api as elastic_api
from torch.distributed.elastic.multiprocessing.errors import record

from yfbench.sweep_signals import PASSED_ON, descendants

SHUTDOWN_TIMEOUT_S = 600
SHUTDOWN_TIMEOUT_ENV = "TORCH_ELASTIC_SHUTDOWN_TIMEOUT"
STOP_EXIT_CODE = 130  # as a single-process run stopped by a signal (yfbench/__main__.py)
# torchrun's own account of a stop, which the one line below replaces.
_STOP_CHATTER = (
    "Received %s death signal",
    "Sending process %s closing signal",
    "Closing process %s via signal",
)
_TORCH_LOGGERS = (
    "torch.distributed.elastic.agent.server.api",
    "torch.distributed.elastic.multiprocessing.api",
)

_stops: list[int] = []  # the stop signals this agent received


def main(argv: list[str] | None = None) -> int:
    args = torch_run.parse_args(argv)
    if args.signals_to_handle == torch_run.get_args_parser().get_default("signals_to_handle"):
        args.signals_to_handle += ",SIGUSR2"
    if args.shutdown_timeout is None and SHUTDOWN_TIMEOUT_ENV not in os.environ:
        args.shutdown_timeout = SHUTDOWN_TIMEOUT_S
    try:
        install(args.signals_to_handle)
        _launch(args)
    except elastic_api.SignalException as stop:
        name = signal.Signals(_stops[0] if _stops else stop.sigval).name
        _say(f"stopped by {name}; rerun the same command to resume the run from its checkpoint")
        return STOP_EXIT_CODE
    return 0


def _launch(args) -> None:
    """torchrun's ``main`` (error files for TorchElastic included) on ``args``."""
    record(torch_run.run)(args)


def install(signals: str) -> None:
    """Our handler where torchrun's agent installs its own (in the main thread, as it starts
    the processes), and already for the rendezvous before that; torchrun's log lines about
    a stop are kept quiet once one came."""
    elastic_api._terminate_process_handler = _on_stop_signal
    for name in signals.split(","):
        sig = getattr(signal, name.strip(), None)
        if isinstance(sig, signal.Signals):
            signal.signal(sig, _on_stop_signal)
    for name in _TORCH_LOGGERS:
        logging.getLogger(name).addFilter(_quiet_after_a_stop)


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    """The first stop signal: torchrun's handling (the agent passes the raised signal on to
    its processes and waits for them to save). A second one: stop at once."""
    del frame
    if _stops:
        _stop_now(signum)
    _stops.append(signum)
    received = signal.Signals(signum)
    raise elastic_api.SignalException(
        f"Process {os.getpid()} got signal: {received}",
        sigval=PASSED_ON.get(received, received),
    )


def _stop_now(signum: int) -> None:
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    name = signal.Signals(signum).name
    _say(
        f"stopped at once by a second {name}; rerun the same command to resume the run "
        "from its last checkpoint"
    )
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    raise SystemExit(128 + signum)  # where the signal did not end this process


def _quiet_after_a_stop(record_: logging.LogRecord) -> bool:
    return not (_stops and str(record_.msg).startswith(_STOP_CHATTER))


def _say(message: str) -> None:
    print(f"[yfbench] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
