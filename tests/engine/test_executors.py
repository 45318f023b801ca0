"""Grid fan-out on existing engines: a tiny grid through a Dask LocalCluster and through
submitit's local executor gives the rows of the local executor; a worker that dies
mid-run has its unit run again; a unit that keeps failing is recorded as failed and the
grid finishes; an unreachable scheduler or a missing Slurm is a one-line error before
anything is written."""

import os
from pathlib import Path

import pandas as pd
import pytest

from iwgan.cli import main
from iwgan.engine.config import make_config
from iwgan.engine.executors import DaskExecutor, ExecutorOptions, SlurmExecutor
from iwgan.engine.records import read_results

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
GRID = ["mode-coverage", "--profile", "tiny", "--methods", "iwgan", "wgan_gp", "--mixtures",
        "ring", "--presets", "paper", "--seeds", "2", "--stack", "off", "--no-report",
        "--jobs", "2"]
METRICS = ["modes", "hq_pct", "kl", "w1", "recon_error", "latent_mmd", "converged"]


@pytest.fixture(autouse=True)
def importable(monkeypatch):
    """Worker processes import this test module (its runners) by name."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT),
                                                                    os.environ.get(
                                                                        "PYTHONPATH")])))
    monkeypatch.chdir(ROOT)


def rows(out: Path) -> pd.DataFrame:
    return read_results(out / "results" / "mode_coverage.csv").set_index("run_id")


@pytest.mark.parametrize("executor", [["--executor", "dask"],
                                      ["--executor", "slurm", "--slurm-local"]])
def test_a_tiny_grid_gives_the_local_executors_rows(tmp_path, executor):
    assert main([*GRID, "--out", str(tmp_path / "local")]) == 0
    assert main([*GRID, "--out", str(tmp_path / "other"), *executor]) == 0
    local, other = rows(tmp_path / "local"), rows(tmp_path / "other")
    assert sorted(local.index) == sorted(other.index) and len(local) == 4
    pd.testing.assert_frame_equal(local.loc[other.index, METRICS], other[METRICS])


MARK = "IWGAN_TEST_DIE_ONCE"


def die_once(unit, progress=None):
    """A runner whose first attempt kills its own worker process, as a lost node would."""
    marker = Path(os.environ[MARK]) / unit[0].run_id
    if not marker.exists():
        marker.touch()
        os._exit(1)
    return [{"run_id": c.run_id, "status": "finished"} for c in unit]


def always_fails(unit, progress=None):
    raise RuntimeError("this unit always fails")


def failed(unit, error):
    return [{"run_id": c.run_id, "status": "failed", "error": error} for c in unit]


UNITS = [(make_config("tiny", seed=s),) for s in (0, 1)]


@pytest.mark.parametrize("executor", ["dask", "slurm"])
def test_a_lost_worker_reruns_its_unit_and_a_failing_unit_is_recorded(tmp_path, monkeypatch,
                                                                      executor):
    monkeypatch.setenv(MARK, str(tmp_path))
    options = ExecutorOptions(kind=executor, jobs=2, slurm_local=True,
                              folder=tmp_path / "submitit")
    recorded = []

    def run(runner):
        recorded.clear()
        if executor == "dask":
            with DaskExecutor.connect(options) as ex:
                return ex.run(UNITS, runner, recorded.append, failed)
        return SlurmExecutor.check(options).run(UNITS, runner, recorded.append, failed)

    run(die_once)
    assert sorted(r[0]["run_id"] for r in recorded) == sorted(u[0].run_id for u in UNITS)
    assert {r[0]["status"] for r in recorded} == {"finished"}
    run(always_fails)
    assert {r[0]["status"] for r in recorded} == {"failed"}
    assert all("always fails" in r[0]["error"] for r in recorded)


def test_an_unreachable_scheduler_is_one_line_before_anything_is_written(tmp_path, capsys):
    rc = main([*GRID, "--out", str(tmp_path), "--executor", "dask", "--scheduler",
               "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert err.startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    assert list(tmp_path.iterdir()) == []


def test_slurm_without_slurm_or_the_local_fallback_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert main([*GRID, "--out", str(tmp_path), "--executor", "slurm"]) == 2
    err = capsys.readouterr().err
    assert "needs Slurm (no sbatch on this machine)" in err and "--slurm-local" in err
    assert list(tmp_path.iterdir()) == []
