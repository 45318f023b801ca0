"""The metric-drift check: it passes on unchanged code, catches planted bugs, refuses bad
input naming the file, and leaves the previous files intact when interrupted.

The planted-bug tests compare a tiny re-run against references made in the test by the
unplanted code (same process, same build: the exact regime), so they take a second each.
"""

import shutil
from pathlib import Path

import pandas as pd
import pytest

import iwgan.core.iwgan
from iwgan.cli import main
from iwgan.core.losses import gradient_penalty, mmd_imq, reconstruction_error
from iwgan.engine.config import PROFILES
from iwgan.engine.records import ResultsError
from iwgan.experiments import regression
from iwgan.experiments.regression import (
    EXACT,
    REFERENCE,
    REPORT,
    RUNS,
    Subset,
    Tolerance,
    compare,
    load_run,
    mode_coverage_subset,
    read_references,
    run_regression,
)

ROOT = Path(__file__).resolve().parents[2]


def tiny_subset(methods=("iwgan",), mixtures=("ring",)):
    return mode_coverage_subset("tiny", methods=methods, mixtures=mixtures)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """References of the tiny subset, made by the unplanted code."""
    out = tmp_path_factory.mktemp("references")
    assert run_regression(out, update=True, subsets=[tiny_subset()]) == 0
    return out


@pytest.fixture
def out(references, tmp_path):
    """A fresh root holding a copy of those references."""
    (tmp_path / REFERENCE).parent.mkdir(parents=True)
    shutil.copy(references / REFERENCE, tmp_path / REFERENCE)
    return tmp_path


def drifted(out) -> set[str]:
    text = (out / REPORT).read_text()
    return {line.split("|")[3].strip() for line in text.splitlines()
            if line.startswith("| mode_coverage") and line.rstrip().endswith("| DRIFT |")}


def test_tolerance_is_absolute_plus_relative_and_nan_matches_only_nan():
    tol = Tolerance(abs=0.1, rel=0.5)
    assert tol.allows(2.0, 3.1) and not tol.allows(2.0, 3.11)
    assert tol.allows(float("nan"), float("nan"))
    assert not tol.allows(float("nan"), 0.0) and not tol.allows(0.0, float("nan"))
    assert EXACT.allows(0.3, 0.3 * (1 + 5e-10)) and not EXACT.allows(0.3, 0.3 * (1 + 2e-9))
    assert EXACT.allows(0.0, 1e-13) and not EXACT.allows(0.0, 1e-11)


def test_only_the_kl_band_accepts_an_undefined_value_on_one_side():
    """Another build can give a run near 0 % HQ a few high-quality samples where the
    reference had none (KL NaN there, finite here): within KL's band, not the others'."""
    specs = regression.MODE_COVERAGE_METRICS
    kl = specs["kl"].other
    assert kl.allows(float("nan"), 0.7) and kl.allows(0.7, float("nan"))
    assert not kl.allows(0.7, 0.7 + 2.81) and "or undefined" in str(kl)
    assert not specs["kl"].same.allows(float("nan"), 0.7)
    assert not specs["w1"].other.allows(float("nan"), 0.7)


@pytest.mark.slow
def test_references_of_several_builds_each_hold_their_own_build_exactly(out):
    """A reference file may hold one set per build: a run is held exactly to its own
    build's, to the first build's bands where the file has none of its own, and an
    update replaces its own build's set only."""
    path = out / REFERENCE
    own = read_references(path)
    other = own.assign(cpu_model="another CPU", value=own.value * 1.5)
    other.loc[other.metric == "modes", "value"] += 20          # outside the modes band
    pd.concat([other, own]).to_csv(path, index=False)
    assert run_regression(out, subsets=[tiny_subset()]) == 0   # its own build: exact
    assert "**same build**" in (out / REPORT).read_text()
    other.to_csv(path, index=False)                              # only the other build's
    assert run_regression(out, subsets=[tiny_subset()]) == 1
    assert "modes" in drifted(out) and "**another build**" in (out / REPORT).read_text()
    assert run_regression(out, update=True, subsets=[tiny_subset()]) == 0
    both = read_references(path)
    assert set(both.cpu_model) == {"another CPU", own.cpu_model.iloc[0]}
    assert len(both) == 2 * len(own)


@pytest.mark.slow
def test_unchanged_code_passes_and_the_report_shows_every_metric(out):
    assert run_regression(out, subsets=[tiny_subset()]) == 0
    text = (out / REPORT).read_text()
    assert "**PASS**" in text and "same build" in text
    for metric in ("config_hash", *regression.MODE_COVERAGE_METRICS):
        assert f"| tiny-paper-ring-iwgan-seed0 | {metric} |" in text
    assert not drifted(out)


def halve_gp(critic, real, fake, eps):
    return 0.5 * gradient_penalty(critic, real, fake, eps)   # = lambda_GP halved


def drop_mmd(x, y):
    return 0.0 * mmd_imq(x, y)                                # the MMD term dropped


