"""Every device: the suite asks torch for the device a run names, and a device this
machine lacks is a one-line error before anything is written.

This CPU build of torch cannot make CUDA tensors. With ``torch.cuda.is_available``
patched to True the suite then believes a GPU is there: the sessions default to it and
ask torch for CUDA tensors, which this build refuses; the error must say so and name the
device, proving the runs would be placed on the GPU rather than trained on the CPU."""

import pytest
import torch

from iwgan.cli import main
from iwgan.data.mixtures import MixtureBatches
from iwgan.engine import devices
from iwgan.engine.config import make_config
from iwgan.engine.devices import check_device
from iwgan.engine.trainer import Trainer

pytestmark = pytest.mark.skipif(torch.cuda.is_available(),
                                reason="checks the messages of a machine without CUDA")
GRID = ["mode-coverage", "--profile", "tiny", "--methods", "iwgan", "--mixtures", "ring",
        "--seeds", "1", "--jobs", "1"]


@pytest.fixture
def cuda_claimed(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_with_cuda_claimed_the_main_job_asks_torch_for_cuda_and_fails_naming_it(
        cuda_claimed, tmp_path, capsys):
    assert main([*GRID, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: device 'cuda' cannot be used:") and "\n" not in err
    assert "CUDA" in err
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


def test_past_the_check_the_trainer_puts_the_networks_on_the_asked_device(cuda_claimed,
                                                                           monkeypatch):
    # Skip the up-front probe: the first thing the trainer asks torch for is a CUDA
    # module, which this build refuses.
    monkeypatch.setattr(devices, "check_device", lambda name: torch.device(name))
    monkeypatch.setattr("iwgan.engine.stacking.check_device", lambda name: torch.device(name))
    cfg = make_config("tiny", device="cuda")
    with pytest.raises((AssertionError, RuntimeError), match="CUDA"):
        Trainer([cfg], MixtureBatches([cfg]))


def test_on_this_cpu_every_tensor_of_a_run_is_on_its_device():
    cfg = make_config("tiny", device="cpu")
    trainer = Trainer([cfg], MixtureBatches([cfg]))
    trainer.run_iteration()
    members = trainer.members
    assert {p.device.type for p in members.params.values()} == {"cpu"}
    assert {g.device.type for g in members.generators} == {"cpu"}
    states = [v for opt in members.optimizers.values() for s in opt.state.values()
              for v in s.values() if torch.is_tensor(v)]
    assert states and {t.device.type for t in states} == {"cpu"}


@pytest.mark.parametrize("command", [GRID, ["convergence", "--profile", "tiny"],
                                     ["images", "--dataset", "digits", "--profile", "smoke"],
                                     ["throughput"]])
@pytest.mark.parametrize("device, message", [("cuda", "torch sees no CUDA device"),
                                             ("cuda:1", "torch sees no CUDA device"),
                                             ("foo", "unknown device 'foo'"),
                                             ("tpu", "unknown device 'tpu'")])
def test_a_device_this_machine_lacks_is_refused_before_anything_is_written(
        command, device, message, tmp_path, capsys):
    assert main([*command, "--device", device, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_check_device_accepts_the_cpu():
    assert check_device("cpu") == torch.device("cpu")
