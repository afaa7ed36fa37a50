"""The report's measures on constructed curves with known answers: evaluation seeds, the
reverse measure, the not-meaningful mark, fixed-budget intervals, the best baseline per
target, clip binding and the findings block."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_analysis_speedup import records
from yfbench.analysis.best_baseline import best_baseline_table
from yfbench.analysis.bundle import build
from yfbench.analysis.clipping import binding_share
from yfbench.analysis.differences import decay_at_end
from yfbench.analysis.findings import END, START, write_findings
from yfbench.analysis.fixed_budget import (
    fixed_budget_table,
    student_t_cdf,
    student_t_quantile,
    t_interval,
)
from yfbench.analysis.protocol import evaluation_plan, tuning_seeds
from yfbench.analysis.speedup import (
    compare_all,
    grid_points,
    seeds_frame,
    summary_frame,
    tuned,
    tuned_grid_point_names,
)
from yfbench.analysis.tables import speedup_cell
from yfbench.errors import UserError

LINE = [10.0 - t for t in range(1, 10)] + [1.5]  # 9, 8, ..., 1, then 1.5 (best 1 at t=9)


def frame(*runs: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(runs, ignore_index=True)


# --- tuning seeds and evaluation seeds -----------------------------------------------------


def two_stage(method: dict[int, list[float]], adam_seed1_other: list[float]) -> pd.DataFrame:
    """Adam lr=1 (seeds 1-3) and lr=2 (seed 1 only); method "m" with the given seeds."""
    adam = [records("adam", 1.0, s, LINE, window=1) for s in (1, 2, 3)]
    other = records("adam", 2.0, 1, adam_seed1_other, window=1)
    runs = [records("m", 1.0, s, c, window=1) for s, c in method.items()]
    return frame(*adam, other, *runs)


def test_tuning_seeds_are_the_seeds_every_grid_point_has():
    data = two_stage({1: LINE, 2: LINE, 3: LINE}, [9.0] * 10)
    points = grid_points(data, 1)
    assert tuning_seeds(points) == (1,)
    by_lr = {p.hparams: p for p in points if p.optimizer == "adam"}
    method = next(p for p in points if p.optimizer == "m")
    plan = evaluation_plan(method, by_lr["lr=1.0"], tuning_seeds(points))
    assert plan.used == (2, 3) and not plan.provisional
    assert plan.label == "2 evaluation seeds (2,3)"


def test_only_evaluation_seeds_are_timed_and_the_tuning_seed_never_is():
    # Seed 1 of the method is much faster than seeds 2 and 3: it must not count.
    fast = [5.0, 0.5] + [0.5] * 8  # below 1 at t=2: 9/2 = 4.5x
    slow = [9.0, 8.0, 7.0, 6.0, 0.5] + [0.5] * 5  # below 1 at t=5: 9/5 = 1.8x
    data = two_stage({1: fast, 2: slow, 3: slow}, [9.0] * 10)
    seeds = seeds_frame(compare_all(data, "adam", ladder=(1.0,)))
    assert seeds["seed"].tolist() == [2, 3]
    assert seeds["speedup_tt"].tolist() == pytest.approx([1.8, 1.8])
    row = summary_frame(compare_all(data, "adam", ladder=(1.0,))).iloc[0]
    assert row["seeds_used"] == "2 evaluation seeds (2,3)" and not row["provisional"]


def test_the_tuned_point_is_chosen_on_the_tuning_seed_alone():
    # Adam lr=2 beats lr=1 on seed 1 (its only seed); lr=1 wins on seeds 2-3, which must
    # not matter: tuned = lr=2. It has no evaluation seed, so the comparison is provisional.
    data = two_stage({1: LINE, 2: LINE}, [0.5] * 10)
    row = summary_frame(compare_all(data, "adam", ladder=(1.0,))).iloc[0]
    assert row["baseline_hparams"] == "lr=2"
    assert row["provisional"] and row["seeds_used"].startswith("provisional: tuning seed 1")
    assert row["seeds"] == 1


def test_an_evaluation_seed_that_diverges_cannot_move_the_tuned_point():
    # Adam lr=1 wins on the tuning seed 1 and then diverges on evaluation seed 3; lr=2
    # (seed 1 only) must not take its place, and seed 3's divergence is reported.
    adam = [records("adam", 1.0, 1, LINE, window=1), records("adam", 1.0, 2, LINE, window=1)]
    adam.append(records("adam", 1.0, 3, LINE[:4], status="diverged", window=1))
    other = records("adam", 2.0, 1, [9.0] * 10, window=1)
    method = [records("m", 1.0, s, LINE, window=1) for s in (1, 2, 3)]
    data = frame(*adam, other, *method)
    points = grid_points(data, 1)
    chosen, note = tuned(points, "adam")
    assert (chosen.optimizer, chosen.hparams) == ("adam", "lr=1.0") and "partial" not in note
    assert chosen.statuses[3] == "diverged"


def test_the_tuned_choice_waits_for_an_unfinished_tuning_run_not_for_an_evaluation_run():
    def run(lr: float, seed: int, losses: list[float], status: str = "completed"):
        named = records("adam", lr, seed, losses, status=status, window=1)
        return named.assign(grid_point=f"adam_lr{lr:g}")

    # lr=2's tuning run is still going (another process, or stopped): it could still win.
    data = frame(run(1.0, 1, LINE), run(2.0, 1, LINE[:4], status="interrupted"))
    with pytest.raises(UserError, match=r"1 run\(s\) of toy/mini \(default\) that could change"):
        tuned_grid_point_names(data)
    # Every tuning run finished: an evaluation seed still going at the chosen point is the
    # second stage's to resume, and does not hold the choice up.
    data = frame(run(1.0, 1, LINE), run(2.0, 1, [9.0] * 10), run(1.0, 2, LINE[:4], "interrupted"))
    assert tuned_grid_point_names(data) == ["adam_lr1"]


# --- reverse measure and the not-meaningful mark ---------------------------------------------


def test_reverse_measure_is_the_baseline_time_to_the_methods_own_best():
    # The method flattens at 3.0 from t=4 (its best, first at t=4) and never reaches Adam's
    # best (1 at t=9). Adam first reaches 3.0 at t=7 (10 - 7 = 3): reverse T/T = 7/4;
    # paper convention (W = 1, strict <): Adam first below 3.0 at t=8, (8-1)/(4-1).
    method = [9.0, 6.0, 4.0, 3.0, 3.0, 3.5, 3.0, 3.2, 3.1, 3.3]
    data = frame(records("adam", 1.0, 1, LINE, window=1), records("m", 1.0, 1, method, window=1))
    row = summary_frame(compare_all(data, "adam", ladder=(1.0,))).iloc[0]
    assert row["reached_tt"] == 0 and row["bound_tt"] == pytest.approx(0.9)
    assert row["reverse_tt"] == pytest.approx(7 / 4)
    assert row["reverse_paper"] == pytest.approx(7 / 3)
    assert speedup_cell(row, "tt") == "reverse 1.75x (0/1 reached; < 0.90x)"


def test_reverse_measure_below_one_when_the_baseline_gets_there_sooner():
    # Adam falls fast (1.0 by t=3); the method reaches its best 2.0 only at t=10. Adam first
    # reaches 2.0 at t=2: reverse T/T 2/10 = 0.2x.
    adam = [3.0, 2.0, 1.0] + [1.0] * 7
    method = [9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.5, 3.0, 2.5, 2.0]
    data = frame(records("adam", 1.0, 1, adam, window=1), records("m", 1.0, 1, method, window=1))
    row = summary_frame(compare_all(data, "adam", ladder=(1.0,))).iloc[0]
    assert row["reverse_tt"] == pytest.approx(0.2)


def test_paper_convention_marks_a_denominator_that_is_a_sliver_of_the_window():
    # W = 4: smoothed values exist from t = 4. The method's smoothed loss is below Adam's best
    # at t = 5, so T - W = 1 < 0.5 W: not meaningful; T/T is never marked.
    adam = [10.0] * 6 + [4.0] * 14
    method = [0.0] * 20
    data = frame(records("adam", 1.0, 1, adam, window=4), records("m", 1.0, 1, method, window=4))
    row = summary_frame(compare_all(data, "adam", ladder=(1.0,))).iloc[0]
    assert row["not_meaningful_paper"] == 1 and row["not_meaningful_tt"] == 0
    assert "not meaningful in 1/1 seeds" in speedup_cell(row, "paper")
    assert "not meaningful" not in speedup_cell(row, "tt")


# --- fixed budget ----------------------------------------------------------------------------


def test_student_t_matches_closed_forms():
    # df = 1 is Cauchy: quantile tan(pi (p - 1/2)); df = 2: (2p - 1) / sqrt(2 p (1 - p)).
    assert student_t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-6)
    assert student_t_quantile(0.975, 2) == pytest.approx(0.95 / math.sqrt(2 * 0.975 * 0.025))
    assert student_t_cdf(0.0, 5) == 0.5 and student_t_cdf(-1.0, 3) < 0.5


def test_t_interval_of_three_differences():
    low, high = t_interval([0.1, 0.2, 0.3])
    half = student_t_quantile(0.975, 2) * 0.1 / math.sqrt(3)
    assert (low, high) == pytest.approx((0.2 - half, 0.2 + half))
    assert all(math.isnan(v) for v in t_interval([0.1]))


def offset(curve: list[float], by: float) -> list[float]:
    return [v + by for v in curve]


@pytest.mark.parametrize(
    ("shifts", "verdict"),
    [
        ((-0.1, -0.2, -0.3), "tie"),
        ((-0.1, -0.11, -0.12), "method lower"),
        ((0.5, 0.5), "baseline lower"),  # no spread: a zero-width interval at +0.5
    ],
)
def test_fixed_budget_paired_difference_and_verdict(shifts, verdict):
    # Seeds 2.. are evaluation seeds (seed 1 tunes). The method is Adam's curve shifted by
    # a constant per seed, so every budget's paired difference is that constant.
    seeds = range(2, 2 + len(shifts))
    adam = [records("adam", 1.0, s, LINE, window=1) for s in (1, *seeds)]
    adam.append(records("adam", 2.0, 1, [9.0] * 10, window=1))  # a grid point: seed 1 tunes
    method = [records("m", 1.0, 1, LINE, window=1)]
    method += [
        records("m", 1.0, s, offset(LINE, d), window=1) for s, d in zip(seeds, shifts, strict=True)
    ]
    table = fixed_budget_table(compare_all(frame(*adam, *method), "adam"))
    assert table["budget"].tolist() == [0.25, 0.5, 0.75, 1.0]
    assert table["mean"].tolist() == pytest.approx([np.mean(shifts)] * 4)
    assert table["n"].tolist() == [len(shifts)] * 4
    assert set(table["verdict"]) == {verdict}


def test_fixed_budget_with_one_seed_has_no_interval():
    data = frame(
        records("adam", 1.0, 1, LINE, window=1), records("m", 1.0, 1, offset(LINE, -1), window=1)
    )
    table = fixed_budget_table(compare_all(data, "adam"))
    assert set(table["verdict"]) == {"one seed: no interval"}
    # 25% of 10 steps: the smoothed loss at t = 2 (9 - 1 = 8 for Adam, 7 for the method).
    assert table.iloc[0]["step"] == 2 and table.iloc[0]["mean"] == pytest.approx(-1.0)


# --- best baseline per target ----------------------------------------------------------------


def test_best_adam_per_target_names_the_first_grid_point_to_reach_it():
    # Tuned Adam (lr=1): LINE, best 1.0 at t=9; by 30% of its run (t <= 3) its best is 7
    # (t=3). Adam lr=2 drops to 6.5 at t=2, then stays at 6.5 (never tuned): it reaches
    # the 30% target (7) first, at t=2. The method reaches 7 at t=4 and 1.0 never.
    fast = [8.0, 6.5] + [6.5] * 8
    method = [9.0, 8.0, 7.5, 7.0] + [5.0] * 6
    data = frame(
        records("adam", 1.0, 1, LINE, window=1),
        records("adam", 2.0, 1, fast, window=1),
        records("m", 1.0, 1, method, window=1),
    )
    comparisons = compare_all(data, "adam", ladder=(0.3,))
    grids = {("toy", "mini", "default"): grid_points(data, 1)}
    table = best_baseline_table(comparisons, grids).set_index("fraction")
    early, late = table.loc[0.3], table.loc[1.0]
    assert early["tuned_hparams"] == "lr=1" and early["T_tuned"] == 3
    assert early["best_hparams"] == "lr=2" and early["T_best"] == 2
    assert early["T_method"] == 4
    assert early["speedup_vs_tuned"] == pytest.approx(3 / 4)
    assert early["speedup_vs_best"] == pytest.approx(2 / 4)
    assert late["best_hparams"] == "lr=1" and math.isnan(late["T_method"])


# --- clip binding ----------------------------------------------------------------------------


def test_clip_binding_share_from_grad_norm_and_bracketed_from_yellowfin_norms():
    direct = pd.DataFrame({"step": [1, 2, 3, 4], "grad_norm": [1.0, 6.0, 5.0, 7.0]})
    assert binding_share(direct, 5.0) == (0.5, 0.5, "grad_norm")
    # YellowFin: post-clip norms 5 (the task's clip bound), 1 (neither bound) and
    # sqrt(100 h_max_prev) = 2 (its own clip bound; the task's may have): 1/3 to 2/3.
    yf = pd.DataFrame(
        {"step": [1, 2, 3], "grad_norm_sq": [25.0, 1.0, 4.0], "h_max": [0.5, 0.04, 0.1]}
    )
    low, high, source = binding_share(yf, 5.0)
    assert (low, high) == pytest.approx((1 / 3, 2 / 3)) and "YellowFin" in source
    assert math.isnan(binding_share(pd.DataFrame({"step": [1]}), 5.0)[0])


def test_decay_that_never_engages_at_a_short_length():
    assert decay_at_end(0.9, 14, 14) == 1.0  # WSJ at the CPU scale: 14.2 epochs
    assert decay_at_end(0.97, 0, 49) == pytest.approx(0.97**49)


def test_settling_is_judged_net_of_the_recipe_decay():
    # 30 steps; the recipe halves the lr at step 16. Momentum SGD (lr 1, μ 0.9) follows it;
    # YellowFin's tuner holds lr/(1−μ) = 4 before the decay (settled), while a second
    # YellowFin's tuner doubles it when the decay halves it (raw change 0, net +100%).
    from yfbench.analysis.hyperparams import hyperparams_rows

    steps = 30
    decay = np.where(np.arange(1, steps + 1) < 16, 1.0, 0.5)

    def run(optimizer: str, lr: np.ndarray, momentum: float) -> pd.DataFrame:
        out = records(optimizer, 1.0, 1, list(np.linspace(3, 1, steps)), window=3)
        return out.assign(lr=lr, momentum=momentum)

    sgd = run("momentum_sgd", decay, 0.9)
    for yf_lr, raw, net in ((2.0 * decay, -0.5, 0.0), (np.full(steps, 2.0), 0.0, 1.0)):
        data = frame(sgd, run("yellowfin", yf_lr, 0.5))
        points = {p.optimizer: p for p in grid_points(data, 3)}
        rows = {r["optimizer"]: r for r in hyperparams_rows(data, list(points.values()), points, 3)}
        yf = rows["yellowfin"]
        assert yf["effective_1/3"] == pytest.approx(4.0)
        assert yf["change"] == pytest.approx(raw)
        assert yf["decay_change"] == pytest.approx(-0.5)
        assert yf["tuner_change"] == pytest.approx(net)
        assert rows["momentum_sgd"]["tuner_change"] == pytest.approx(0.0)


# --- findings block --------------------------------------------------------------------------


def test_findings_replace_only_the_marked_block(tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nintro\n\n{START}\nold\n{END}\n\nrest\n")
    write_findings(readme, ["- YellowFin loses"], "make figures")
    text = readme.read_text()
    assert text.startswith("# title\n\nintro\n\n") and text.endswith(f"{END}\n\nrest\n")
    assert "- YellowFin loses" in text and "old" not in text
    readme.write_text("no markers\n")
    with pytest.raises(UserError, match="findings:start"):
        write_findings(readme, ["x"], "make figures")


def test_bundle_findings_lead_with_a_loss_to_momentum_sgd():
    # Momentum SGD: LINE; YellowFin flattens at 3 (never reaches 1): it loses.
    from yfbench.analysis.findings import findings, lead, summary_line
    from yfbench.analysis.paper import paper_numbers

    flat = [9.0, 6.0, 4.0, 3.0] + [3.0] * 6
    data = frame(
        *[records("adam", 1.0, s, offset(LINE, 0.1), window=1) for s in (1, 2)],
        *[records("momentum_sgd", 1.0, s, LINE, window=1) for s in (1, 2)],
        *[records("yellowfin", 1.0, s, flat, window=1) for s in (1, 2)],
    )
    bundle = build(data)
    lines = findings(bundle, paper_numbers(), pd.DataFrame())
    assert "hand-tuned momentum SGD beats untuned YellowFin on 1 of 1 tasks" in lines[0]
    assert "reverse measure" in lines[0]
    # The summary line says it first, with Adam's standing and the held-out rank.
    short = summary_line(lead(bundle, paper_numbers()))
    assert short[0] == "- **In short** (each is detailed below):"
    assert short[1] == (
        "  - Hand-tuned momentum SGD beats untuned YellowFin at the mini scale (provisional: "
        "tuning seeds only) on 1 of 1 tasks (toy; YellowFin wins 0)."
    )
    assert short[2].startswith("  - Tuned Adam beats untuned YellowFin at the mini scale (")
    assert summary_line([]) == []


@pytest.mark.parametrize(
    ("yellowfin_offsets", "line"),
    [
        # Reaches momentum SGD's best on every seed and ends lower on every seed: a win.
        ((-0.5, -0.6), "**At the mini scale, untuned YellowFin beats hand-tuned momentum SGD"),
        # Reaches it on every seed, but the end-of-run difference straddles zero: a tie.
        ((-0.5, 0.5), "YellowFin against tuned momentum SGD at the mini scale: "),
    ],
)
def test_bundle_findings_call_a_win_only_where_the_end_of_run_loss_is_lower_too(
    yellowfin_offsets, line
):
    from yfbench.analysis.findings import findings
    from yfbench.analysis.paper import paper_numbers

    def sooner(by: float) -> list[float]:
        # Below momentum SGD's best (1, at t=9) from t=8 on; the curve ends at 1 + by.
        return [10.0 - t for t in range(2, 9)] + [0.9, 0.9, 1.0 + by]

    # Two grid points each (seed 1 tunes them), then the tuned points on seeds 2 and 3.
    data = frame(
        records("adam", 0.1, 1, offset(LINE, 2.0), window=1),
        records("momentum_sgd", 0.1, 1, offset(LINE, 2.0), window=1),
        *[records("adam", 1.0, s, offset(LINE, 0.1), window=1) for s in (1, 2, 3)],
        *[records("momentum_sgd", 1.0, s, LINE, window=1) for s in (1, 2, 3)],
        *[
            records("yellowfin", 1.0, s, sooner(by), window=1)
            for s, by in zip((2, 3), yellowfin_offsets, strict=True)
        ],
        records("yellowfin", 1.0, 1, sooner(0.0), window=1),
    )
    lines = findings(build(data), paper_numbers(), pd.DataFrame())
    assert any(text.startswith(f"- {line}") for text in lines), lines


@pytest.mark.parametrize(
    ("end", "line"),
    [
        # Reaches momentum SGD's best later on every seed and ends higher: a loss.
        (1.3, "YellowFin reaches, later than momentum SGD or not at all, tuned momentum"),
        # Reaches it later but ends lower: the two measures disagree, not called a loss.
        (1.1, "YellowFin against tuned momentum SGD at the mini scale: "),
    ],
)
def test_a_loss_is_called_only_where_yellowfin_reaches_later_and_does_not_end_lower(end, line):
    from yfbench.analysis.findings import findings
    from yfbench.analysis.paper import paper_numbers

    # Momentum SGD's best (1, at t=8) ends the run at 1.2; YellowFin reaches it at t=9.
    dip = [10.0 - t for t in range(1, 8)] + [1.0, 1.2, 1.2]
    later = [10.5 - t for t in range(1, 8)] + [2.0, 0.95]
    data = frame(
        records("adam", 0.1, 1, offset(dip, 2.0), window=1),
        records("momentum_sgd", 0.1, 1, offset(dip, 2.0), window=1),
        *[records("adam", 1.0, s, offset(dip, 0.1), window=1) for s in (1, 2, 3)],
        *[records("momentum_sgd", 1.0, s, dip, window=1) for s in (1, 2, 3)],
        *[records("yellowfin", 1.0, s, later + [end + 0.01 * s], window=1) for s in (1, 2, 3)],
    )
    lines = findings(build(data), paper_numbers(), pd.DataFrame())
    assert any(line in text for text in lines), lines
    called_a_loss = any("momentum SGD beats untuned YellowFin" in text for text in lines)
    assert called_a_loss == (end > 1.2)


def test_validation_findings_rank_yellowfin_on_the_held_out_metric():
    from yfbench.analysis.validation import COLUMNS, findings, lead

    def row(task: str, optimizer: str, values: list[float], higher: bool) -> dict:
        metric = "accuracy" if higher else "perplexity"
        return dict.fromkeys(COLUMNS) | {
            "task": task,
            "scale": "mini",
            "setting": "default",
            "optimizer": optimizer,
            "metric": metric,
            "higher_is_better": higher,
            "seeds": "2,3,4",
            "provisional": False,
            "median": float(np.median(values)),
            "low": min(values),
            "high": max(values),
        }

    table = pd.DataFrame(
        [
            # Perplexity: YellowFin's median is the highest, so it is last though its range
            # overlaps Adam's.
            row("lm", "adam", [5.0, 5.2, 5.4], higher=False),
            row("lm", "momentum_sgd", [4.9, 5.0, 5.1], higher=False),
            row("lm", "yellowfin", [5.1, 5.5, 5.6], higher=False),
            # Accuracy: YellowFin's is the highest, so it is first.
            row("cnn", "adam", [0.60, 0.61, 0.62], higher=True),
            row("cnn", "yellowfin", [0.63, 0.64, 0.70], higher=True),
            # No YellowFin run: nothing to rank.
            row("other", "adam", [1.0, 1.0, 1.0], higher=False),
        ],
        columns=COLUMNS,
    )
    lines = findings(table, lambda r: f"{r['task']} ({r['scale']})", str)
    assert "ranks **last of 3 on lm (mini)**; 1st of 2 on cnn (mini)." in lines[0]
    assert lead(table, lambda r: r["task"]) == [
        "on the held-out metric (final validation), YellowFin ranks last of 3 on 1 of 2 tasks "
        "and scales, 1st of 2 on 1"
    ]
    assert lines[1:] == [
        "  - cnn (mini), accuracy (higher is better): yellowfin 0.64 [0.63–0.7], "
        "adam 0.61 [0.6–0.62] [seeds 2,3,4]",
        "  - lm (mini), perplexity (lower is better): momentum_sgd 5 [4.9–5.1], "
        "adam 5.2 [5–5.4], yellowfin 5.5 [5.1–5.6] [seeds 2,3,4]",
    ]
    assert findings(table[table["task"] == "other"], str, str) == []
