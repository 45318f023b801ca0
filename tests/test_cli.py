"""The command line's answers to a disk that fails it: one line naming the path and the
fix, a non-zero exit, and nothing half-written."""

import errno
import os

import pytest

from iwgan import files
from iwgan.cli import main

GRID = ["mode-coverage", "--profile", "tiny", "--methods", "wgan_gp", "--mixtures", "ring",
        "--presets", "paper", "--seeds", "1", "--jobs", "1", "--no-report"]


def test_an_out_that_is_a_file_is_refused_before_anything_runs(tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("x")
    assert main([*GRID, "--out", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --out {target} is a file, not a folder; give a folder"
    assert main([*GRID, "--out", str(target / "below")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("code, fix", [(errno.ENOSPC, "free disk space"),
                                       (errno.EROFS, "read-only"),
                                       (errno.EACCES, "permission denied")])
def test_a_failing_disk_is_one_line_naming_the_path_and_the_fix(tmp_path, capsys,
                                                                monkeypatch, code, fix):
    def failing(path, data):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(files, "atomic_write_bytes", failing)
    rc = main([*GRID, "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert err[0].startswith(f"error: cannot write {tmp_path}") and fix in err[0]


# --- every config value is checked before anything runs; a failing grid fails -------------

@pytest.mark.parametrize("bad, says", [
    (["--set", "beta1=2"], "beta1 must be in [0, 1)"),
    (["--set", "beta2=1.0"], "beta2 must be in [0, 1)"),
    (["--first-seed", "99999999999999999999"], "--first-seed must be in [0, "),
    (["--set", "batch_size=1"], "batch_size must be at least 2"),
    (["--set", "lambda_gp=nan"], "lambda_gp must be a finite weight >= 0"),
    (["--set", "lambda_gp=-5"], "lambda_gp must be a finite weight >= 0"),
    (["--set", "lambda_mmd=inf"], "lambda_mmd must be a finite weight >= 0"),
    (["--set", "eval_samples=1"], "eval_samples must be at least 2"),
    (["--set", "stop_gap=-1"], "stop_gap must be a finite threshold >= 0"),
])
def test_a_value_no_run_can_use_is_refused_before_anything_runs(tmp_path, capsys, bad, says):
    assert main([*GRID, "--out", str(tmp_path), *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and says in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_an_image_metric_without_samples_to_use_is_refused(tmp_path, capsys):
    rc = main(["images", "--dataset", "digits", "--profile", "smoke", "--methods", "iwgan",
               "--fid-samples", "1", "--out", str(tmp_path)])
    assert rc == 2
    assert "fid_samples must be at least 2" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["runs", "results", "reports"])
def test_a_file_where_the_suite_keeps_a_folder_is_refused(tmp_path, capsys, name):
    (tmp_path / name).write_text("x")
    assert main([*GRID, "--out", str(tmp_path)]) == 2
    assert f"{tmp_path / name} is a file where the suite keeps a folder" in \
        capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_a_run_directory_that_is_a_file_is_refused(tmp_path, capsys):
    from iwgan.engine.config import make_config

    run_id = make_config("tiny", method="wgan_gp", mixture="ring", preset="paper",
                         seed=0).run_id
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / run_id).write_text("x")
    assert main([*GRID, "--out", str(tmp_path)]) == 2
    assert f"{tmp_path / 'runs' / run_id} is a file where the run directory should be" in \
        capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_a_grid_in_which_a_run_fails_exits_1_and_counts_it(tmp_path, capsys, monkeypatch):
    from iwgan.engine.records import read_results
    from iwgan.experiments import skeleton

    def broken(unit, experiment, progress=None, **kw):
        raise RuntimeError("a broken run")

    monkeypatch.setattr(skeleton, "run_unit", broken)
    assert main([*GRID, "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "1 runs in" in captured.out and "0 finished, 0 diverged, 1 failed" in captured.out
    assert "error: 1 run(s) failed" in captured.err and "a broken run" in captured.err
    row = read_results(tmp_path / "results" / "mode_coverage.csv").iloc[0]
    assert row.status == "failed" and "RuntimeError: a broken run" in row.error


def test_repeated_axis_values_are_merged_before_the_grid_is_planned(tmp_path, capsys):
    from iwgan.engine.records import read_results

    rc = main(["mode-coverage", "--profile", "tiny", "--methods", "wgan_gp", "wgan_gp",
               "--mixtures", "ring", "ring", "--presets", "paper", "paper", "--seeds", "1",
               "--jobs", "1", "--stack", "off", "--no-report", "--out", str(tmp_path)])
    assert rc == 0
    assert len(read_results(tmp_path / "results" / "mode_coverage.csv")) == 1
    err = capsys.readouterr().err
    for axis, value in [("methods", "wgan_gp"), ("mixtures", "ring"), ("presets", "paper")]:
        assert f"note: --{axis} repeats {value}: each run is planned once" in err


def test_jobs_above_the_cpu_count_are_capped_with_a_warning_unless_asked_for(capsys):
    import argparse

    from iwgan.engine.executors import cpu_count
    from iwgan.experiments.common import add_grid_arguments, grid_configs

    p = argparse.ArgumentParser()
    add_grid_arguments(p)
    args = p.parse_args(["--profile", "tiny", "--jobs", "50", "--device", "cpu"])
    grid_configs(args)
    assert args.jobs == cpu_count()
    assert f"--jobs 50 is more than the {cpu_count()} CPU(s)" in capsys.readouterr().err
    args = p.parse_args(["--profile", "tiny", "--jobs", "50", "--oversubscribe",
                         "--device", "cpu"])
    grid_configs(args)
    assert args.jobs == 50


def test_a_failing_cache_directory_names_the_cache_option_not_out(tmp_path, capsys,
                                                                  monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.delenv("IWGAN_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(blocker / "home"))   # ~/.cache cannot be made
    rc = main(["images", "--dataset", "digits", "--profile", "smoke", "--methods", "iwgan",
               "--out", str(tmp_path / "out"), "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert err[0].startswith(f"error: cannot write {blocker / 'home'}")
    assert "choose another --cache-dir (or $IWGAN_CACHE)" in err[0] and "--out" not in err[0]


@pytest.mark.parametrize("command", [[], ["mode-coverage"], ["tune"], ["convergence"],
                                     ["power"], ["reports"]])
def test_help_prints_a_percent_sign_once(command, capsys):
    """argparse formats help strings with %, not descriptions: a "%%" in a description
    would be printed as it stands."""
    with pytest.raises(SystemExit) as ended:
        main([*command, "--help"])
    assert ended.value.code == 0
    assert "%%" not in capsys.readouterr().out
