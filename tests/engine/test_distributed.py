"""Data-parallel image training under torchrun, on the CPU with gloo: two processes on a
global batch train to the weights one process reaches on that batch (to float rounding:
the gradients are averaged over the processes, so they sum in another order), only rank
0 writes, and a killed two-process run resumes to the uninterrupted weights."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from iwgan.engine.config import make_image_config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
# Two-process weights agree with one process to this (relative to the largest weight).
TOLERANCE = 1e-5


def images(out: Path, nproc: int, method: str, iterations: int, *extra) -> subprocess.Popen:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable])
    cmd = [*launcher, "-m", "iwgan", "images", "--dataset", "digits", "--profile", "smoke",
           "--methods", method, "--iterations", str(iterations), "--device", "cpu",
           "--out", str(out), "--cache-dir", str(out.parent / "cache"), "--no-report", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def weights(out: Path, method: str, iterations: int) -> dict:
    cfg = make_image_config("digits", "smoke", method=method, iterations=iterations,
                            device="cpu")
    state = torch.load(out / "runs" / cfg.run_id / "checkpoint.pt", weights_only=True)
    return state["members"]["params"]


LONG = 400   # iterations: long enough to be killed between two checkpoints


def checkpoint_of(out: Path, iterations: int) -> Path:
    cfg = make_image_config("digits", "smoke", method="wgan_gp", iterations=iterations,
                            device="cpu")
    return out / "runs" / cfg.run_id / "checkpoint.pt"


def kill_after_a_checkpoint(p: subprocess.Popen, ckpt: Path) -> None:
    """SIGKILL torchrun and its ranks as soon as the first checkpoint is written."""
    deadline = time.monotonic() + 200
    while not ckpt.exists() and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(10)


def assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    scale = max(float(t.abs().max()) for t in a.values())
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=TOLERANCE * scale), name


@pytest.mark.parametrize("method", ["wgan_gp", "alpha_gan"])
def test_two_processes_on_a_global_batch_reach_one_process_weights(tmp_path, method):
    one, two = tmp_path / "one", tmp_path / "two"
    for out, nproc in ((one, 1), (two, 2)):
        p = images(out, nproc, method, 6)
        assert p.wait(300) == 0, p.stdout.read()
    assert_close(weights(one, method, 6), weights(two, method, 6))
    import pandas as pd

    row = pd.read_csv(two / "results" / "images.csv").iloc[0]
    assert (row.processes, row.global_batch, row.batch_per_process) == (2, 16, 8)


def test_a_killed_two_process_run_resumes_to_the_uninterrupted_weights(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    p = images(whole, 2, "wgan_gp", LONG)
    assert p.wait(300) == 0, p.stdout.read()
    p = images(killed, 2, "wgan_gp", LONG)
    ckpt = checkpoint_of(killed, LONG)
    kill_after_a_checkpoint(p, ckpt)
    saved = torch.load(ckpt, weights_only=True)["iteration"]
    assert 0 < saved < LONG, "the kill came too late to test resuming"
    p = images(killed, 2, "wgan_gp", LONG, "--resume")
    assert p.wait(300) == 0, p.stdout.read()
    assert_close(weights(whole, "wgan_gp", LONG), weights(killed, "wgan_gp", LONG))


def test_a_resume_with_another_number_of_processes_is_refused(tmp_path):
    out = tmp_path / "out"
    p = images(out, 2, "wgan_gp", LONG)
    kill_after_a_checkpoint(p, checkpoint_of(out, LONG))
    p = images(out, 1, "wgan_gp", LONG, "--resume")
    text = p.communicate(timeout=300)[0]
    assert p.returncode == 2, text
    assert "written by a run over 2 process(es), this one has 1" in text
    assert not (out / "results" / "images.csv").exists()
