"""Tiny end-to-end runs of the command-line entry point behind the nox sessions."""

import argparse

import pandas as pd
import pytest

from iwgan.cli import main
from iwgan.data.mixtures import get_mixture
from iwgan.engine.records import SCHEMA_VERSION, read_results
from iwgan.experiments.common import add_grid_arguments, grid_configs
from iwgan.metrics.verdicts import FLAG_COLUMNS, curve_table, run_flags

pytestmark = pytest.mark.slow


def test_mode_coverage_end_to_end_then_the_report_is_rebuilt_from_results(tmp_path):
    rc = main(["mode-coverage", "--profile", "tiny", "--seeds", "1", "--mixtures", "ring",
               "--out", str(tmp_path), "--jobs", "1"])
    assert rc == 0
    df = read_results(tmp_path / "results" / "mode_coverage.csv")
    assert len(df) == 2 * 4  # presets x methods
    assert set(df.status) == {"finished"}
    assert (tmp_path / "results" / "mode_coverage_samples" / f"{df.run_id[0]}.npy").exists()
    run = tmp_path / "runs" / df.run_id[0]
    for name in ("config.json", "manifest.json", "log.jsonl", "metrics.json", "samples.npy",
                 "checkpoint.pt"):
        assert (run / name).exists(), name
    # Each row records its flags, as the function migrate-flags calls gives them from the
    # row's final numbers and its curve in results/.
    curves = curve_table(pd.read_csv(tmp_path / "results" / "mode_coverage_curves.csv"))
    for r in df.itertuples():
        k = get_mixture(r.mixture, r.preset).n_modes
        assert {c: getattr(r, c) for c in FLAG_COLUMNS} == run_flags(
            curves[curves.run_id == r.run_id], r.modes, r.hq_pct, k)
    assert main(["migrate-flags", "--check", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "reports" / "mode_coverage.md").read_text()
    assert "tiny profile, literature preset" in report and "| ring | iwgan |" in report
    first = report
    assert main(["reports", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "reports" / "mode_coverage.md").read_text() == first


def test_resume_skips_finished_runs(tmp_path, capsys):
    args = ["mode-coverage", "--profile", "tiny", "--seeds", "1", "--mixtures", "ring",
            "--methods", "wgan_gp", "--presets", "paper", "--out", str(tmp_path), "--jobs", "1",
            "--no-report"]
    assert main(args) == 0
    assert main([*args, "--resume"]) == 0
    assert "0 runs" in capsys.readouterr().out


def test_an_unknown_method_is_one_line_exit_2_and_nothing_written(tmp_path, capsys):
    assert main(["mode-coverage", "--out", str(tmp_path), "--methods", "iwgan", "vae"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown method 'vae'") and "\n" not in err
    assert "pip install" in err and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [["--mixtures", "moons"],
                                 ["--presets", "veegan"], ["--profile", "huge"],
                                 ["--iterations", "0"], ["--batch-size", "-3"], ["--seeds", "0"]])
def test_bad_input_exits_non_zero_and_writes_nothing(tmp_path, bad):
    with pytest.raises(SystemExit) as err:
        main(["mode-coverage", "--out", str(tmp_path), *bad])
    assert err.value.code != 0
    assert list(tmp_path.iterdir()) == []


def test_results_of_an_older_schema_are_a_clear_error(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    pd.DataFrame([{"schema_version": SCHEMA_VERSION - 1, "run_id": "x", "method": "iwgan",
                   "mixture": "ring", "preset": "paper", "seed": 0, "profile": "quick"}]
                 ).to_csv(results / "mode_coverage.csv", index=False)
    assert main(["reports", "--out", str(tmp_path)]) == 2
    assert "schema" in capsys.readouterr().err
    pd.DataFrame([{"run_id": "x"}]).to_csv(results / "mode_coverage.csv", index=False)
    assert main(["reports", "--out", str(tmp_path)]) == 2
    assert "missing column" in capsys.readouterr().err


def test_reports_without_results_is_a_clear_error(tmp_path, capsys):
    assert main(["reports", "--out", str(tmp_path)]) == 2
    assert "no results" in capsys.readouterr().err


def test_the_converged_profile_refuses_a_budget_the_rule_cannot_judge(tmp_path, capsys):
    rc = main(["mode-coverage", "--profile", "converged", "--iterations", "10",
               "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "use --iterations 12 or more" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad, message", [(["--set", "lr=fast"], "takes a float"),
                                          (["--set", "bogus=1"], "unknown config field"),
                                          (["--set", "mixture=ring"], "use --mixtures"),
                                          (["--set", "lr"], "expected FIELD=VALUE")])
def test_a_bad_field_override_is_refused(tmp_path, capsys, bad, message):
    with pytest.raises(SystemExit) as err:
        main(["mode-coverage", "--out", str(tmp_path), *bad])
    assert err.value.code == 2 and message in capsys.readouterr().err


def test_an_overridden_budget_is_another_run_and_both_rows_stay(tmp_path):
    args = ["mode-coverage", "--profile", "tiny", "--seeds", "1", "--mixtures", "ring",
            "--methods", "wgan_gp", "--presets", "paper", "--out", str(tmp_path), "--jobs",
            "1", "--no-report"]
    assert main(args) == 0
    assert main([*args, "--iterations", "12"]) == 0
    df = read_results(tmp_path / "results" / "mode_coverage.csv")
    assert sorted(df.iterations) == [6, 12] and len(set(df.run_id)) == 2
    assert len(set(df.cell)) == 2


def test_a_moving_average_is_recorded_per_run_and_the_report_names_it(tmp_path):
    rc = main(["mode-coverage", "--profile", "tiny", "--seeds", "1", "--mixtures", "ring",
               "--methods", "wgan_gp", "--presets", "paper", "--set", "ema=0.9", "--out",
               str(tmp_path), "--jobs", "1"])
    assert rc == 0
    df = read_results(tmp_path / "results" / "mode_coverage.csv")
    assert list(df.ema) == [0.9]
    report = (tmp_path / "reports" / "mode_coverage.md").read_text()
    assert "moving average of G and Q, decay 0.9." in report


def test_the_distance_from_the_converged_reference_is_per_cell_means_and_differences():
    from iwgan.experiments.mode_coverage import distance_to_reference

    def rows(values, iterations):
        return pd.DataFrame([{"preset": "paper", "mixture": "ring", "method": "iwgan",
                              "status": "finished", "iterations": iterations, "modes": m,
                              "hq_pct": h, "w1": w} for m, h, w in values])

    ours = rows([(6, 10.0, 0.5), (8, 20.0, 0.3)], 1_500)         # means 7, 15, 0.4
    reference = rows([(8, 80.0, 0.1), (8, 90.0, 0.05)], 5_000)   # means 8, 85, 0.075
    header, line = distance_to_reference(ours, reference)
    assert "5,000 iterations; this grid: 1,500" in header
    assert "modes   7.0 ( 8.0,  -1.0)" in line and "HQ %  15.0 ( 85.0,  -70.0)" in line
    assert "W1 0.400 (0.075, +0.325)" in line
    other = ours.assign(mixture="grid")                           # no reference cell
    assert distance_to_reference(other, reference) == []


def test_the_default_grid_says_when_there_is_no_converged_reference(tmp_path, capsys,
                                                                     monkeypatch):
    import iwgan.experiments.mode_coverage as mc
    monkeypatch.setattr(mc, "committed_reference", lambda protocol="identical": None)
    assert main(["mode-coverage", "--profile", "tiny", "--seeds", "1", "--mixtures", "ring",
                 "--methods", "wgan_gp", "--presets", "paper", "--out", str(tmp_path),
                 "--jobs", "1", "--no-report"]) == 0
    assert "no converged rows of the identical protocol yet" in capsys.readouterr().out


def test_the_converged_profile_defaults_to_its_tables_five_seeds():
    p = argparse.ArgumentParser()
    add_grid_arguments(p)
    seeds = {profile: {c.seed for c in grid_configs(p.parse_args(["--profile", profile,
                                                                   "--device", "cpu"]))}
             for profile in ("converged", "quick")}
    assert seeds == {"converged": set(range(5)), "quick": set(range(3))}
    chosen = grid_configs(p.parse_args(["--profile", "converged", "--seeds", "2",
                                        "--first-seed", "4", "--device", "cpu"]))
    assert {c.seed for c in chosen} == {4, 5}
    assert len(chosen) == 4 * 3 * 2 * 2


def test_a_resumed_grid_still_prints_its_distance_from_the_reference(tmp_path, capsys,
                                                                     monkeypatch):
    import iwgan.experiments.mode_coverage as mc
    reference = pd.DataFrame([{"preset": "paper", "mixture": "ring", "method": "wgan_gp",
                               "status": "finished", "iterations": 5_000, "modes": 8,
                               "hq_pct": 90.0, "w1": 0.05}])
    monkeypatch.setattr(mc, "committed_reference", lambda protocol="identical": reference)
    args = ["mode-coverage", "--profile", "tiny", "--seeds", "1", "--mixtures", "ring",
            "--methods", "wgan_gp", "--presets", "paper", "--out", str(tmp_path), "--jobs", "1",
            "--no-report"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main([*args, "--resume"]) == 0    # nothing trained: the grid's rows are read back
    again = capsys.readouterr().out
    assert "0 runs" in again
    line = next(x for x in first.splitlines() if x.strip().startswith("paper"))
    assert "( 8.0," in line and line in again.splitlines()


def test_without_pot_a_run_records_w1_empty_with_the_reason_and_the_report_says_it(
        tmp_path, monkeypatch):
    """The GPU machine may lack POT (benchmarks/gpu_campaign.py): the run still trains and
    scores modes; W1 and the converged flag stay empty, the row says why, so does the
    report."""
    import sys

    from iwgan.engine.config import make_config
    from iwgan.experiments.mode_coverage import ModeCoverage
    from iwgan.experiments.skeleton import run_unit
    from iwgan.reporting.mode_coverage import w1_note

    monkeypatch.setitem(sys.modules, "ot", None)
    [(row, curve)] = run_unit((make_config("tiny", method="wgan_gp", mixture="ring"),),
                              ModeCoverage(tmp_path))
    assert row["status"] == "finished" and row["modes"] >= 0
    assert pd.isna(row["w1"]) and pd.isna(row["converged"])
    assert row["w1_unavailable"].startswith("W1 not computed: POT is not installed here")
    assert curve[curve.metric == "w1"].value.isna().all()
    assert not curve[curve.metric == "modes"].value.isna().any()
    text = w1_note(pd.DataFrame([row, {**row, "w1_unavailable": float("nan")}]))
    assert text.startswith(" W1 and the converged flag are empty for 1 runs: W1 not computed")
    assert w1_note(pd.DataFrame([{"w1": 0.1}])) == ""
