"""Performance profiles and the peers leaderboard on constructed data with known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.run_builder import write_run
from yfbench.analysis import leaderboard
from yfbench.analysis.__main__ import main
from yfbench.analysis.profiles import plot_profiles, profile, ratios, scores
from yfbench.analysis.runs import load_runs
from yfbench.errors import UserError

INF = math.inf


def test_profile_ratios_and_scores_match_a_hand_computed_answer():
    times = pd.DataFrame(
        {"A": [1.0, 2.0, INF, INF], "B": [2.0, 2.0, 3.0, np.nan]},
        index=["t1", "t2", "t3", "unsolved"],
    )
    ratio = ratios(times)
    assert ratio["A"].tolist() == [1.0, 1.0, INF, INF]
    assert ratio["B"].tolist() == [2.0, 1.0, 1.0, INF]  # a missing time is a failure
    rho = profile(ratio, np.array([1.0, 1.5, 2.0, 4.0]))
    assert rho["A"].tolist() == [0.5, 0.5, 0.5, 0.5]
    assert rho["B"].tolist() == [0.5, 0.5, 0.75, 0.75]
    # Area over [1, 4] / 3: A solves two tasks at ratio 1; B one at 2 and two at 1.
    assert scores(ratio, 4.0).to_dict() == pytest.approx({"A": 2 / 4, "B": (2 / 3 + 2) / 4})
    # A ratio beyond r_max counts as a failure.
    assert scores(ratio, 1.5).to_dict() == pytest.approx({"A": 2 / 4, "B": 2 / 4})
    with pytest.raises(UserError, match="positive"):
        ratios(pd.DataFrame({"A": [0.0]}))


def test_the_profile_plot_regenerated_from_the_same_times_is_the_same_file(tmp_path):
    ratio = ratios(pd.DataFrame({"A": [1.0, 2.0], "B": [2.0, 1.5]}, index=["t1", "t2"]))
    written = []
    for attempt in ("first", "second"):
        paths = plot_profiles({"iterations": ratio}, tmp_path / attempt / "profiles")
        written.append({path.name: path.read_bytes() for path in paths})
    assert sorted(written[0]) == ["profiles.png", "profiles.svg"]
    assert written[0]["profiles.svg"] == written[1]["profiles.svg"]


def _timed(
    root: Path, optimizer: dict, seed: int, accuracy: list[float], seconds_per_step: float
) -> None:
    """A toy/mini run: train records every step, valid every 10 (``accuracy`` in turn),
    all timed."""
    write_run(
        root,
        optimizer,
        seed,
        [1.0] * 40,
        scale="mini",
        window=50,
        train_extra={"lr": 0.1, "time_s": [step * seconds_per_step for step in range(1, 41)]},
        valid={
            "loss": [1 - value for value in accuracy],
            "accuracy": accuracy,
            "time_s": [step * seconds_per_step for step in (10, 20, 30, 40)],
        },
        valid_every=10,
    )


@pytest.fixture
def peer_runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"

    def timed(optimizer: dict, seed: int, accuracy: list[float], seconds_per_step: float):
        _timed(root, optimizer, seed, accuracy, seconds_per_step)

    reference = {"name": "nadamw_algoperf", "lr": 0.00175}
    for seed in (1, 2, 3, 4):
        last = 0.8 + 0.1 * (seed - 3)  # finals 0.7, 0.8, 0.9 on the evaluation seeds
        timed(reference, seed, [0.5, 0.6, 0.7, last], 0.5)
        timed({"name": "never", "lr": 1.0}, seed, [0.1, 0.2, 0.3, 0.4], 0.5)
    # "fast" is tuned over two settings on seed 1 (which would look perfect) ...
    for lr in (0.1, 0.01):
        timed({"name": "fast", "lr": lr}, 1, [0.99] * 4, 2.0)
    # ... and evaluated at lr 0.1 on seeds 2-4 only.
    for seed in (2, 3, 4):
        timed({"name": "fast", "lr": 0.1}, seed, [0.85, 0.9, 0.9, 0.9], 2.0)
    return root


def test_leaderboard_reports_evaluation_seeds_against_the_reference_target(peer_runs, tmp_path):
    overhead = tmp_path / "overhead.json"
    overhead.write_text(
        json.dumps(
            {
                "tasks": {
                    "toy": {"fast": {"state_bytes_per_param": 8.0, "host_syncs_per_step": 2}}
                },
                "measured": "a test",
            }
        )
    )
    out = tmp_path / "results" / "leaderboard.md"
    assert (
        main(["leaderboard", str(peer_runs), "--out", str(out), "--overhead", str(overhead)]) == 0
    )
    text = out.read_text()
    assert "Target: accuracy >= 0.8." in text
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if "lr=" in line}
    # fast: seeds 2-4 reach 0.8 at the first evaluation (step 10, 20 s); seed 1's 0.99 unused.
    assert rows["fast"].startswith(
        "| fast | yes (2 settings; chose the largest lr tried) | 3/3 | 10 | 20 "
        "| 0.9 [0.9, 0.9] | 0.50 | 8.0 | 2.0 |"
    )
    # The reference: 2 of 3 seeds reach its own median at step 40; never: a bound, not a zero.
    assert rows["nadamw_algoperf"].startswith(
        "| nadamw_algoperf | no | 2/3 | 40 | 20 | 0.8 [0.7, 0.9] | 2.00 | — | — |"
    )
    assert rows["never"].startswith("| never | no | 0/3 | > 40 | > 20 | 0.4 [0.4, 0.4] |")
    # Profile scores: iterations fast 1, reference at ratio 4 = r_max scores 0; seconds tie.
    assert "| fast | 1.0 | 1.0 |" in text and "| nadamw_algoperf | 0.0 | 1.0 |" in text
    assert (out.parent / "peers" / "profiles.png").stat().st_size > 0


def test_leaderboard_seconds_come_from_the_interleaved_benchmark_when_given(
    peer_runs, tmp_path, capsys
):
    # The runs' own clocks say fast 2.0 s/step, the reference 0.5; the benchmark says the
    # opposite order: fast 0.5 steps/s, the reference 4, never 1.
    speed = tmp_path / "speed.json"
    rates = {"fast": 0.5, "nadamw_algoperf": 4.0, "never": 1.0}
    speed.write_text(json.dumps({"tasks": {"toy": rates}, "measured": "a quiet test machine"}))
    out = tmp_path / "leaderboard.md"
    assert main(["leaderboard", str(peer_runs), "--out", str(out), "--speed", str(speed)]) == 0
    text = out.read_text()
    assert "one interleaved benchmark (`speed.json`: a quiet test machine)" in text
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if "lr=" in line}
    # Seconds to target = iterations to target / steps/s; a bound stays a bound.
    assert "| 3/3 | 10 | 20 | 0.9 [0.9, 0.9] | 0.50 |" in rows["fast"]
    assert "| 2/3 | 40 | 10 | 0.8 [0.7, 0.9] | 4.00 |" in rows["nadamw_algoperf"]
    assert "| 0/3 | > 40 | > 40 |" in rows["never"]
    # Seconds profile: the reference is fastest now, fast at ratio 2 of r_max 4 scores 2/3.
    assert "| nadamw_algoperf | 0.0 | 1.0 |" in text and "| fast | 1.0 | 0.667 |" in text

    speed.write_text(json.dumps({"tasks": {"toy": {"fast": 0.5}}, "measured": "partial"}))
    assert main(["leaderboard", str(peer_runs), "--out", str(out), "--speed", str(speed)]) == 2
    assert "no rate for nadamw_algoperf on toy" in capsys.readouterr().err


def test_leaderboard_without_the_reference_says_what_to_run(peer_runs, tmp_path, capsys):
    out = tmp_path / "leaderboard.md"
    assert main(["leaderboard", str(peer_runs), "--out", str(out), "--reference", "adam"]) == 2
    assert "reference optimizer 'adam'" in capsys.readouterr().err


def test_a_diverged_run_has_no_final_metric_but_keeps_its_time_to_target(tmp_path):
    valid = {"accuracy": [0.5, 0.9], "loss": [0.5, 0.1], "time_s": [1.0, 2.0]}
    write_run(
        tmp_path,
        {"name": "momo", "lr": 1.0},
        2,
        [1.0] * 20,
        valid=valid,
        valid_every=10,
        status="diverged",
        train_extra={"time_s": [0.1 * s for s in range(1, 21)]},
    )
    [row] = leaderboard.per_run(
        load_runs([tmp_path]), leaderboard.Target("accuracy", True, 0.8)
    ).to_dict("records")
    assert row["status"] == "diverged" and math.isnan(row["final"])
    assert row["iterations"] == 20  # it reached the target before it diverged


def test_an_optimizer_with_tuning_runs_only_is_named_not_ranked(peer_runs, tmp_path):
    _timed(peer_runs, {"name": "slow", "lr": 0.1}, 1, [0.99] * 4, 1.0)
    out = tmp_path / "leaderboard.md"
    assert main(["leaderboard", str(peer_runs), "--out", str(out)]) == 0
    text = out.read_text()
    assert "Not evaluated yet (tuning seed only, not ranked): slow." in text
    assert not any(line.startswith("| slow |") for line in text.splitlines())


def test_findings_name_the_first_to_the_target_the_best_and_yellowfin_s_place(peer_runs):
    # YellowFin, evaluated on seeds 2-4: accuracy 0.8 at step 20, final 0.85 (2nd of 5,
    # behind fast's 0.9); "slow" ran its tuning seed only.
    for seed in (1, 2, 3, 4):
        _timed(peer_runs, {"name": "yellowfin", "lr": 1.0}, seed, [0.6, 0.8, 0.85, 0.85], 1.0)
        # "quick" ties with fast at the first evaluation, and ends lower.
        _timed(peer_runs, {"name": "quick", "lr": 1.0}, seed, [0.8, 0.8, 0.8, 0.8], 1.0)
    _timed(peer_runs, {"name": "slow", "lr": 0.1}, 1, [0.99] * 4, 1.0)
    found = leaderboard.run_findings([peer_runs / "toy" / "mini"], str.upper)
    assert found.lead == [
        "against today's optimizers, YellowFin ranks 2nd of 5 on TOY (mini) by final accuracy"
    ]
    line, profiles = found.lines
    # Medians to the target: fast and quick 10, YellowFin 20, nadamw_algoperf 40 (seed 2
    # never reaches its own median), never: inf. Ratios 1, 1, 2, 4, inf; (4 - r) / 3.
    assert profiles == (
        "Performance profiles over 1 ranked task setting (time to target in iterations, "
        "r_max = 4; 1 = fastest on every one): highest fast 1.000, quick 1.000, YellowFin "
        "0.667; YellowFin 0.667 (2 of 5 score higher) (wall-second scores: "
        "results/leaderboard.md)."
    )
    assert line == (
        "Against today's optimizers, TOY (mini), 5 optimizers (1 more not evaluated yet) on "
        "their evaluation seeds, target accuracy >= 0.8 (the median of nadamw_algoperf); first "
        "to reach it, at a median 10 iterations: fast (3/3 seeds), quick (3/3 seeds); best "
        "final accuracy: fast 0.9; "
        "**YellowFin 2nd of 5** on final accuracy (0.85 [0.85, 0.85]), target reached on 3/3 "
        "seeds (20 iterations)."
    )


def test_findings_say_why_a_grid_cannot_be_ranked_yet(tmp_path):
    _timed(tmp_path, {"name": "yellowfin", "lr": 1.0}, 1, [0.5] * 4, 1.0)
    found = leaderboard.run_findings([tmp_path / "toy" / "mini"], str)
    [line] = found.lines
    assert found.lead == []  # nothing ranked: nothing to summarise
    assert line.startswith("Against today's optimizers, toy (mini): no leaderboard yet (")
    assert "reference optimizer 'nadamw_algoperf'" in line


def test_the_report_links_the_leaderboard_and_states_its_findings(peer_runs, tmp_path):
    from yfbench.analysis.report import _peer_findings, _peers_section

    results = tmp_path / "results"
    assert _peers_section(results) == [] and _peer_findings(results, str) == ([], [])
    (results / "peers").mkdir(parents=True)
    peer_runs.rename(results / "peers" / "runs")
    assert (
        main(
            [
                "leaderboard",
                str(results / "peers" / "runs"),
                "--out",
                str(results / "leaderboard.md"),
            ]
        )
        == 0
    )
    text = "\n".join(_peers_section(results))
    assert "- [leaderboard](leaderboard.md), [performance profiles](peers/profiles.png)" in text
    board, _profiles, edge = _peer_findings(results, str).lines
    assert board.startswith("- Against today's optimizers, toy (mini), 3 optimizers on their")
    # The grid's second stage has begun, so the bracket check speaks for it too.
    assert edge.startswith("- Grid check, toy (mini): ")


def test_a_task_without_a_target_yet_is_named_while_the_others_are_ranked(peer_runs, tmp_path):
    # A second task whose grid is still on its tuning seed: no reference run sets a target.
    write_run(
        peer_runs, {"name": "adam", "lr": 0.1}, 1, [1.0] * 10, task="other", valid={"loss": 1.0}
    )
    out = tmp_path / "leaderboard.md"
    assert main(["leaderboard", str(peer_runs), "--out", str(out)]) == 0
    text = out.read_text()
    assert "## toy / mini / default" in text and "| fast |" in text
    assert "## other / cpu / default\n\nNot ranked yet (no finished evaluation run" in text
