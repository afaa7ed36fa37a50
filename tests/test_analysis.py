"""yfbench.analysis end to end on fake run directories: CLI files, plots and the report."""

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.image import imread

from tests.run_builder import TOY_TASK, write_run
from yfbench.analysis.__main__ import main
from yfbench.analysis.report import grid_protocol, write_report
from yfbench.analysis.runs import load_runs, runs_table

STEPS = 40


def decaying(rate: float, offset: float = 0.0) -> list[float]:
    return [offset + math.exp(-rate * t) for t in range(1, STEPS + 1)]


# YellowFin's tuner statistics on every train record, as the trainer logs them.
YELLOWFIN_STATS = {
    "h_min": [0.5 / t for t in range(1, STEPS + 1)],
    "h_max": 2.0,
    "grad_var": 0.1,
    "dist_to_opt": 1.0,
}


def write_toy_runs(root: Path) -> Path:
    """Adam (2 lrs), momentum SGD, YellowFin (2 seeds), a diverged and a failed run."""
    for seed in (1, 2):
        write_run(root, {"name": "adam", "lr": 0.001}, seed, decaying(0.05), **TOY_TASK)
        logged = TOY_TASK | {"train_extra": TOY_TASK["train_extra"] | YELLOWFIN_STATS}
        write_run(root, {"name": "yellowfin", "lr": 1.0}, seed, decaying(0.2), **logged)
    write_run(root, {"name": "adam", "lr": 0.01}, 1, decaying(0.02), packed=True, **TOY_TASK)
    write_run(
        root, {"name": "momentum_sgd", "lr": 0.1, "momentum": 0.9}, 1, decaying(0.1), **TOY_TASK
    )
    write_run(
        root,
        {"name": "momentum_sgd", "lr": 1.0, "momentum": 0.9},
        1,
        decaying(0.1)[:20] + [math.nan] * 3,
        status="diverged",
        **TOY_TASK,
    )
    write_run(root, {"name": "adam", "lr": 1.0}, 1, [], status="failed", **TOY_TASK)
    return root


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return write_toy_runs(tmp_path / "runs")


