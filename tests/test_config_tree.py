"""Every config a user can name composes, resolves and follows the tree's rules.

Options are listed from ``conf/`` itself, so a new experiment, task, optimizer or grid
point is checked without touching this file. For each composed config: every value
resolves (a broken interpolation would otherwise surface hours into a sweep), the speedup
window follows the one rule, CPU-scale paper tasks run at least 3,000 iterations (past
YellowFin's slow start), and paper scale runs the paper's iteration count.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from tests.helpers import REPO_ROOT
from yfbench.config import compose, smoothing_window

CONF = REPO_ROOT / "conf"
PAPER_TASKS = ("cifar10_resnet", "ptb_lstm", "tinyshakespeare_lstm", "wsj_parse_lstm")
CPU_MIN_STEPS = 3000
Compose = Callable[[list[str]], DictConfig]


def options(group: str) -> list[str]:
    """The names a user can give for ``group=<name>``: its files under conf/."""
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


def experiment_grid(name: str) -> list[str]:
    """The grid points an experiment sweeps (hydra.sweeper.params.grid_point; none for a
    search such as experiment=optuna_lr)."""
    params = OmegaConf.load(CONF / "experiment" / f"{name}.yaml").hydra.sweeper.params
    if "grid_point" not in params:
        return []
    return [point.strip() for point in str(params.grid_point).split(",")]


def leading_comments(path: Path) -> list[str]:
    """The comment lines a file starts with, without '#' and the @package directive."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return [line for line in lines if not line.startswith("@package")]


def make_reproduce_targets() -> dict[str, tuple[str, str]]:
    """``reproduce-<name>`` targets of the Makefile: {name: (experiment, task)}."""
    calls = re.findall(
        r"\$\(call reproduce,(\w+),(\w+),(\w+)\)", (REPO_ROOT / "Makefile").read_text()
    )
    return {name: (f"{prefix}_speedup", task) for name, prefix, task in calls}


EXPERIMENTS = options("experiment")
SCALES = options("scale")
MAKE_TARGETS = make_reproduce_targets()


@pytest.fixture(scope="module")
def compose_tree() -> Compose:
    """The config with its ``hydra`` node (launcher, sweeper, output directories). Each
    list of overrides is composed once (a Hydra compose costs ~0.3 s; several tests check
    the same config, e.g. an experiment's documented command); tests get a copy."""
    composed: dict[tuple[str, ...], DictConfig] = {}

    def compose_once(overrides: list[str]) -> DictConfig:
        key = tuple(overrides)
        if key not in composed:
            composed[key] = compose(overrides, with_hydra=True)
        return copy.deepcopy(composed[key])

    return compose_once


def resolve_completely(cfg: DictConfig) -> dict[str, Any]:
    """The job's config with every value resolved; its run and sweep directories too."""
    job = cfg.copy()
    with open_dict(job):
        hydra = job.pop("hydra")
    plain = OmegaConf.to_container(job, resolve=True, throw_on_missing=True)
    HydraConfig.instance().set_config(cfg)  # as Hydra does: paths may read ${hydra:job...}
    for key in ("run.dir", "sweep.dir", "sweep.subdir"):
        path = OmegaConf.select(hydra, key, throw_on_missing=True)
        assert isinstance(path, str) and "None" not in path, (key, path)
    return plain


def assert_tree_rules(cfg: DictConfig) -> dict[str, Any]:
    """The checks every composed config must pass; returns the resolved job config."""
    plain = resolve_completely(cfg)
    steps, task = plain["trainer"]["max_steps"], plain["task"]
    paper_steps = task["paper_max_steps"]
    rule = max(50, round(500 * steps / paper_steps))
    assert plain["analysis"]["window"] == rule == smoothing_window(steps, paper_steps)
    scale = plain["scale"]["name"]
    assert scale == cfg.hydra.runtime.choices.scale
    if scale == "paper":
        assert steps == paper_steps, task["name"]
        assert plain["trainer"]["checkpoint_every"] > 0  # long runs resume when rerun
    elif task["name"] in PAPER_TASKS:
        assert steps >= CPU_MIN_STEPS, (task["name"], steps)
    return plain


