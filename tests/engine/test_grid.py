"""The grid survives faults: a killed grid takes its worker processes with it; two grids
into one --out, one of them killed and resumed, end with every row, no orphan process,
and the metrics of uninterrupted runs; an interrupted grid (Ctrl-C, once or twice) exits
within seconds keeping the row of every run that finished, and --resume completes it
with the metrics of an uninterrupted grid."""

import os
import signal
import subprocess
import sys
import threading
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


# A --jobs 2 grid of 8 runs, interrupted as a terminal's Ctrl-C does (SIGINT to its whole
# process group, the workers included) once its first row is written.
FAULT = ["--methods", "iwgan", "wgan_gp", "--stack", "off"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = start(out, ["iwgan", "wgan_gp"], 2, "--stack", "off")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return read_results(out / "results" / "mode_coverage.csv").set_index("run_id")


def interrupt(out: Path, twice: bool) -> tuple[subprocess.Popen, float, str]:
    """Start the grid, SIGINT its process group once a row is written (twice: again as
    soon as the grid has said it is stopping, so the second lands during its shutdown);
    the seconds from the last SIGINT to its exit, and its stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, *GRID, *FAULT, "--jobs", "2", "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(proc.stderr.readline, "")),
                              daemon=True)
    reader.start()
    csv = out / "results" / "mode_coverage.csv"
    assert wait_until(lambda: csv.exists() or proc.poll() is not None, 600)
    assert proc.poll() is None, "the grid ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    if twice:
        stopping = lambda: any("stopping the grid" in line for line in err)  # noqa: E731
        end = time.monotonic() + 30
        while not stopping() and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGINT)
    sent = time.monotonic()
    proc.wait(timeout=120)
    seconds = time.monotonic() - sent
    reader.join(30)
    return proc, seconds, "".join(err)


def check_kept_and_resume(out: Path, uninterrupted) -> None:
    rows = read_results(out / "results" / "mode_coverage.csv").set_index("run_id")
    assert (rows.status == "finished").all() and 1 <= len(rows) < len(uninterrupted)
    ended = {d.name for d in (out / "runs").iterdir() if (d / "metrics.json").exists()}
    assert ended == set(rows.index)     # every run whose metrics.json exists has its row
    resumed = start(out, ["iwgan", "wgan_gp"], 2, "--stack", "off", "--resume")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    got = read_results(out / "results" / "mode_coverage.csv").set_index("run_id")
    assert sorted(got.index) == sorted(uninterrupted.index)
    assert got.loc[uninterrupted.index, METRICS].equals(uninterrupted[METRICS])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups")
def test_an_interrupted_grid_exits_within_seconds_keeping_every_finished_run(tmp_path,
                                                                            uninterrupted):
    proc, seconds, err = interrupt(tmp_path, twice=False)
    assert proc.returncode == 130 and seconds < 10, err
    assert "interrupted: SIGINT after" in err and "run(s) recorded" in err
    assert "resume with: python -m iwgan mode-coverage " in err and err.rstrip().endswith(
        "--resume")
    check_kept_and_resume(tmp_path, uninterrupted)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups")
def test_a_second_interrupt_during_shutdown_exits_at_once_and_corrupts_nothing(
        tmp_path, uninterrupted):
    proc, seconds, err = interrupt(tmp_path, twice=True)
    if "(twice: stopped at once)" in err:
        assert proc.returncode == 130 and seconds < 3, err
    else:
        # The shutdown (a fraction of a second) ended before the second SIGINT came: the
        # grid had said what it kept, and the late interrupt ended the interpreter's exit
        # early, by the signal itself (a shell shows 130 for both).
        assert proc.returncode in (130, -signal.SIGINT) and seconds < 3, err
        assert "interrupted: SIGINT after" in err and "resume with: " in err, err
    check_kept_and_resume(tmp_path, uninterrupted)
