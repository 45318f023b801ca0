"""reports/convergence.md's comparison of the plateau rule's verdicts on two curves of the
same runs, from made-up rows."""

import pandas as pd

from iwgan.engine.records import SCHEMA_VERSION
from iwgan.reporting.convergence import rule_agreement


def test_the_rules_verdicts_on_two_curves_of_the_same_runs_are_counted_per_method(tmp_path):
    flags = [("iwgan", True, True), ("iwgan", True, False), ("iwgan", False, True),
             ("wgan_gp", False, False)]
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
    assert "same final modes and HQ %" in text and "agree on 2/4 runs" in text
    assert "| iwgan | 3 | 1 | 1 | 1 | 0 | 1/3 |" in text
    assert "| wgan_gp | 1 | 0 | 0 | 0 | 1 | 1/1 |" in text
    assert rule_agreement(ours.drop(columns="converged"), tmp_path) == []