def squared_norm(x, x_rec):
    return reconstruction_error(x, x_rec) ** 2               # ||x - G(Q(x))||^2


PLANTS = {
    "lambda_gp_halved": lambda mp: mp.setattr(iwgan.core.iwgan, "gradient_penalty", halve_gp),
    "mmd_dropped": lambda mp: mp.setattr(iwgan.core.iwgan, "mmd_imq", drop_mmd),
    "reconstruction_squared": lambda mp: mp.setattr(iwgan.core.iwgan, "reconstruction_error",
                                                    squared_norm),
    "lambda_gp_halved_in_config": lambda mp: mp.setitem(PROFILES["tiny"], "lambda_gp", 2.5),
}


@pytest.mark.slow
@pytest.mark.parametrize("plant", PLANTS)
def test_a_planted_bug_fails_the_check(out, monkeypatch, plant):
    before = (out / REFERENCE).read_bytes()
    PLANTS[plant](monkeypatch)
    assert run_regression(out, subsets=[tiny_subset()]) == 1
    # The bug moves the continuous metrics of the trained model, not only a log line.
    assert {"w1", "recon_error", "latent_mmd"} <= drifted(out)
    if plant == "lambda_gp_halved_in_config":
        assert "config_hash" in drifted(out)
    assert (out / REFERENCE).read_bytes() == before      # a check never rewrites them


@pytest.mark.slow
def test_update_rewrites_the_references_only_when_asked(out, monkeypatch):
    PLANTS["mmd_dropped"](monkeypatch)
    before = (out / REFERENCE).read_bytes()
    assert run_regression(out, subsets=[tiny_subset()]) == 1
    assert (out / REFERENCE).read_bytes() == before
    assert run_regression(out, update=True, subsets=[tiny_subset()]) == 0
    assert (out / REFERENCE).read_bytes() != before
    assert run_regression(out, subsets=[tiny_subset()]) == 0


@pytest.mark.slow
def test_update_of_one_kind_keeps_the_other_kinds_references(out):
    refs = read_references(out / REFERENCE)
    other = refs.assign(kind="digits")
    pd.concat([refs, other]).to_csv(out / REFERENCE, index=False)
    assert run_regression(out, update=True, subsets=[tiny_subset()]) == 0
    assert set(read_references(out / REFERENCE).kind) == {"mode_coverage", "digits"}


@pytest.mark.slow
def test_an_interrupted_run_leaves_the_previous_references_and_report_intact(out):
    subset = tiny_subset(methods=("iwgan", "wgan_gp"))
    assert run_regression(out, update=True, subsets=[subset]) == 0
    files = {p: (out / p).read_bytes() for p in (REFERENCE, REPORT)}

    class Interrupted(Subset):
        def run(self, root, jobs, configs=None):
            super().run(root, jobs, self.configs[:1])
            raise KeyboardInterrupt

    broken = Interrupted(subset.kind, subset.configs, subset.metrics, subset.experiment)
    for update in (False, True):
        with pytest.raises(KeyboardInterrupt):
            run_regression(out, update=update, subsets=[broken])
        assert {p: (out / p).read_bytes() for p in files} == files


@pytest.mark.slow
def test_a_reference_with_no_matching_new_run_is_an_error_naming_the_file(out):
    with pytest.raises(ResultsError, match=r"reference\.csv.*no matching new run"):
        run_regression(out, subsets=[tiny_subset(methods=("wgan_gp",))])
    with pytest.raises(ResultsError, match=r"reference\.csv.*no reference for case"):
        run_regression(out, subsets=[tiny_subset(methods=("iwgan", "wgan_gp"))])


def test_references_missing_a_column_or_of_an_older_schema_are_errors_naming_the_file(out):
    path = out / REFERENCE
    refs = pd.read_csv(path)
    refs.assign(schema_version=0).to_csv(path, index=False)
    with pytest.raises(ResultsError, match=r"reference\.csv: schema version"):
        read_references(path)
    refs.drop(columns=["cpu_capability"]).to_csv(path, index=False)
    with pytest.raises(ResultsError, match=r"reference\.csv: missing column.*cpu_capability"):
        read_references(path)
    path.unlink()
    with pytest.raises(ResultsError, match=r"reference\.csv: no references.*--update"):
        run_regression(out, subsets=[tiny_subset()])


def test_a_run_directory_without_manifest_is_an_error_naming_the_file(tmp_path):
    run = tmp_path / "tiny-paper-ring-iwgan-seed0"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    with pytest.raises(ResultsError, match=r"manifest\.json: missing manifest"):
        load_run(run)
    (run / "manifest.json").write_text('{"commit": "abc"}')
    with pytest.raises(ResultsError, match=r"manifest\.json: missing field.*packages"):
        load_run(run)