# ---------------------------------------------------------------- every option
def test_scales_are_cpu_and_paper():
    assert SCALES == ["cpu", "paper"]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(compose_tree: Compose, experiment: str, scale: str):
    cfg = compose_tree([f"experiment={experiment}", f"scale={scale}"])
    assert_tree_rules(cfg)
    if "optuna" in cfg.hydra.sweeper._target_.lower():  # a search over the lr, not a grid
        assert set(cfg.hydra.sweeper.params) == {"optimizer.lr"}
        assert cfg.hydra.sweeper.direction == "minimize"
    else:
        assert {"grid_point", "seed"} <= set(cfg.hydra.sweeper.params)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_sweeps_existing_grid_points(experiment: str):
    missing = set(experiment_grid(experiment)) - set(options("grid_point"))
    assert not missing, f"{experiment} sweeps grid points no file defines: {sorted(missing)}"


def interpolates(group: str, name: str) -> bool:
    """Whether ``conf/<group>/<name>.yaml`` reads another value of the config (``${...}``)."""
    return "${" in (CONF / group / f"{name}.yaml").read_text()


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("task", options("task"))
def test_every_task_and_scale_composes(compose_tree: Compose, task: str, scale: str):
    plain = assert_tree_rules(compose_tree([f"task={task}", f"scale={scale}"]))
    assert plain["task"]["name"] == task


@pytest.mark.parametrize("optimizer", options("optimizer"))
def test_every_optimizer_composes(compose_tree: Compose, optimizer: str):
    """An optimizer file that reads no other value is the same node under every task and
    scale, so one composition checks it; one that does is composed under all of them next."""
    plain = assert_tree_rules(compose_tree([f"optimizer={optimizer}"]))
    assert plain["optimizer"]["name"] == optimizer


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("task", options("task"))
@pytest.mark.parametrize(
    "optimizer", [name for name in options("optimizer") if interpolates("optimizer", name)]
)
def test_an_optimizer_that_interpolates_composes_under_every_task_and_scale(
    compose_tree: Compose, optimizer: str, task: str, scale: str
):
    cfg = compose_tree([f"optimizer={optimizer}", f"task={task}", f"scale={scale}"])
    plain = assert_tree_rules(cfg)
    assert (plain["optimizer"]["name"], plain["task"]["name"]) == (optimizer, task)


@pytest.mark.parametrize(
    "override", [f"{group}={name}" for group in ("trainer", "logger") for name in options(group)]
)
def test_every_trainer_and_logger_composes(compose_tree: Compose, override: str):
    assert_tree_rules(compose_tree([override]))


def grid_point_settings(point: str) -> tuple[str, dict[str, Any]]:
    """(optimizer, settings) of ``conf/grid_point/<point>.yaml``, read as written: a global
    package that picks one optimizer and sets only keys that optimizer's file has."""
    path = CONF / "grid_point" / f"{point}.yaml"
    assert "# @package _global_" in path.read_text().splitlines(), path
    body = yaml.safe_load(path.read_text())
    [choice] = body.pop("defaults")
    [(group, optimizer)] = choice.items()
    assert group == "override /optimizer" and optimizer in options("optimizer"), (path, choice)
    settings = body.pop("optimizer", {})
    assert not body, f"{path} sets more than the optimizer: {sorted(body)}"
    known = yaml.safe_load((CONF / "optimizer" / f"{optimizer}.yaml").read_text())
    assert set(settings) <= set(known), (path, sorted(set(settings) - set(known)))
    return optimizer, settings


@pytest.mark.parametrize("point", options("grid_point"))
def test_every_grid_point_sets_its_optimizer_and_lr(point: str):
    """``<optimizer>_lr<lr>`` sets that optimizer and lr; a bare name, the optimizer as is;
    ``<optimizer>_<variant>`` (an experiment's point, e.g. ``yellowfin_lrf3``) that optimizer."""
    optimizer, settings = grid_point_settings(point)
    assert optimizer == max((o for o in options("optimizer") if point.startswith(o)), key=len)
    rest = point[len(optimizer) :]
    if re.fullmatch(r"_lr[0-9.e-]+", rest):
        assert settings == {"lr": float(rest[3:])}
    elif not rest:
        assert settings == {}


