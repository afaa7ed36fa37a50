"""The composed config: the values derived from others, and the checks made before a run.

Hydra composes ``conf/``; this module registers the one resolver the tree uses (the
speedup window) and checks a composed config before anything is built: ranges of the
trainer's values, and keys a user added that no config file defines (a mistyped
``+trainer.max_step=10`` would otherwise be ignored).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from yfbench.errors import UserError

# The config tree of a checkout (yfbench runs from its repository).
CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"
# The paper smooths the training loss over 500 iterations (paper_digest.md 4.2).
PAPER_WINDOW = 500
MIN_WINDOW = 50
# Keys that may change between a run and its resumption without changing its results.
NON_SEMANTIC_KEYS = (
    "trainer.checkpoint_every",
    "trainer.flush_every",
    "trainer.progress",
    "trainer.long_run",
    "trainer.threads",
    "logger",
    "analysis",
)
# Keys added after runs were committed: recorded only when they differ from this default,
# so those runs keep their identity (and resume) under the new config tree.
OMITTED_AT_DEFAULT = {"trainer.flush_denormal": False, "optimizer.lr_factor": 1.0}
PRECISIONS = ("fp32", "bf16", "fp16")
# Seeds key 64-bit generators with the step mixed in; 32 bits keep every derived seed in range.
MAX_SEED = 2**32 - 1


def smoothing_window(max_steps: int, paper_max_steps: int) -> int:
    """The paper's 500-iteration window scaled by run length, and at least 50 iterations."""
    return max(MIN_WINDOW, round(PAPER_WINDOW * max_steps / paper_max_steps))


def register_resolvers() -> None:
    """``${yfbench.window:max_steps,paper_max_steps}``: the one rule for the speedup window."""
    if not OmegaConf.has_resolver("yfbench.window"):
        OmegaConf.register_new_resolver("yfbench.window", smoothing_window)


register_resolvers()


def compose(overrides: Iterable[str] = (), with_hydra: bool = False) -> DictConfig:
    """The config ``python -m yfbench OVERRIDES`` would run, for Python callers (tests,
    benchmarks); ``with_hydra`` keeps the ``hydra`` node (launcher, sweep, output dirs)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=with_hydra)


# ---------------------------------------------------------------- values
def validate(cfg: DictConfig) -> None:
    """Reject out-of-range or mistyped trainer values and seed before anything is built."""
    trainer = cfg.trainer
    for key, minimum in (
        ("max_steps", 1),
        ("log_every", 1),
        ("flush_every", 1),
        ("eval_every", 0),
        ("checkpoint_every", 0),
        ("staleness", 0),
    ):
        _require_int(f"trainer.{key}", trainer[key], minimum)
    _require_int("seed", cfg.seed, 0)
    if cfg.seed > MAX_SEED:
        raise UserError(f"seed must be an integer between 0 and {MAX_SEED}, got {cfg.seed}")
    if trainer.threads is not None:
        _require_int("trainer.threads", trainer.threads, 1)
    if trainer.precision not in PRECISIONS:
        raise UserError(
            f"trainer.precision must be one of {', '.join(PRECISIONS)}, got {trainer.precision!r}"
        )
    if trainer.staleness and trainer.precision == "fp16":
        raise UserError(
            "trainer.staleness > 0 cannot be combined with precision=fp16 (delayed gradients "
            "would be unscaled with a later loss scale); use bf16 or fp32"
        )
    divergence = trainer.divergence
    factor = divergence.loss_factor
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not factor > 1:
        raise UserError(f"trainer.divergence.loss_factor must be a number > 1, got {factor!r}")
    _require_int("trainer.divergence.smoothing_steps", divergence.smoothing_steps, 1)
    _require_int("trainer.divergence.max_skipped_steps", divergence.max_skipped_steps, 1)


def _require_int(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{key} must be an integer >= {minimum}, got {value!r}")


# ---------------------------------------------------------------- keys
def unknown_keys(cfg: DictConfig, reference: DictConfig) -> list[str]:
    """Dotted keys of ``cfg`` that ``reference`` (the same choices, no value overrides) lacks.

    The config files of the chosen options are the schema: every key a run may set is
    defined in one of them, so a key only ``cfg`` has was added by an override.
    """
    known = set(_leaf_keys(OmegaConf.to_container(reference, resolve=False)))
    return [
        key for key in _leaf_keys(OmegaConf.to_container(cfg, resolve=False)) if key not in known
    ]


def refuse_unknown_keys(cfg: DictConfig, reference: DictConfig) -> None:
    """One message for keys no config file defines, with the closest known key."""
    unknown = unknown_keys(cfg, reference)
    if not unknown:
        return
    known = list(_leaf_keys(OmegaConf.to_container(reference, resolve=False)))
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1)
        hints.append(f"{key} (did you mean {close[0]}?)" if close else key)
    raise UserError(
        f"unknown config key{'s' if len(unknown) > 1 else ''}: {', '.join(hints)}. No config "
        "file defines it, so it would be ignored; fix the name (`python -m yfbench --cfg job` "
        "prints every key)"
    )


def _leaf_keys(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaf_keys(value, f"{prefix}{key}.")
    elif prefix:
        yield prefix.rstrip(".")


def refuse_mistyped_values(cfg: DictConfig, reference: DictConfig) -> None:
    """A value whose type differs from its config file's default (``max_steps=true``).

    Defaults of null accept anything; a float default accepts an integer.
    """
    expected = OmegaConf.to_container(reference, resolve=True)
    actual = OmegaConf.to_container(cfg, resolve=True)
    for key, want, got in _typed_pairs(expected, actual):
        if want is None or got is None or _same_kind(want, got):
            continue
        raise UserError(
            f"{key}={got!r} has the wrong type: expected {type(want).__name__} (its default is "
            f"{want!r})"
        )


def _same_kind(want: Any, got: Any) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return isinstance(want, bool) and isinstance(got, bool)
    if isinstance(want, float):
        return isinstance(got, int | float)
    return isinstance(got, type(want))


def _typed_pairs(expected: Any, actual: Any, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in expected.keys() & actual.keys():
            yield from _typed_pairs(expected[key], actual[key], f"{prefix}{key}.")
    elif not isinstance(expected, dict | list) and not isinstance(actual, dict | list):
        yield prefix.rstrip("."), expected, actual


def semantic_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config minus keys that do not change a run's results."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("hydra", None)
    for dotted in NON_SEMANTIC_KEYS:
        node, leaf = _parent(plain, dotted)
        node.pop(leaf, None)
    for dotted, default in OMITTED_AT_DEFAULT.items():
        node, leaf = _parent(plain, dotted)
        if leaf in node and node[leaf] == default:
            del node[leaf]
    return plain


def _parent(tree: dict[str, Any], dotted: str) -> tuple[dict[str, Any], str]:
    """The dict that holds ``dotted``'s last part (empty if a parent is missing), and it."""
    *parents, leaf = dotted.split(".")
    for parent in parents:
        tree = tree.get(parent, {})
    return tree, leaf