def test_another_build_is_held_to_the_band_not_to_the_exact_tolerance(references):
    subset = tiny_subset()
    new = read_references(references / REFERENCE)
    moved = new.assign(value=new.value * 1.01)
    rows = compare(new, moved, [subset])
    assert {r["verdict"] for r in rows if r["metric"] == "w1"} == {"DRIFT"}
    elsewhere = moved.assign(torch="0.0.0+other")
    rows = compare(new, elsewhere, [subset])
    w1 = next(r for r in rows if r["metric"] == "w1")
    assert w1["verdict"] == "ok" and "(band)" in w1["tolerance"]
    far = elsewhere.assign(value=new.value + 10)
    assert "DRIFT" in {r["verdict"] for r in compare(new, far, [subset])}


@pytest.mark.slow
def test_the_command_line_checks_and_updates(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(regression.SUBSETS, "mode_coverage", tiny_subset)
    monkeypatch.setitem(regression.SUBSETS, "mode_coverage_stacked", tiny_stacked_subset)
    args = ["regression", "--out", str(tmp_path), "--jobs", "1"]
    assert main(args) == 2
    assert "reference.csv: no references" in capsys.readouterr().err
    assert main([*args, "--update"]) == 0
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| kind | case | metric | reference | new | tolerance | verdict |" in out
    assert (tmp_path / RUNS / "mode_coverage" / "runs" / "tiny-paper-ring-iwgan-seed0"
            / "manifest.json").exists()
    PLANTS["mmd_dropped"](monkeypatch)
    assert main(args) == 1
    with pytest.raises(SystemExit):
        main([*args, "--jobs", "0"])


def tiny_stacked_subset():
    return regression.stacked_subset("tiny", methods=("iwgan",))


@pytest.mark.slow
def test_the_stacked_path_has_its_own_check_which_catches_a_bug_there(tmp_path,
                                                                      monkeypatch):
    import json

    from iwgan.engine.stacking import Members

    subsets = [tiny_stacked_subset()]
    assert run_regression(tmp_path, update=True, subsets=subsets) == 0
    ids = [c.run_id for c in subsets[0].configs]
    for cfg in subsets[0].configs:
        run = tmp_path / RUNS / "mode_coverage_stacked" / "runs" / cfg.run_id
        assert json.loads((run / "manifest.json").read_text())["stacked_with"] == ids
    assert run_regression(tmp_path, subsets=subsets) == 0
    draw = Members.draw

    def swapped(self, phase, data):        # the members' data batches handed round
        xs, zs, noises = draw(self, phase, data)
        return xs[1:] + xs[:1], zs, noises

    monkeypatch.setattr(Members, "draw", swapped)
    assert run_regression(tmp_path, subsets=subsets) == 1
    assert {"w1", "latent_mmd"} <= drifted(tmp_path)


@pytest.mark.slow
def test_the_committed_references_match_the_current_code_for_one_cell(tmp_path):
    """One cell of results/regression/reference.csv, re-run in full (regression profile)."""
    refs = read_references(ROOT / REFERENCE)
    subset = mode_coverage_subset(methods=("iwgan",), mixtures=("ring",))
    case = subset.configs[0].run_id
    assert case in set(refs.case), f"{ROOT / REFERENCE} has no reference for {case}"
    subset.run(tmp_path, 1)
    rows = compare(refs[refs.case == case], regression.collect(subset, tmp_path), [subset])
    assert len(rows) == 1 + len(subset.metrics)
    assert [r for r in rows if r["verdict"] != "ok"] == []


def drifted_in(out, kind: str) -> set[str]:
    text = (out / REPORT).read_text()
    return {line.split("|")[3].strip() for line in text.splitlines()
            if line.startswith(f"| {kind} |") and line.rstrip().endswith("| DRIFT |")}


@pytest.mark.slow
def test_the_convergence_subset_catches_a_gap_whose_copies_are_never_optimised(tmp_path,
                                                                              monkeypatch):
    from iwgan.core import duality_gap

    subsets = [regression.convergence_subset("tiny", methods=("iwgan",))]
    assert run_regression(tmp_path, update=True, subsets=subsets) == 0
    assert run_regression(tmp_path, subsets=subsets) == 0
    monkeypatch.setattr(duality_gap, "_minimise", lambda *args, **kwargs: None)
    assert run_regression(tmp_path, subsets=subsets) == 1
    assert "dual_gap_final" in drifted_in(tmp_path, "convergence")


@pytest.mark.slow
def test_the_digits_subset_catches_a_resume_that_loses_the_data_samplers_state(tmp_path,
                                                                              monkeypatch):
    from iwgan.data.datasets import ImageBatches

    subsets = [regression.digits_subset(methods=("iwgan",))]
    assert run_regression(tmp_path, update=True, subsets=subsets) == 0
    assert run_regression(tmp_path, subsets=subsets) == 0
    monkeypatch.setattr(ImageBatches, "load_state_dict", lambda self, state: None)
    assert run_regression(tmp_path, subsets=subsets) == 1
    assert {"fd", "recon_error"} <= drifted_in(tmp_path, "digits")
