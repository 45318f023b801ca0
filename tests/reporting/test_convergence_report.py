"""reports/convergence.md's comparison of the plateau rule's verdicts on two curves of the
same runs, and its warning when the mode-coverage table was trained with another recipe,
from made-up rows, and its convergence table's continuation count."""

import pandas as pd
import pytest

from iwgan.engine.records import SCHEMA_VERSION
from iwgan.reporting.common import recipe_text
from iwgan.reporting.convergence import convergence_table
from iwgan.reporting.convergence_agreement import recipe_mismatch, rule_agreement


def test_the_rules_verdicts_on_two_curves_of_the_same_runs_are_counted_per_method(tmp_path):
    flags = [("mypkg.never_installed", True, True), ("iwgan", True, True),
             ("iwgan", True, False), ("iwgan", False, True), ("wgan_gp", False, False)]
    ours = pd.DataFrame([{"run_id": f"r{i}", "method": m, "converged": a, "final_modes": 8,
                          "final_hq_pct": 50.0, "opt_eval_every": 250, "opt_w1_samples": 1000}
                         for i, (m, a, _) in enumerate(flags)])
    theirs = pd.DataFrame([{"schema_version": SCHEMA_VERSION, "run_id": f"r{i}", "method": m,
                            "mixture": "ring", "preset": "paper", "seed": i,
                            "profile": "converged", "converged": b, "modes": 8,
                            "hq_pct": 50.0}
                           for i, (m, _, b) in enumerate(flags)])
    theirs.to_csv(tmp_path / "mode_coverage.csv", index=False)
    text = "\n".join(rule_agreement(ours, tmp_path))
    assert "same final modes and HQ %" in text and "agree on 3/5 runs" in text
    # the recorded settings of rows made before they were recorded: the curve's then
    assert "the mode-coverage table's at 16 points with W1 on 500" in text
    rows = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")]
    # a method no report has heard of (nor can import) follows the built-ins, by name
    assert rows[1:] == ["iwgan", "wgan_gp", "mypkg.never_installed"]
    assert "| iwgan | 3 | 1 | 1 | 1 | 0 | 1/3 |" in text
    assert "| wgan_gp | 1 | 0 | 0 | 0 | 1 | 1/1 |" in text
    recorded = pd.read_csv(tmp_path / "mode_coverage.csv").assign(curve_points=32,
                                                                  curve_w1_samples=1000)
    recorded.to_csv(tmp_path / "mode_coverage.csv", index=False)
    assert "the mode-coverage table's at 32 points with W1 on 1000" in \
        "\n".join(rule_agreement(ours, tmp_path))
    assert rule_agreement(ours.drop(columns="converged"), tmp_path) == []


RECIPE = {"n_critic": 5, "lr": 1e-3, "lr_schedule": "linear", "profile": "converged"}


@pytest.mark.parametrize("theirs, reason", [
    ({"ema": 0.99}, "They were trained with different settings: here n_critic 5, lr 0.001 "
                    "(linear), no moving average, in the table n_critic 5, lr 0.001 (linear), "
                    "moving average of G and Q, decay 0.99."),
    ({"platform": "linux-b"},
     "they were trained on different machines (the rows' platform differs)"),
    ({}, "they were trained on machines the rows do not tell apart"),
])
def test_runs_that_share_an_id_but_not_their_models_are_not_compared(tmp_path, theirs, reason):
    ours = pd.DataFrame([{"run_id": "r0", "method": "iwgan", "converged": True,
                          "final_modes": 8, "final_hq_pct": 50.0, "opt_eval_every": 250,
                          "opt_w1_samples": 1000, "platform": "linux-a", **RECIPE}])
    pd.DataFrame([{"schema_version": SCHEMA_VERSION, "run_id": "r0", "method": "iwgan",
                   "mixture": "ring", "preset": "paper", "seed": 0, "converged": True,
                   "modes": 8, "hq_pct": 61.0, "platform": "linux-a", **RECIPE, **theirs}]
                 ).to_csv(tmp_path / "mode_coverage.csv", index=False)
    text = "\n".join(rule_agreement(ours, tmp_path))
    assert "are not compared" in text and "agree on" not in text
    assert reason in text


def test_the_recipe_names_the_moving_average_and_rows_without_the_column_have_none():
    old = pd.DataFrame([RECIPE, RECIPE])
    assert recipe_text(old) == "n_critic 5, lr 0.001 (linear), no moving average"
    mixed = pd.DataFrame([{**RECIPE, "ema": 0.99}, {**RECIPE, "ema": None}])
    assert recipe_text(mixed) == ("n_critic 5, lr 0.001 (linear), moving average of G and "
                                  "Q, decay none, 0.99")


def test_a_convergence_experiment_on_another_recipe_than_the_table_is_flagged(tmp_path):
    table = pd.DataFrame([{"schema_version": SCHEMA_VERSION, "run_id": "r0",
                           "method": "iwgan", "mixture": "ring", "preset": "paper",
                           "seed": 0, "status": "finished", **RECIPE, "ema": 0.99}])
    table.to_csv(tmp_path / "mode_coverage.csv", index=False)
    ours = pd.DataFrame([RECIPE])
    text = "\n".join(recipe_mismatch(ours, tmp_path))
    assert "Not the recipe of the mode-coverage table" in text
    assert "no moving average" in text and "decay 0.99" in text
    assert recipe_mismatch(ours.assign(ema=0.99), tmp_path) == []


def test_the_convergence_table_counts_the_runs_that_stay_converged_where_they_ran_the_check():
    """Final HQ % 80, 70, 60 (s.d. 10: HQ may move 10 points) and W1 0.2 each (s.d. 0):
    seed 0 stays, seed 1 moves HQ % by 12 points, seed 2 loses a mode."""
    def run(seed, hq, hq_trend, modes_after, **extra):
        return {"mixture": "ring", "method": "iwgan", "n_critic": 5, "cell": "c",
                "status": "finished", "seed": seed, "converged": True, "collapsed": False,
                "it_all_modes_hq": 1000.0, "sec_all_modes_hq": 10.0, "it_w1_below": 500.0,
                "sec_w1_below": 5.0, "final_w1": 0.2, "final_modes": 8, "final_hq_pct": hq,
                "dual_gap_final": 0.1, "curve_w1_recon_final": 0.1,
                "curve_w1_latent_final": 0.1, "continued_iterations": 1250,
                "continued_status": "finished", "continued_w1_trend": 0.0,
                "continued_hq_trend": hq_trend, "continued_modes": modes_after, **extra}
    sub = pd.DataFrame([run(0, 80.0, 3.0, 8), run(1, 70.0, 12.0, 8),
                        run(2, 60.0, 0.0, 7, collapsed=True)])
    lines = "\n".join(convergence_table(sub)).splitlines()
    header, _, row = (line for line in lines if line.startswith("|"))
    assert "| converged | stays converged | collapsed |" in header
    assert "| 3 | 3/3 | 1/3 | 1/3 |" in row
    plain = sub.drop(columns=[c for c in sub if c.startswith("continued_")])
    assert "stays converged" not in "\n".join(convergence_table(plain))
