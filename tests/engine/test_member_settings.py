"""Members of one stack with their own settings (learning rate, Adam's betas, lambda_GP,
lambda_MMD, the moving average's decay; iwgan.engine.stacking.SETTING_FIELDS), and Adam's
two arithmetics (iwgan.engine.optim).

In float64 each member equals its single run to 1e-9 (relative): every logged loss, the
final metrics and the optimiser state. Members that share their settings run exactly the
code a stack ran before members could differ: bit for bit what torch.optim.Adam on the
stacked tensors gives. The fused Adam rounds differently in the last bit: a stack with it
equals its members' fused single runs to 1e-9 in float64, and torch's arithmetic to
float32 rounding after one step."""

import dataclasses

import pytest
import torch

from iwgan.core.methods import adam
from iwgan.engine.config import make_config
from iwgan.engine.optim import MemberAdam
from iwgan.engine.stacking import SETTING_FIELDS, Members, check_stackable, plan_stacks
from tests.engine.members import assert_members_are_single_runs

# Four members of one stack, each its own settings (seed, mixture and preset too).
SETTINGS = [dict(seed=0, mixture="ring", lr=1e-3, beta1=0.5, beta2=0.9, lambda_gp=5.0,
                 lambda_mmd=10.0, ema=0.9),
            dict(seed=1, mixture="grid", lr=3e-4, beta1=0.0, beta2=0.99, lambda_gp=1.0,
                 lambda_mmd=3.0, ema=0.5),
            dict(seed=0, mixture="spiral", lr=2e-3, beta1=0.9, beta2=0.999, lambda_gp=10.0,
                 lambda_mmd=0.1, ema=0.0),
            dict(seed=2, mixture="ring", lr=1e-3, beta1=0.5, beta2=0.9, lambda_gp=0.3,
                 lambda_mmd=10.0, ema=0.99)]


def config(method, **kw):
    kw = {"iterations": 12, "lr_schedule": "linear", **kw}
    return make_config("quick", method=method, width=0.1, batch_size=32, log_every=3,
                       eval_samples=300, **kw)


@pytest.mark.parametrize("method", ["iwgan", "wgan_gp", "ali", "alpha_gan"])
def test_in_float64_members_with_their_own_settings_are_their_single_runs(float64, method):
    assert_members_are_single_runs([config(method, **s) for s in SETTINGS])


def test_in_float64_a_fused_adam_stack_is_its_members_fused_single_runs(float64):
    assert_members_are_single_runs([config("iwgan", adam="fused", **s) for s in SETTINGS[:2]]
                                   + [config("iwgan", adam="fused", seed=5)])


def stepped(opt_maker, params, grads):
    ps = [p.clone().requires_grad_() for p in params]
    opt = opt_maker(ps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1.0 - it / 10)
    for g in grads:
        for p, gi in zip(ps, g):
            p.grad = gi.clone()
        opt.step()
        sched.step()
    return ps


def test_members_that_share_their_settings_step_as_torch_adam_did_bit_for_bit():
    torch.manual_seed(0)
    params = [torch.randn(6, 16, 8), torch.randn(6, 8)]
    grads = [[torch.randn_like(p) for p in params] for _ in range(5)]
    cfg = config("iwgan")
    ours = stepped(lambda ps: MemberAdam(ps, [cfg.lr] * 6, [cfg.beta1] * 6, [cfg.beta2] * 6),
                   params, grads)
    torchs = stepped(lambda ps: adam(ps, cfg), params, grads)
    assert all(torch.equal(a, b) for a, b in zip(ours, torchs))
    # fused: the same Adam, other rounding (the last bit of float32)
    fused = stepped(lambda ps: MemberAdam(ps, [cfg.lr] * 6, [cfg.beta1] * 6,
                                          [cfg.beta2] * 6, impl="fused"), params, grads)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(ours, fused))


def test_per_member_adam_is_each_members_torch_adam(float64):
    torch.manual_seed(0)
    lrs, b1s, b2s = [1e-3, 3e-4, 2e-3], [0.5, 0.0, 0.9], [0.9, 0.99, 0.999]
    params = [torch.randn(3, 16, 8), torch.randn(3, 8)]
    grads = [[torch.randn_like(p) for p in params] for _ in range(5)]
    for impl in ("torch", "fused"):
        ours = stepped(lambda ps, impl=impl: MemberAdam(ps, lrs, b1s, b2s, impl=impl),
                       params, grads)
        for k in range(3):
            single = stepped(lambda ps, k=k: torch.optim.Adam(ps, lr=lrs[k],
                                                               betas=(b1s[k], b2s[k])),
                             [p[k] for p in params], [[g[k] for g in gs] for gs in grads])
            for a, b in zip(ours, single):
                assert torch.allclose(a[k], b, rtol=1e-12, atol=1e-15), (impl, k)


def test_what_members_may_and_may_not_differ_in():
    base = config("iwgan")
    check_stackable([dataclasses.replace(base, seed=i, **{f: v})
                     for i, (f, v) in enumerate([("lr", 2e-3), ("beta1", 0.0), ("beta2", 0.99),
                                                 ("lambda_gp", 1.0), ("lambda_mmd", 1.0),
                                                 ("ema", 0.9)], 1)] + [base])
    assert set(SETTING_FIELDS) == {"lr", "beta1", "beta2", "lambda_gp", "lambda_mmd", "ema"}
    for field, value in (("n_critic", 3), ("width", 0.2), ("batch_size", 16),
                         ("adam", "fused")):
        with pytest.raises(ValueError, match=field):
            check_stackable([base, dataclasses.replace(base, seed=1, **{field: value})])


def test_a_grid_shares_stacks_across_settings_only_when_asked():
    cfgs = [config("iwgan", seed=s, lr=lr) for s in (0, 1) for lr in (1e-3, 3e-4)]
    assert len(plan_stacks(cfgs, "on")) == 2
    [one] = plan_stacks(cfgs, "on", share_settings=True)
    assert one == tuple(cfgs)
    members = Members(list(one))
    assert members.varying == {"lr": [1e-3, 3e-4, 1e-3, 3e-4]}


def test_a_stack_checkpointed_by_torch_adam_continues_bit_for_bit():
    """A stack's checkpoint from before members could differ (torch.optim.Adam and its
    schedule's state) resumes in MemberAdam as if it had never stopped."""
    torch.manual_seed(0)
    params = [torch.randn(4, 8, 3), torch.randn(4, 3)]
    grads = [[torch.randn_like(p) for p in params] for _ in range(6)]
    cfg = config("iwgan")

    def schedule(it):
        return 1.0 - it / 10

    def run(resume_at=None):
        ps = [p.clone().requires_grad_() for p in params]
        opt = adam(ps, cfg)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        for i, g in enumerate(grads):
            if i == resume_at:   # as the trainer resumes: build, then load the states
                saved, saved_sched = opt.state_dict(), sched.state_dict()
                opt = MemberAdam(ps, [cfg.lr] * 4, [cfg.beta1] * 4, [cfg.beta2] * 4)
                sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
                opt.load_state_dict(saved)
                sched.load_state_dict(saved_sched)
            for p, gi in zip(ps, g):
                p.grad = gi.clone()
            opt.step()
            sched.step()
        return ps

    assert all(torch.equal(a, b) for a, b in zip(run(), run(resume_at=3)))