@pytest.fixture(scope="module")
def plotted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(runs, results): the toy runs' figures drawn once by the plot CLI into
    results/toy_task/mini, where the report links them (drawing takes seconds)."""
    root = tmp_path_factory.mktemp("plotted")
    runs = write_toy_runs(root / "runs")
    results = root / "results"
    figures = results / "toy_task" / "mini"
    assert main(["plot", str(runs), "--out", str(figures), "--window", "3"]) == 0
    return runs, results


def test_speedup_cli_writes_summary_seed_and_curve_csv_and_markdown(
    runs: Path, tmp_path: Path, capsys
):
    out = tmp_path / "table" / "speedup.csv"
    assert main(["speedup", str(runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out).set_index(["optimizer", "baseline"])
    # Adam lr=0.001 decays as exp(-0.05 t), below lr=0.01's exp(-0.02 t): it is tuned;
    # the failed lr=1 run has no curve and cannot be.
    yf = table.loc[("yellowfin", "adam")]
    assert yf["baseline_hparams"] == "lr=0.001" and yf["setting"] == "default"
    assert table.loc[("momentum_sgd", "adam"), "best_hparams"] == "lr=0.1"
    assert table.loc[("momentum_sgd", "adam"), "diverged"] == 1
    assert ("yellowfin", "momentum_sgd") in table.index
    # Adam's smoothed loss is lowest at the last step (40); YellowFin's falls below it
    # much earlier, in both conventions. Seed 1 tuned (every grid point has it), so only
    # seed 2 is an evaluation seed.
    assert yf["T_baseline"] == STEPS and yf["seeds"] == 1
    assert yf["seeds_used"] == "1 evaluation seed (2)"
    assert yf["reached_paper"] == 1 and yf["speedup_paper"] > yf["speedup_tt"] > 1
    seeds = pd.read_csv(tmp_path / "table" / "speedup_seeds.csv")
    assert {"T_baseline", "T_method_paper", "T_method_tt", "speedup_paper", "speedup_tt"} <= set(
        seeds
    )
    yf_seeds = seeds[(seeds["optimizer"] == "yellowfin") & (seeds["baseline"] == "adam")]
    assert yf_seeds["seed"].tolist() == [2]
    curve = pd.read_csv(tmp_path / "table" / "speedup_curve.csv")
    assert sorted(curve["fraction"].unique()) == [0.25, 0.5, 0.75, 1.0]
    assert printed.startswith("| task | scale | setting | window | optimizer | vs |")
    assert "Speedup curve" in (tmp_path / "table" / "speedup.md").read_text()


def _check_png_and_svg(paths: list[Path]) -> None:
    for path in paths:
        if path.suffix == ".png":
            image = imread(path)
            assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        else:
            assert ET.parse(path).getroot().tag.endswith("svg")


def test_plot_cli_writes_readable_png_and_svg_including_the_speedup_curve(plotted):
    figures = plotted[1] / "toy_task" / "mini"
    paths = sorted(figures.iterdir())
    names = {p.name for p in paths}
    for stem in ("train_loss", "valid", "yellowfin_hyperparams", "speedup_curve"):
        assert {f"toy_task_mini_{stem}.png", f"toy_task_mini_{stem}.svg"} <= names
    _check_png_and_svg(paths)


def test_report_lists_paper_and_ours_in_both_conventions(plotted):
    runs, results = plotted
    text = write_report(runs, results / "README.md").read_text()
    paper = json.loads(
        (Path(__file__).parents[1] / "yfbench/analysis/paper_numbers.json").read_text()
    )
    for entry in paper["tasks"].values():
        for value in entry["speedup_over_adam"].values():
            assert f"{value['value']}x ({value['confidence']} confidence)" in text
    assert "| cifar10_resnet | yellowfin | 1.93x (low confidence) | not run |" in text
    assert "| toy_task | yellowfin | — | mini | default | 5 |" in text
    assert "used for every number next to a paper number" in text
    assert "(1/1 reached)" in text and "1 evaluation seed (2)" in text
    assert "[speedup_curve](toy_task/mini/toy_task_mini_speedup_curve.png)" in text
    assert "- toy_task (mini), 1 evaluation seed (2): YellowFin reaches tuned Adam's" in text
    assert "## YellowFin against tuned momentum SGD" in text
    assert "## Speedup curve over tuned Adam" in text
    protocol = (
        "- toy_task (mini, default): adam: 2 grid points × seed 1; 1 grid point (lr=0.001) "
        "× seeds 1–2; momentum_sgd: 2 grid points × seed 1; yellowfin: 1 grid point × seeds 1–2."
    )
    assert protocol in text
    assert "diverged 1" in text and "failed 1" in text and "abcdef0" in text


def test_report_sentence_for_a_method_that_never_reaches(tmp_path: Path):
    for seed in (1, 2, 3):
        write_run(tmp_path, {"name": "adam", "lr": 0.1}, seed, decaying(0.1), window=1, **TOY_TASK)
        write_run(tmp_path, {"name": "yellowfin"}, seed, decaying(0.05), window=1, **TOY_TASK)
    text = write_report(tmp_path, tmp_path / "out" / "README.md").read_text()
    # Adam's best is at t = 40; YellowFin never gets below it, so each seed is below
    # 40 / 40 in T/T and (40 - 1) / (40 - 1) in the paper convention. YellowFin's own best
    # (exp(-2), at t = 40) is where Adam is at t = 20: the reverse measure is about 0.5x.
    expected = (
        "YellowFin does not reach tuned Adam's lowest smoothed training loss in 3/3 seeds "
        "(speedup < 1.00x; reverse 0.4"
    )
    assert expected in text
    # Every grid point ran seeds 1-3, so all three tuned: the numbers are provisional.
    assert "provisional: tuning seeds 1,2,3 only" in text


def test_report_without_runs_still_shows_the_paper(tmp_path: Path):
    out = tmp_path / "README.md"
    assert main(["report", "--runs", str(tmp_path / "none"), "--out", str(out)]) == 0
    text = out.read_text()
    assert "No runs found" in text and "3.28x (high confidence)" in text


def test_grid_protocol_is_inferred_from_seeds_per_grid_point(tmp_path: Path):
    write_run(tmp_path, {"name": "adam", "lr": 0.1}, 1, [1.0], **TOY_TASK)
    write_run(tmp_path, {"name": "adam", "lr": 0.5}, 1, [1.0], **TOY_TASK)
    for seed in (1, 2, 3):
        write_run(tmp_path, {"name": "adam", "lr": 0.01}, seed, [1.0], **TOY_TASK)
        write_run(tmp_path, {"name": "yellowfin"}, seed, [1.0], **TOY_TASK)
    lines = grid_protocol(runs_table(load_runs([tmp_path])))
    assert lines == [
        "adam: 2 grid points × seed 1; 1 grid point (lr=0.01) × seeds 1–3",
        "yellowfin: 1 grid point × seeds 1–3",
    ]


def test_speedup_axis_has_several_labels_for_narrow_and_wide_ranges():
    from yfbench.analysis.plots import SPEEDUP_TICKS, _speedup_ticks

    assert _speedup_ticks([1.0, 1.02, 1.25]) == [1.0, 1.1, 1.2, 1.3]
    assert _speedup_ticks([0.31, 1.0, 1.6]) == SPEEDUP_TICKS


def test_tables_cli_and_report_readme_block(runs: Path, tmp_path: Path):
    out = tmp_path / "tables"
    assert main(["tables", str(runs), "--out", str(out)]) == 0
    for name in ("fixed_budget", "best_adam", "validation", "hyperparams", "clipping"):
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.md").is_file()
    budget = pd.read_csv(out / "fixed_budget.csv")
    by_pair = budget.groupby(["optimizer", "baseline"])["seeds_used"].first()
    assert by_pair[("yellowfin", "adam")] == "1 evaluation seed (2)"
    # Momentum SGD ran seed 1 only: its comparisons can only be provisional.
    assert by_pair[("momentum_sgd", "adam")].startswith("provisional: tuning seed 1")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- findings:start -->\n<!-- findings:end -->\n")
    report = tmp_path / "results" / "README.md"
    args = ["report", "--runs", str(runs), "--out", str(report), "--readme", str(readme)]
    assert main(args) == 0
    block = readme.read_text()
    assert "YellowFin against tuned Adam" in block and "(results/README.md)" in block
    # The summary line opens the findings, so the README's first screen says where it stands.
    first = block.split("do not edit by hand -->\n\n", 1)[1].splitlines()
    assert first[0] == "- **In short** (each is detailed below):"
    assert first[1].startswith("  - Hand-tuned momentum SGD beats untuned YellowFin at the ")
    assert first[1].endswith("on 0 of 1 tasks (YellowFin wins 0; 1 ties or is mixed).")
    assert first[2].startswith("  - Tuned Adam beats untuned YellowFin at the ")
    assert "## What we found" in report.read_text()
