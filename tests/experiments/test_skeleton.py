"""The skeleton every experiment shares: one results row builder for finished, diverged
and failed runs, the evaluation curve's plateau verdict, and a grid that records each unit
as it finishes."""

import math

import numpy as np
import pytest

from iwgan.engine.config import make_config
from iwgan.engine.trainer import MemberResult
from iwgan.experiments.convergence import Convergence
from iwgan.experiments.mode_coverage import ModeCoverage
from iwgan.experiments.skeleton import Curve, ended, failed_unit


def test_a_row_says_how_its_run_ended_after_the_columns_it_started_with():
    cfg = make_config("tiny")
    start = {"run_id": cfg.run_id}
    done = ended(start, MemberResult(cfg, None, iterations=6, wall_time=1.5))
    assert done == {"run_id": cfg.run_id, "status": "finished", "diverged_at": done["diverged_at"],
                    "iterations_run": 6, "train_seconds": 1.5}
    assert math.isnan(done["diverged_at"])
    stopped = ended(start, MemberResult(cfg, None, iterations=4, status="stopped_early"))
    assert stopped["status"] == "stopped_early" and stopped["iterations_run"] == 4
    diverged = ended(start, MemberResult(cfg, None, iterations=3, status="diverged",
                                         diverged_at=3, wall_time=0.5))
    assert (diverged["status"], diverged["diverged_at"], diverged["iterations_run"]) == \
        ("diverged", 3, 3)
    failed = ended(start, error="RuntimeError: lost")
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: lost"
    assert failed["iterations_run"] == 0 and math.isnan(failed["train_seconds"])


@pytest.mark.parametrize("experiment", [ModeCoverage, Convergence])
def test_a_failed_unit_gets_every_members_row_with_the_experiments_columns(experiment,
                                                                          tmp_path):
    unit = tuple(make_config("tiny", seed=s) for s in (0, 1))
    pairs = failed_unit(unit, "RuntimeError: lost", experiment(tmp_path))
    rows = [row for row, _ in pairs]
    assert [r["run_id"] for r in rows] == [c.run_id for c in unit]
    assert all(r["status"] == "failed" and r["stacked"] == 2 and r["converged"] is False
               for r in rows)
    assert all(r["config_hash"] == c.hash() for r, c in zip(rows, unit))
    assert all(curve.empty for _, curve in pairs)
    assert not (tmp_path / "runs").exists()      # a failed unit leaves no run directory


class Line(Curve):
    """A curve whose metric follows ``values`` evaluation by evaluation."""

    def __init__(self, cfg, values):
        super().__init__(cfg, every=1)
        self.values = iter(values)

    def measure(self, it, models):
        return {"y": next(self.values)}

    def limits(self):
        return {"y": ("y", 0.1, 0.0)}


def test_a_curve_records_every_evaluation_and_its_verdict_is_the_plateau_rule():
    cfg = make_config("tiny")
    flat, rising = Line(cfg, [5.0] * 13), Line(cfg, np.linspace(1, 13, 13))
    for curve in (flat, rising):
        curve.on_log({"iteration": 3, "wall_time": 2.0})
        for it in range(13):
            curve(it, models=None)
        assert [r["iteration"] for r in curve.records] == list(range(13))
        assert curve.records[0]["train_seconds"] == 0.0       # before training
        assert curve.records[1]["train_seconds"] == 2.0
    assert flat.verdict(12)["converged"] and not rising.verdict(12)["converged"]
    assert flat.verdict(12)["plateau_evaluations"] == 4        # the last quarter's
    assert math.isnan(Line(cfg, []).verdict(12)["converged"])  # too few evaluations