def one_point_per_shape() -> list[str]:
    """A grid point for each (optimizer, keys it sets): the others differ only in values."""
    shapes: dict[tuple[str, tuple[str, ...]], str] = {}
    for point in options("grid_point"):
        optimizer, settings = grid_point_settings(point)
        shapes.setdefault((optimizer, tuple(sorted(settings))), point)
    return sorted(shapes.values())


@pytest.mark.parametrize("point", one_point_per_shape())
def test_grid_points_compose_with_their_settings(compose_tree: Compose, point: str):
    plain = assert_tree_rules(compose_tree([f"grid_point={point}"]))
    optimizer, settings = grid_point_settings(point)
    assert plain["optimizer"]["name"] == optimizer
    assert {key: plain["optimizer"][key] for key in settings} == settings


# ---------------------------------------------------------------- experiments' docs
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_files_start_with_the_command_that_runs_them(
    compose_tree: Compose, experiment: str
):
    first = leading_comments(CONF / "experiment" / f"{experiment}.yaml")[:2]
    command = f"python -m yfbench -m experiment={experiment}"
    lines = [line for line in first if command in line]
    assert lines, f"conf/experiment/{experiment}.yaml should start with `{command}`: {first}"
    line = lines[0]
    # The documented command composes as written (its overrides up to the comment's end).
    args = re.match(r"python -m yfbench -m((?:\s+[\w./+~-]+=\S+)+)", line[line.index("python") :])
    assert_tree_rules(compose_tree(args.group(1).split()))


@pytest.mark.parametrize("target", sorted(MAKE_TARGETS))
def test_make_reproduce_targets_run_their_experiment(compose_tree: Compose, target: str):
    """``make reproduce-<x>`` sweeps into results/runs/<task>: the experiment's task."""
    experiment, task = MAKE_TARGETS[target]
    assert experiment in EXPERIMENTS
    assert compose_tree([f"experiment={experiment}"]).task.name == task
    comments = " ".join(leading_comments(CONF / "experiment" / f"{experiment}.yaml"))
    assert f"make reproduce-{target})" in comments


def test_experiment_comments_name_real_make_targets():
    for experiment in EXPERIMENTS:
        comments = " ".join(leading_comments(CONF / "experiment" / f"{experiment}.yaml"))
        for target in re.findall(r"make (reproduce-[\w-]+)", comments):
            assert target.removeprefix("reproduce-") in MAKE_TARGETS, (experiment, target)


# ---------------------------------------------------------------- interpolations
@pytest.mark.parametrize(
    ("overrides", "staleness"),
    [([], 0), (["trainer=async"], 15), (["trainer=async", "trainer.staleness=3"], 3)],
)
def test_closed_loop_staleness_follows_the_trainer(
    compose_tree: Compose, overrides: list[str], staleness: int
):
    cfg = compose_tree(["optimizer=yellowfin_closed_loop", *overrides])
    assert OmegaConf.is_interpolation(cfg.optimizer, "staleness")
    assert cfg.optimizer.staleness == cfg.trainer.staleness == staleness


# ---------------------------------------------------------------- the CLI's refusals
def assert_refused(result, *fragments: str) -> str:
    """Exit 2 with one message (no traceback) holding every fragment; returns the message."""
    assert result.returncode == 2, result.stdout + result.stderr
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    for fragment in fragments:
        assert re.search(fragment, message), (fragment, message)
    return message


def test_cli_refuses_a_misspelt_added_key(tmp_path: Path, run_main):
    args = ["task=noisy_quadratic", "+trainer.max_step=10", f"hydra.run.dir={tmp_path}"]
    assert_refused(run_main(args), r"trainer\.max_step\b(?!s)", r"trainer\.max_steps")


def test_cli_refuses_a_boolean_step_count(tmp_path: Path, run_main):
    args = ["task=noisy_quadratic", "trainer.max_steps=true", f"hydra.run.dir={tmp_path}"]
    assert_refused(run_main(args), r"trainer\.max_steps", r"\bint\b")


def test_cli_prints_an_experiment_job_config(run_main):
    result = run_main(["--cfg", "job", "experiment=ptb_speedup"])
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["task"]["name"] == "ptb_lstm"
    assert printed["trainer"]["max_steps"] == CPU_MIN_STEPS
    assert "hydra" not in printed
