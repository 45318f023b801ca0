"""migrate-flags: the run flags of rows recorded before runs recorded them, filled in from
each row's final numbers and its curve by the function a run calls; a recorded flag kept,
a second run a no-op, --check's exit code."""

import numpy as np
import pandas as pd

from iwgan.cli import main
from iwgan.engine.records import SCHEMA_VERSION
from iwgan.metrics.verdicts import run_flags


def long_curve(run_id, modes, hq):
    its = np.linspace(0, 1000, len(modes))
    return pd.DataFrame(
        [{"run_id": run_id, "method": "iwgan", "mixture": "ring", "preset": "paper",
          "seed": 0, "profile": "quick", "iteration": it, "train_seconds": 0.0,
          "metric": metric, "value": value}
         for it, m, h in zip(its, modes, hq) for metric, value in (("modes", m),
                                                                    ("hq_pct", h))])


def table_row(run_id, seed, modes, hq, status="finished", **flags):
    return {"schema_version": SCHEMA_VERSION, "run_id": run_id, "method": "iwgan",
            "mixture": "ring", "preset": "paper", "seed": seed, "profile": "quick",
            "status": status, "modes": modes, "hq_pct": hq, **flags}


FALL = ([2, 8, 8, 8, 8, 8, 8, 7, 6, 5, 7], [0, 60, 80, 83, 83, 82, 83, 32, 41, 42, 39])


def test_missing_flags_are_computed_from_the_curves_and_a_second_run_changes_nothing(
        tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    pd.DataFrame([table_row("a", 0, 7, 39.0), table_row("b", 1, 8, 80.0),
                  table_row("c", 2, np.nan, np.nan, status="diverged")]
                 ).to_csv(results / "mode_coverage.csv", index=False)
    long_curve("a", *FALL).to_csv(results / "mode_coverage_curves.csv", index=False)
    out = ["--out", str(tmp_path)]
    assert main(["migrate-flags", "--check", *out]) == 1
    assert "2 trained row(s) lack a flag" in capsys.readouterr().out
    assert main(["migrate-flags", *out]) == 0
    df = pd.read_csv(results / "mode_coverage.csv").set_index("run_id")
    curve = pd.DataFrame({"iteration": np.linspace(0, 1000, 11), "modes": FALL[0],
                          "hq_pct": FALL[1]})
    assert df.loc["a", ["collapsed", "mode_lost", "degraded_late"]].to_dict() == run_flags(
        curve, 7, 39.0, 8)
    assert not df.loc["b", "collapsed"] and df.loc["b", ["mode_lost", "degraded_late"]
                                                  ].isna().all()   # no curve: not known
    assert df.loc["c", ["collapsed", "mode_lost", "degraded_late"]].isna().all()
    text = (results / "mode_coverage.csv").read_text()
    assert main(["migrate-flags", *out]) == 0 and main(["migrate-flags", "--check", *out]) == 0
    assert (results / "mode_coverage.csv").read_text() == text


def test_a_recorded_flag_is_kept(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    pd.DataFrame([table_row("a", 0, 7, 39.0, collapsed=np.nan, mode_lost=False,
                            degraded_late=False)]).to_csv(results / "mode_coverage.csv",
                                                          index=False)
    long_curve("a", *FALL).to_csv(results / "mode_coverage_curves.csv", index=False)
    assert main(["migrate-flags", "--out", str(tmp_path)]) == 0
    row = pd.read_csv(results / "mode_coverage.csv").iloc[0]
    assert not row.collapsed and not row.mode_lost and not row.degraded_late
