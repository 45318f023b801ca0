"""The grid survives faults: a killed grid takes its worker processes with it, and two
grids into one --out, one of them killed and resumed, end with every row, no orphan
process, and the metrics of uninterrupted runs."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iwgan.engine.records import read_results

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
GRID = ["-m", "iwgan", "mode-coverage", "--profile", "tiny", "--mixtures", "ring", "spiral",
        "--presets", "paper", "--seeds", "2", "--no-report", "--set", "iterations=400"]
METRICS = ["modes", "hq_pct", "kl", "w1", "recon_error", "latent_mmd"]


def start(out: Path, methods, jobs, *extra) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, *GRID, "--methods", *methods, "--jobs", str(jobs),
                             "--out", str(out), *extra], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


def wait_until(condition, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_two_grids_into_one_out_one_killed_and_resumed_lose_nothing(tmp_path):
    ref, out = tmp_path / "reference", tmp_path / "out"
    for methods in (["iwgan", "wgan_gp"], ["ali", "alpha_gan"]):
        assert start(ref, methods, 1, "--stack", "off").wait(300) == 0
    a = start(out, ["iwgan", "wgan_gp"], 2, "--stack", "off")
    b = start(out, ["ali", "alpha_gan"], 1, "--stack", "off")
    # Kill grid a (SIGKILL: nothing can catch it) once its workers are training.
    assert wait_until(lambda: len([p for p in children(a.pid) if running(p)]) >= 2, 60)
    time.sleep(2)
    workers = children(a.pid)
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    assert wait_until(lambda: not any(running(p) for p in workers), 10), "orphan workers"
    assert b.wait(300) == 0, b.stderr.read()
    resumed = start(out, ["iwgan", "wgan_gp"], 2, "--stack", "off", "--resume")
    assert resumed.wait(300) == 0, resumed.stderr.read()
    got = read_results(out / "results" / "mode_coverage.csv").set_index("run_id")
    want = read_results(ref / "results" / "mode_coverage.csv").set_index("run_id")
    assert sorted(got.index) == sorted(want.index) and len(got) == 16
    assert (got.status == "finished").all()
    # --stack off: every run is its single run, so resumed or not its numbers are exact.
    assert got.loc[want.index, METRICS].equals(want[METRICS])
    for run_id in want.index:
        assert (out / "results" / "mode_coverage_samples" / f"{run_id}.npy").exists()
