"""A tuned point at the edge of its lr grid is flagged: the grid did not bracket the best
lr, and the tables that name the point say so. The bracket check probes lrs outside the
grids beside the tuned ones: beyond an edge, and between decade steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.run_builder import write_run
from yfbench.analysis import bracket
from yfbench.analysis.__main__ import main
from yfbench.analysis.runs import load_runs
from yfbench.analysis.speedup import grid_points, tuned


def _grid(root: Path, final_by_lr: dict[float, float]):
    for lr, final in final_by_lr.items():
        losses = [3.0, 2.5, 2.0, 1.5, final, final]
        write_run(root, {"name": "adam", "lr": lr}, 1, losses, name=f"lr{lr}")
    return grid_points(load_runs([root]), 2)


@pytest.mark.parametrize(
    ("finals", "note"),
    [
        ({0.01: 1.2, 0.1: 1.1, 1.0: 1.0}, "tuned at the largest lr tried (lr=1)"),
        ({0.01: 1.0, 0.1: 1.1, 1.0: 1.2}, "tuned at the smallest lr tried (lr=0.01)"),
        ({0.01: 1.2, 0.1: 1.0, 1.0: 1.1}, ""),
    ],
)
def test_a_tuned_lr_at_the_edge_of_the_grid_is_noted(tmp_path, finals, note):
    point, said = tuned(_grid(tmp_path, finals), "adam")
    assert point is not None and float(point.settings["lr"]) == min(finals, key=finals.get)
    if note:
        assert said == f"{note}: the grid does not bracket it"
    else:
        assert said == ""


def test_a_single_lr_is_no_grid_and_has_no_edge(tmp_path):
    assert tuned(_grid(tmp_path, {0.1: 1.0}), "adam")[1] == ""


# The bracket check: lrs probed beside the tuned ones, on the tuning seed, apart from the grid.


@pytest.mark.parametrize(
    ("lr", "neighbour", "beyond", "name"),
    [
        (10.0, 3.0, 30.0, "momo_lr30"),
        (1.0, 0.3, 3.0, "momo_lr3"),
        (0.03, 0.01, 0.1, "momo_lr1e-1"),
        (5.0, 1.0, 30.0, "momo_lr30"),  # 25 rounds to the ladder's 30
        (1e-4, 1e-3, 1e-5, "momo_lr1e-5"),
    ],
)
def test_the_lr_beyond_continues_the_grid_s_step_on_the_1_3_10_ladder(lr, neighbour, beyond, name):
    found = bracket.step_beyond(lr, neighbour)
    assert found == pytest.approx(beyond)
    assert bracket.grid_point_name("momo", found) == name


@pytest.mark.parametrize(
    ("lr", "neighbour", "between"),
    [
        (0.01, 0.001, 0.003),  # a decade below: the ladder's 3e-3 was skipped
        (0.01, 0.1, 0.03),
        (1.0, 5.0, 3.0),  # momentum SGD's grid tops out at 5
        (0.1, 0.01, 0.03),
        (0.01, 0.003, None),  # half a decade: nothing between
        (3.0, 10.0, None),
        (0.3, 1.0, None),
    ],
)
def test_a_decade_step_beside_the_tuned_lr_is_probed_half_way(lr, neighbour, between):
    found = bracket.rung_between(lr, neighbour)
    assert found == (pytest.approx(between) if between else None)


def _timed_run(root: Path, name: str, lr: float, seed: int, final: float, valid: float) -> None:
    """A toy/cpu run whose smoothed training loss ends at ``final``, its validation loss
    (at the last step) at ``valid``, one second per step."""
    losses = [3.0, 2.5, 2.0, final, final]
    seconds = [float(step) for step in range(1, len(losses) + 1)]
    write_run(
        root,
        {"name": name, "lr": lr},
        seed,
        losses,
        train_extra={"time_s": seconds},
        valid={"loss": valid, "time_s": seconds[-1]},
    )


def _bracket_runs(root: Path) -> tuple[Path, Path]:
    """momo tuned at its largest lr (10), whose lr beyond (30) ends lower by more than its
    evaluation seeds' spread; muon at its largest (0.01), whose lr beyond (0.03) ends lower
    within that spread; nesterov_cosine at its smallest (0.1), whose lr beyond (0.03) ends
    higher; sgd at its largest with no run beyond, nor between it and its neighbour a decade
    below (0.3); adam inside its decade grid: 0.003 beside it ends higher, 0.03 not run."""
    tuning, beyond = root / "tuning", root / "beyond"
    grids = {
        "momo": {1.0: 1.3, 3.0: 1.2, 10.0: 1.1},
        "nesterov_cosine": {0.1: 1.0, 0.3: 1.2, 1.0: 1.3},
        "sgd": {0.1: 1.3, 1.0: 1.2},
        "adam": {0.001: 1.3, 0.01: 1.0, 0.1: 1.2},
        "muon": {0.001: 1.3, 0.003: 1.2, 0.01: 1.1},
    }
    for name, finals in grids.items():
        for lr, final in finals.items():
            _timed_run(tuning, name, lr, 1, final, final + 0.5)
    # Evaluation seeds at the chosen points: sd 0.0141 (momo), 0.1414 (muon).
    for name, lr, finals in (("momo", 10.0, (1.1, 1.12)), ("muon", 0.01, (1.0, 1.2))):
        for seed, final in enumerate(finals, start=2):
            _timed_run(tuning, name, lr, seed, final, final)
    probe_runs = (
        ("momo", 30.0, 0.9),
        ("muon", 0.03, 1.05),
        ("nesterov_cosine", 0.03, 1.4),
        ("adam", 0.003, 1.1),
    )
    for name, lr, final in probe_runs:
        _timed_run(beyond, name, lr, 1, final, final + 0.5)
    return tuning, beyond


def test_the_bracket_table_says_what_each_probe_beside_a_tuned_lr_did(tmp_path):
    tuning, beyond = _bracket_runs(tmp_path)
    table = bracket.bracket_table(load_runs([tuning]), load_runs([beyond]), window=2)
    table = table.set_index(["optimizer", "lr_probe"], drop=False)
    assert sorted(table.index) == [
        ("adam", 0.003),
        ("adam", 0.03),
        ("momo", 30.0),
        ("momo", 100.0),  # 30 ended lower: the grown grid goes one lr further, not run yet
        ("muon", 0.03),
        ("nesterov_cosine", 0.03),
        ("sgd", 0.3),
        ("sgd", 10.0),
    ]
    momo = table.loc[("momo", 30.0)]
    assert momo["seed_sd"] == pytest.approx(0.0141, abs=1e-4)
    assert momo[["where", "lr"]].tolist() == ["beyond the largest", 10.0]
    assert momo[["score_probe", "final_probe"]].tolist() == pytest.approx([0.9, 1.4])
    assert "under-tuned at the grid's edge" in bracket.verdict(momo)
    # The lr further out is compared with the probe that ended lower, not with the choice.
    further = table.loc[("momo", 100.0)]
    assert further[["where", "lr"]].tolist() == ["beyond the largest", 30.0]
    assert further["score"] == pytest.approx(0.9)
    assert bracket.verdict(further) == "not run yet"
    # No evaluation seeds at its chosen point: the sign decides, and the verdict says so.
    assert bracket.verdict(table.loc[("nesterov_cosine", 0.03)]) == (
        "lr 0.03 ends higher (+0.4000, no seed sd): lr 0.1 stays"
    )
    assert bracket.outcome(table.loc[("muon", 0.03)]) == "within"
    assert "no verdict" in bracket.verdict(table.loc[("muon", 0.03)])
    # sgd: its edge and the decade below its choice; adam: the decade on each side.
    assert table.loc[("sgd", 10.0), "where"] == "beyond the largest"
    assert table.loc[("sgd", 0.3), "where"] == "between, below"
    assert bracket.verdict(table.loc[("sgd", 0.3)]) == "not run yet"
    assert table.loc[("adam", 0.03), "where"] == "between, above"
    assert bracket.verdict(table.loc[("adam", 0.003)]).startswith("lr 0.003 ends higher")
    [line] = bracket.findings(table.reset_index(drop=True))
    assert "8 lrs outside the grids, beside the tuned ones (5 beyond an edge, 3 between " in line
    assert "4 ran on the tuning seed" in line
    assert "spread for momo at lr 30 (final loss 1.6 -> 1.4) (within it for muon at lr 0.03" in line


def _decade_grid(root: Path) -> tuple[Path, Path]:
    """adam on a decade grid (1e-3, 1e-2, 1e-1), tuned at 1e-2 with evaluation seeds 2, 3
    (sd 0.0141); momo on a half-decade grid. adam's probe at 3e-3 ends lower by more than
    the spread, at 3e-2 higher."""
    tuning, probed = root / "tuning", root / "probed"
    grids = {"adam": {0.001: 1.3, 0.01: 1.0, 0.1: 1.2}, "momo": {1.0: 1.3, 3.0: 1.0, 10.0: 1.2}}
    for name, finals in grids.items():
        for lr, final in finals.items():
            _timed_run(tuning, name, lr, 1, final, final + 0.5)
    for seed, final in ((2, 1.0), (3, 1.02)):
        _timed_run(tuning, "adam", 0.01, seed, final, final)
    for lr, final in ((0.003, 0.9), (0.03, 1.1)):
        _timed_run(probed, "adam", lr, 1, final, final + 0.5)
    return tuning, probed


def test_a_decade_grid_is_probed_between_its_steps_and_a_lower_probe_is_named(tmp_path, capsys):
    tuning, probed = _decade_grid(tmp_path)
    # Only adam's grid steps by a decade beside its choice; momo's lr is bracketed.
    assert bracket.probe_names(tuning, window=2) == "adam_lr3e-3,adam_lr3e-2"
    table = bracket.bracket_table(load_runs([tuning]), load_runs([probed]), window=2)
    below, above = (row for _, row in table.sort_values("lr_probe").iterrows())
    assert (below["where"], above["where"]) == ("between, below", "between, above")
    assert bracket.verdict(below).startswith(
        "lr 0.003 ends lower (-0.1000, seed sd 0.01414): under-tuned between the grid's "
        "decade steps"
    )
    assert bracket.outcome(above) == "higher"
    assert bracket.main(["lower", str(tuning), str(probed)]) == 0
    assert capsys.readouterr().out.strip() == "adam_lr3e-3"
    notes = bracket.probe_notes(load_runs([tuning]), load_runs([probed]))
    assert notes[("toy", "cpu", "default", "adam")] == (
        "lr 0.003 ends lower: under-rated; lr 0.03 ends higher"
    )


def test_the_bracket_command_names_the_points_and_writes_the_table(tmp_path, capsys):
    tuning, beyond = _bracket_runs(tmp_path)
    # sgd's probes have no config: one clear message names them.
    assert bracket.main(["probes", str(tuning)]) == 2
    said = capsys.readouterr().err
    assert said.startswith("error: no grid point config for ") and said.count("\n") == 1
    assert "sgd_lr10" in said and "sgd_lr3e-1" in said and "adam_lr" not in said
    out = tmp_path / "out"
    args = [str(tuning), "--probe-runs", str(beyond), "--out", str(out), "--window", "2"]
    assert bracket.main(args) == 0
    page = (out / "bracket.md").read_text()
    assert "under-tuned at the grid's edge" in page and "not run yet" in page


def test_the_report_states_the_bracket_check_beside_the_leaderboard(tmp_path):
    peers = tmp_path / "peers"
    tuning, beyond = _bracket_runs(tmp_path)
    peers.mkdir()
    tuning.rename(peers / "runs")  # tuning/toy/cpu -> peers/runs/toy/cpu
    beyond.rename(peers / bracket.PROBE_RUNS)
    made = bracket.run_findings(peers, label=str.upper)
    [line] = made.lines
    assert line.startswith("Grid check, TOY (cpu): 8 lrs outside the grids")
    assert made.lead == []  # no probe ran on the evaluation seeds yet
    # The report states it among the leaderboard's findings and links the table.
    from yfbench.analysis.report import _peer_findings, _peers_section

    assert f"- {line}" in _peer_findings(tmp_path, str.upper).lines
    (tmp_path / "leaderboard.md").write_text("made by make leaderboard")
    args = [str(peers / "runs"), "--probe-runs", str(peers / bracket.PROBE_RUNS)]
    assert bracket.main([*args, "--out", str(peers), "--window", "2"]) == 0
    link = "[grid check: lrs probed beside the tuned ones](peers/bracket.md)"
    assert link in "\n".join(_peers_section(tmp_path))


def test_the_leaderboard_says_what_the_lr_beyond_an_edge_did(tmp_path):
    tuning, beyond = _bracket_runs(tmp_path)
    # The reference sets the target; without evaluation runs of its own it cannot.
    for seed in (2, 3):
        _timed_run(tuning, "nadamw_algoperf", 0.00175, seed, 1.5, 1.5)
    out = tmp_path / "leaderboard.md"
    args = ["leaderboard", str(tuning), "--probe-runs", str(beyond), "--out", str(out)]
    assert main(args) == 0
    rows = {line.split(" | ")[0]: line for line in out.read_text().splitlines()}
    assert (
        "| yes (3 settings; chose the largest lr tried; lr 30 ends lower: under-rated) |"
        in (rows["| momo"])
    )
    assert "chose the largest lr tried; lr 0.03 within the seeds' spread)" in rows["| muon"]
    # Without the runs beyond, the cell names the edge only.
    assert main(["leaderboard", str(tuning), "--out", str(out)]) == 0
    assert "| yes (3 settings; chose the largest lr tried) |" in out.read_text()


def test_a_grid_without_an_edge_says_so_once_its_second_stage_has_begun(tmp_path):
    peers = tmp_path / "peers"
    tuning, beyond = _bracket_runs(tmp_path)
    peers.mkdir()
    runs = tuning.rename(peers / "runs")
    beyond.rename(peers / bracket.PROBE_RUNS)
    # calm: every lr inside its half-decade grid, evaluated on seed 2; early: an edge, but
    # its tuning seed's grid is still running (no evaluation seed yet), so it is not judged.
    grids = {"calm": {0.003: 1.3, 0.01: 1.0, 0.03: 1.2}, "early": {0.01: 1.2, 0.1: 1.0}}
    for task, finals in grids.items():
        for lr, final in finals.items():
            losses = [3.0, 2.5, 2.0, final, final]
            write_run(runs, {"name": "adam", "lr": lr}, 1, losses, task=task, valid={"loss": 2})
    losses = [3.0, 2.5, 2.0, 1.0, 1.0]
    write_run(runs, {"name": "adam", "lr": 0.01}, 2, losses, task="calm", valid={"loss": 2})
    lines = bracket.run_findings(peers).lines
    assert [line.split(":")[0] for line in lines] == [
        "Grid check, calm (cpu)",
        "Grid check, toy (cpu)",
    ]
    assert lines[0] == f"Grid check, calm (cpu): {bracket.INSIDE}."
    # The table names such a grid, and a table of grids with nothing to probe is no error.
    assert bracket.main([str(runs / "calm" / "cpu"), "--out", str(tmp_path), "--window", "2"]) == 0
    assert f"calm/cpu/default: {bracket.INSIDE}." in ((tmp_path / "bracket.md").read_text())


def test_an_lr_beyond_that_ends_lower_runs_on_the_evaluation_seeds(tmp_path, capsys):
    tuning, beyond = _bracket_runs(tmp_path)
    # Only momo's lr beyond ends lower by more than the seeds' spread: a grown grid picks it.
    assert bracket.main(["lower", str(tuning), str(beyond)]) == 0
    assert capsys.readouterr().out.strip() == "momo_lr30"
    assert bracket.lower_names(tuning, tmp_path / "none") == ""  # nothing ran beyond
    for seed, final in ((2, 0.95), (3, 0.97)):
        _timed_run(beyond, "momo", 30.0, seed, final, final)
    table = bracket.bracket_table(load_runs([tuning]), load_runs([beyond]), window=2)
    momo = table.set_index(["optimizer", "lr_probe"], drop=False).loc[("momo", 30.0)]
    assert momo["eval_seeds_probe"] == "2,3"
    assert momo[["final_eval", "final_eval_probe"]].tolist() == pytest.approx([1.11, 0.96])
    assert bracket.verdict(momo).endswith("; on evaluation seeds 2,3 final loss 1.11 -> 0.96")
    # The first screen's summary names what the probe raises, with the same medians.
    assert bracket.raised(table, str.upper) == ["momo at lr 30 on TOY (cpu) (loss 1.11 -> 0.96)"]
    # A grown grid goes one lr further (100, no config here: one message names it) ...
    assert bracket.main(["probes", str(tuning), str(beyond)]) == 2
    assert "momo_lr100" in capsys.readouterr().err
    # ... and stops where that ends higher than 30 by more than 30's own seeds' spread.
    _timed_run(beyond, "momo", 100.0, 1, 0.95, 1.45)
    table = bracket.bracket_table(load_runs([tuning]), load_runs([beyond]), window=2)
    chain = table[table["optimizer"] == "momo"].set_index("lr_probe", drop=False)
    assert chain.index.tolist() == [30.0, 100.0]
    assert bracket.verdict(chain.loc[100.0]).startswith(
        "lr 100 ends higher (+0.0500, seed sd 0.01414)"
    )
    # The leaderboard's cell gives the number it would show with a grid that brackets.
    for seed in (2, 3):
        _timed_run(tuning, "nadamw_algoperf", 0.00175, seed, 1.5, 1.5)
    out = tmp_path / "leaderboard.md"
    args = ["leaderboard", str(tuning), "--probe-runs", str(beyond), "--out", str(out)]
    assert main(args) == 0
    assert "lr 30 ends lower: under-rated, median final there 0.96; lr 100 ends higher)" in (
        out.read_text()
    )
