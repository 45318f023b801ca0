"""The conformance check a method's author runs: the built-ins and the worked example pass
it, and deliberately broken copies of the example fail it with a line that says what to
fix."""

from pathlib import Path

import pytest

from iwgan.cli import main
from iwgan.core.methods import METHOD_NAMES, get_method
from iwgan.engine.conformance import CHECKS, check_method

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "wae_gan" / "iwgan_wae" / "wae_gan.py"


@pytest.fixture
def on_path(tmp_path, monkeypatch):
    """A folder on the Python path for method modules; the registry forgets them after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    get_method.cache_clear()
    yield tmp_path
    get_method.cache_clear()


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_the_built_ins_pass_every_check(name):
    checks = check_method(name)
    assert [c.name for c in checks] == [label for label, _ in CHECKS]
    assert [c for c in checks if not c.ok] == []


def test_the_worked_example_passes_every_check(on_path):
    (on_path / "wae_copy.py").write_text(EXAMPLE.read_text())
    checks = {c.name: c for c in check_method("wae_copy")}
    assert all(c.ok for c in checks.values()), [c for c in checks.values() if not c.ok]
    assert "latent_critic" in checks["points"].detail
    assert "lambda_z: float = 1.0 (>= 0)" in checks["options"].detail
    assert checks["duality gap"].detail.startswith("eq4 (default)")


BREAKS = {
    # the losses log a name LOGS does not declare
    "logs": ('LOGS = ("latent_critic_loss", "reconstruction", "latent_adversarial", '
             '"generator_loss")', 'LOGS = ("latent_critic_loss", "reconstruction", '
             '"generator_loss")'),
    # a loss that draws its own noise: not a pure function of its inputs
    "points": ("    codes = m.encoder(x).detach()\n",
               "    codes = m.encoder(x).detach() + 0.01 * torch.randn_like(z)\n"),
    # a module that an optimiser steps, whose loss never reaches it
    "phases": ('optimized={"critic": ("latent_critic",),',
               'optimized={"critic": ("latent_critic", "critic"),'),
}


@pytest.mark.parametrize("broken", sorted(BREAKS))
def test_a_broken_copy_of_the_example_fails_with_a_line_saying_what_to_fix(on_path, capsys,
                                                                           broken):
    old, new = BREAKS[broken]
    text = EXAMPLE.read_text()
    assert old in text
    text = text.replace(old, new)
    if "torch." in new:
        text = text.replace("import torch.nn.functional as F", "import torch\n"
                            "import torch.nn.functional as F")
    (on_path / f"wae_broken_{broken}.py").write_text(text)
    assert main(["check-method", f"wae_broken_{broken}"]) == 1
    out = capsys.readouterr().out
    failed = [line.strip() for line in out.splitlines() if line.strip().startswith("FAIL")]
    assert failed, out
    expected = {"logs": "LOGS declares", "points": "never from a global generator",
                "phases": "did not change"}[broken]
    assert any(expected in line for line in failed), failed
    assert "checks passed; fix:" in out.splitlines()[-1]


def test_a_copy_lacking_part_of_the_interface_is_one_line_and_exit_2(on_path, capsys):
    (on_path / "wae_no_phases.py").write_text(
        EXAMPLE.read_text().replace("def phases(cfg):", "def stages(cfg):"))
    assert main(["check-method", "wae_no_phases"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: method 'wae_no_phases'") and "lacks phases" in err
    assert "\n" not in err
    assert main(["check-method", "not_a_method_anywhere"]) == 2
    assert "unknown method 'not_a_method_anywhere'" in capsys.readouterr().err
