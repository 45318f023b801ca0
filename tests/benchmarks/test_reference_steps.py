"""The plain reference steps of benchmarks/reference_steps.py compute what the suite's
steps compute: from the same weights and batch (and the same gradient-penalty draw), every
logged loss agrees, for a critic step and then a generator step (after the critic step's
Adam update on both sides). So the suite-vs-reference benchmark compares the same
computation, only written differently."""

import importlib.util
from pathlib import Path

import pytest
import torch

from iwgan.core.methods import DRAWS, METHOD_NAMES, get_method
from iwgan.engine.config import make_config
from iwgan.engine.stacking import Members

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("reference_steps",
                                               ROOT / "benchmarks" / "reference_steps.py")
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_the_reference_step_computes_the_suite_steps_losses(method):
    cfg = make_config("quick", method=method, width=0.25)
    members = Members([cfg])
    models = members.member(0)
    nets, opts = ref.build(method, cfg.width, cfg.lr, (cfg.beta1, cfg.beta2), cfg.z_dim)
    for name, module in models.named().items():
        nets[name].load_state_dict(module.state_dict())
    g = torch.Generator().manual_seed(1)
    x, z = torch.randn(cfg.batch_size, 2, generator=g), torch.randn(cfg.batch_size, 5, generator=g)
    module = get_method(method)
    _, ref_critic, ref_generator, _ = ref.METHODS[method]
    for phase, ref_step in zip(module.phases(cfg), (ref_critic, ref_generator)):
        torch.manual_seed(2)  # the phase's draws (GP weights, ALI's eps), in the step
        noise = {d: DRAWS[d](cfg.batch_size, (2,), cfg.z_dim, None, "cpu") for d in phase.draws}
        ours = members.step(phase, [x], [z], [noise])
        torch.manual_seed(2)
        theirs = ref_step(nets, opts, x, z)
        assert set(ours) == set(theirs) == set(ours) & set(module.LOGS)
        for key in ours:
            torch.testing.assert_close(theirs[key], ours[key], rtol=1e-5, atol=1e-6,
                                       msg=f"{method} {phase.loss.__name__} {key}")
