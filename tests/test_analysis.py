"""yfbench.analysis on fake run directories written to the run contract (DESIGN.md)."""

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.image import imread
from omegaconf import OmegaConf

from yfbench.analysis.__main__ import main
from yfbench.analysis.plots import plot_runs
from yfbench.analysis.report import write_report
from yfbench.analysis.runs import load_runs, runs_table
from yfbench.errors import DataError

STEPS = 40
WINDOW = 5


def write_run(
    root: Path,
    optimizer: dict,
    seed: int,
    losses: list[float],
    status: str | None = "completed",
    task: str = "toy_task",
    yellowfin_stats: bool = False,
) -> Path:
    """A run directory as the trainer writes it: config, metrics.jsonl, summary.json."""
    run_dir = root / task / "mini" / optimizer["name"] / f"lr{optimizer['lr']}-seed{seed}"
    (run_dir / ".hydra").mkdir(parents=True)
    config = {
        "seed": seed,
        "task": {"name": task, "dim": 3},
        "optimizer": optimizer,
        "scale": {"name": "mini"},
        "trainer": {"max_steps": len(losses), "log_every": 1},
        "analysis": {"window": WINDOW},
    }
    OmegaConf.save(OmegaConf.create(config), run_dir / ".hydra" / "config.yaml")
    lines = []
    for step, loss in enumerate(losses, start=1):
        record = {"step": step, "split": "train", "loss": loss, "lr": 0.1, "momentum": 0.5}
        if yellowfin_stats:
            record.update(h_min=0.5 / step, h_max=2.0, grad_var=0.1, dist_to_opt=1.0)
        lines.append(json.dumps(record))
        if step % 10 == 0:
            lines.append(
                json.dumps({"step": step, "split": "valid", "loss": loss, "accuracy": 0.5})
            )
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + ("\n" if lines else ""))
    if status is not None:
        summary = {
            "status": status,
            "steps": len(losses),
            "wall_time_s": 1.0,
            "steps_per_s": 40.0,
            "final": {},
            "best": {},
            "device": "cpu",
            "error": "boom" if status == "failed" else None,
        }
        (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def decaying(rate: float, offset: float = 0.0) -> list[float]:
    return [offset + math.exp(-rate * t) for t in range(1, STEPS + 1)]


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Adam (2 lrs), momentum SGD, YellowFin (2 seeds), a diverged and a failed run."""
    root = tmp_path / "runs"
    for seed in (1, 2):
        write_run(root, {"name": "adam", "lr": 0.001}, seed, decaying(0.05))
        write_run(root, {"name": "yellowfin", "lr": 1.0}, seed, decaying(0.2), yellowfin_stats=True)
    write_run(root, {"name": "adam", "lr": 0.01}, 1, decaying(0.02))
    write_run(root, {"name": "momentum_sgd", "lr": 0.1, "momentum": 0.9}, 1, decaying(0.1))
    write_run(
        root,
        {"name": "momentum_sgd", "lr": 1.0, "momentum": 0.9},
        1,
        decaying(0.1)[:20] + [math.nan] * 3,
        status="diverged",
    )
    write_run(root, {"name": "adam", "lr": 1.0}, 1, [], status="failed")
    return root


def test_loader_keeps_completed_diverged_and_failed_runs(runs: Path):
    frame = load_runs([runs])
    table = runs_table(frame).set_index(["optimizer", "hparams", "seed"])
    assert len(table) == 8
    assert table.loc[("adam", "lr=1", 1), "status"] == "failed"
    assert table.loc[("adam", "lr=1", 1), "error"] == "boom"
    assert table.loc[("momentum_sgd", "lr=1, momentum=0.9", 1), "status"] == "diverged"
    # The failed run logged nothing but still has one row, with no split.
    failed = frame[frame["status"] == "failed"]
    assert len(failed) == 1 and pd.isna(failed["split"]).all()
    diverged = frame[(frame["status"] == "diverged") & (frame["split"] == "train")]
    assert len(diverged) == 23 and diverged["loss"].isna().sum() == 3
    yf = frame[(frame["optimizer"] == "yellowfin") & (frame["split"] == "valid")]
    assert len(yf) == 2 * 4 and (yf["accuracy"] == 0.5).all()
    assert set(frame["window"]) == {WINDOW} and set(frame["task"]) == {"toy_task"}
    assert frame.loc[frame["optimizer"] == "momentum_sgd", "opt.momentum"].eq(0.9).all()


def test_loader_marks_runs_without_summary_and_skips_truncated_last_line(tmp_path: Path):
    run = write_run(tmp_path, {"name": "adam", "lr": 0.1}, 1, [3.0, 2.0], status=None)
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 3, "split": "tr')
    frame = load_runs([tmp_path])
    assert frame["status"].unique().tolist() == ["incomplete"]
    assert frame["step"].tolist() == [1, 2]


def test_loader_rejects_corrupt_lines_in_the_middle(tmp_path: Path):
    run = write_run(tmp_path, {"name": "adam", "lr": 0.1}, 1, [3.0, 2.0])
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(["{oops", *lines]) + "\n")
    with pytest.raises(DataError, match="metrics.jsonl:1"):
        load_runs([tmp_path])


def test_speedup_cli_writes_csv_and_markdown(runs: Path, tmp_path: Path, capsys):
    out = tmp_path / "table" / "speedup.csv"
    assert main(["speedup", str(runs), "--baseline", "adam", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out).set_index(["optimizer", "baseline"])
    # Adam lr=0.001 decays as exp(-0.05 t), below lr=0.01's exp(-0.02 t): it is tuned;
    # the failed lr=1 run has no curve and cannot be.
    assert table.loc[("yellowfin", "adam"), "baseline_hparams"] == "lr=0.001"
    assert table.loc[("momentum_sgd", "adam"), "best_hparams"] == "lr=0.1"
    assert table.loc[("momentum_sgd", "adam"), "diverged"] == 1
    assert ("yellowfin", "momentum_sgd") in table.index
    assert table.loc[("yellowfin", "adam"), "seeds"] == 2
    # Adam's smoothed loss is lowest at the last step (40); YellowFin's window mean
    # of exp(-0.2 t) falls below Adam's much earlier, so the speedup exceeds 1.
    assert table.loc[("yellowfin", "adam"), "T_baseline"] == STEPS
    assert table.loc[("yellowfin", "adam"), "speedup"] > 1
    assert printed.startswith("| task | scale | optimizer | vs |")
    assert out.with_suffix(".md").read_text().startswith("| task |")


def test_speedup_cli_reports_user_errors(tmp_path: Path, capsys):
    assert main(["speedup", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _check_png_and_svg(paths: list[Path]) -> None:
    for path in paths:
        if path.suffix == ".png":
            image = imread(path)
            assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        else:
            assert ET.parse(path).getroot().tag.endswith("svg")


def test_plots_write_readable_png_and_svg(runs: Path, tmp_path: Path):
    out = tmp_path / "figures"
    paths = plot_runs(load_runs([runs]), out)
    names = {p.name for p in paths}
    for stem in ("train_loss", "valid", "yellowfin_hyperparams"):
        assert {f"toy_task_mini_{stem}.png", f"toy_task_mini_{stem}.svg"} <= names
    _check_png_and_svg(paths)


def test_plot_cli(runs: Path, tmp_path: Path):
    assert main(["plot", str(runs), "--out", str(tmp_path / "plots"), "--window", "3"]) == 0
    assert (tmp_path / "plots" / "toy_task_mini_train_loss.svg").is_file()


def test_report_lists_paper_and_ours(runs: Path, tmp_path: Path):
    results = tmp_path / "results"
    plot_runs(load_runs([runs]), results / "toy_task" / "mini")
    text = write_report(runs, results / "README.md").read_text()
    paper = json.loads(
        (Path(__file__).parents[1] / "yfbench/analysis/paper_numbers.json").read_text()
    )
    # Every paper value appears with its confidence; tasks we did not run say so.
    for entry in paper["tasks"].values():
        for value in entry["speedup_over_adam"].values():
            assert f"{value['value']}x ({value['confidence']} confidence)" in text
    assert "| cifar10_resnet | yellowfin | 1.93x (low confidence) | not run |" in text
    assert "| toy_task | yellowfin | — | mini |" in text
    assert "[train_loss](toy_task/mini/toy_task_mini_train_loss.png)" in text
    assert "## YellowFin over tuned momentum SGD" in text
    assert "diverged 1" in text and "failed 1" in text


def test_report_without_runs_still_shows_the_paper(tmp_path: Path):
    out = tmp_path / "README.md"
    assert main(["report", "--runs", str(tmp_path / "none"), "--out", str(out)]) == 0
    text = out.read_text()
    assert "No runs found" in text and "3.28x (high confidence)" in text


def test_non_finite_values_written_as_strings_load_as_floats(tmp_path):
    from yfbench.analysis.runs import load_runs

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(
        "seed: 1\ntask: {name: t}\nscale: {name: mini}\noptimizer: {name: sgd, lr: 0.1}\n"
        "analysis: {window: 1}\n"
    )
    (run / "metrics.jsonl").write_text(
        '{"step": 1, "split": "train", "loss": 1.0}\n'
        '{"step": 1, "split": "valid", "loss": 2.0, "perplexity": "inf"}\n'
        '{"step": 2, "split": "train", "loss": "nan"}\n'
    )
    frame = load_runs([tmp_path])
    assert frame["loss"].dtype == float and frame["perplexity"].dtype == float
    assert frame["perplexity"].dropna().tolist() == [float("inf")]
