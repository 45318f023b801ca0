"""What the stacking tests share: a tolerance check that treats two NaNs
as equal, and the check that every member of a stack is its single run."""

import math

import pytest
import torch

from iwgan.engine.trainer import train
from iwgan.experiments.mode_coverage import evaluate


def close(a, b, rel=1e-9, abs_=1e-12):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= abs_ + rel * abs(a)


def assert_members_are_single_runs(cfgs):
    """Each member's logged losses, final metrics and Adam state (with its settings)
    equal its single run's to 1e-9 (relative)."""
    stacked = train(cfgs)
    for cfg, member in zip(cfgs, stacked):
        [single] = train(cfg)
        assert len(single.history) == len(member.history) == 4
        for a, b in zip(single.history, member.history):
            for key in a:
                if key != "wall_time":
                    assert close(a[key], b[key]), (cfg.run_id, a["iteration"], key)
        ours, _ = evaluate(cfg, member.models)
        theirs, _ = evaluate(cfg, single.models)
        for key in theirs:
            assert close(theirs[key], ours[key]), (cfg.run_id, key, theirs[key], ours[key])
        for name, state in single.optimizer_state.items():
            mine = member.optimizer_state[name]
            assert mine["param_groups"][0]["lr"] == pytest.approx(
                state["param_groups"][0]["lr"], rel=1e-15)
            assert tuple(mine["param_groups"][0]["betas"]) == (cfg.beta1, cfg.beta2)
            for idx, s in state["state"].items():
                for key in ("exp_avg", "exp_avg_sq"):
                    assert torch.allclose(s[key], mine["state"][idx][key], rtol=1e-9,
                                          atol=1e-15)
