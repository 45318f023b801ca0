"""Reproducibility: one seed drives every random source, the same seed gives byte-identical
metrics and samples on CPU for every method, every run is traceable to its manifest, and
the committed reports are exactly what the committed results rebuild."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from iwgan.cli import main
from iwgan.core.methods import METHOD_NAMES
from iwgan.engine.config import make_config
from iwgan.engine.trainer import train
from iwgan.experiments.mode_coverage import ModeCoverage, evaluate
from iwgan.experiments.regression import MANIFEST_KEYS, REPORT
from iwgan.experiments.skeleton import run_unit
from iwgan.reporting import build_all

ROOT = Path(__file__).resolve().parents[2]
LOG_NOISE = {"wall_time"}  # the only logged value that is not a function of the seed


def scramble_global_random_state():
    """Whatever ran before a run must not matter: the run re-seeds every source it uses."""
    torch.manual_seed(987_654)
    torch.rand(17)
    np.random.seed(5)
    random.seed(5)


def record(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    logs = [{k: v for k, v in json.loads(line).items() if k not in LOG_NOISE}
            for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return {"metrics": {k: metrics[k] for k in ("modes", "hq_pct", "kl", "w1", "recon_error",
                                                "latent_mmd", "iterations_run", "status")},
            "samples": (run_dir / "samples.npy").read_bytes(), "logs": logs}


@pytest.mark.slow
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_the_same_seed_gives_byte_identical_metrics_samples_and_logs(method, tmp_path):
    cfg = make_config("tiny", method=method, mixture="spiral", iterations=10)
    run_unit((cfg,), ModeCoverage(tmp_path / "a"))
    scramble_global_random_state()
    run_unit((cfg,), ModeCoverage(tmp_path / "b"))
    a, b = (record(tmp_path / d / "runs" / cfg.run_id) for d in "ab")
    # json round-trips NaN as NaN, and NaN != NaN: compare the serialised form.
    assert json.dumps(a["metrics"]) == json.dumps(b["metrics"])
    assert a["samples"] == b["samples"]
    assert json.dumps(a["logs"]) == json.dumps(b["logs"])
    other = make_config("tiny", method=method, mixture="spiral", iterations=10, seed=1)
    run_unit((other,), ModeCoverage(tmp_path / "c"))
    c = record(tmp_path / "c" / "runs" / other.run_id)
    assert c["samples"] != a["samples"] and c["logs"] != a["logs"]


@pytest.mark.slow
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_deterministic_kernels_change_nothing_on_cpu(method):
    """The documented claim behind a zero-cost ``deterministic`` option on CPU."""
    cfg = make_config("tiny", method=method, iterations=10)
    off = evaluate(cfg, train(cfg)[0].models)[1]
    on_cfg = make_config("tiny", method=method, iterations=10, deterministic=True)
    on = evaluate(on_cfg, train(on_cfg)[0].models)[1]
    torch.use_deterministic_algorithms(False)
    assert off.tobytes() == on.tobytes()


@pytest.mark.slow
def test_evaluation_draws_from_its_own_seeded_generator_and_leaves_training_alone():
    cfg = make_config("tiny", method="iwgan", iterations=2)
    models = train(cfg)[0].models
    torch.manual_seed(1)
    expected = torch.rand(5)
    torch.manual_seed(1)
    first = evaluate(cfg, models)
    after = torch.rand(5)
    assert torch.equal(after, expected)         # the global stream was not consumed
    scramble_global_random_state()
    second = evaluate(cfg, models)
    assert first[1].tobytes() == second[1].tobytes()
    assert json.dumps(first[0]) == json.dumps(second[0])
    other = evaluate(make_config("tiny", method="iwgan", iterations=2, seed=1), models)
    assert other[1].tobytes() != first[1].tobytes()   # evaluation sampling follows the seed


@pytest.mark.slow
def test_every_run_directory_and_results_row_carries_its_manifest(tmp_path):
    cfg = make_config("tiny", method="iwgan", iterations=2)
    [(row, _)] = run_unit((cfg,), ModeCoverage(tmp_path))
    manifest = json.loads((tmp_path / "runs" / cfg.run_id / "manifest.json").read_text())
    assert set(MANIFEST_KEYS) | {"finished"} <= set(manifest)
    for package in ("torch", "torchvision", "numpy", "scipy", "pytorch-fid", "pot"):
        assert manifest["packages"][package], package
    assert manifest["config"] == cfg.to_dict() and manifest["config_hash"] == cfg.hash()
    assert manifest["seed"] == cfg.seed
    assert set(manifest["deterministic"]) == {"use_deterministic_algorithms",
                                              "cudnn_deterministic", "cudnn_benchmark"}
    assert json.loads((tmp_path / "runs" / cfg.run_id / "config.json").read_text()) == \
        cfg.to_dict()
    for column in ("commit", "dirty", "command", "python", "torch", "numpy", "scipy", "pot",
                   "platform", "cpu_capability", "cpu_model", "device", "threads",
                   "deterministic", "started", "finished", "config_hash", "seed"):
        assert column in row, column
    assert row["commit"] == manifest["commit"] and row["config_hash"] == cfg.hash()


@pytest.mark.slow
def test_the_manifest_records_the_thread_count_the_run_used(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = make_config("tiny", method="wgan_gp", iterations=1, threads=1)
        run_unit((cfg,), ModeCoverage(tmp_path))
    finally:
        torch.set_num_threads(before)
    assert json.loads((tmp_path / "runs" / cfg.run_id / "manifest.json").read_text())[
        "threads"] == 1


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_rebuilding_the_reports_twice_gives_identical_files_figures_included(tmp_path):
    assert main(["mode-coverage", "--profile", "tiny", "--seeds", "1", "--mixtures", "ring",
                 "--methods", "iwgan", "wgan_gp", "--presets", "paper", "--jobs", "1",
                 "--out", str(tmp_path)]) == 0
    first = files_under(tmp_path / "reports")
    assert any(name.endswith(".png") for name in first)
    build_all(tmp_path / "results", tmp_path / "again")
    build_all(tmp_path / "results", tmp_path / "reports")   # over the old files
    assert files_under(tmp_path / "again") == first
    assert files_under(tmp_path / "reports") == first


def test_the_committed_reports_are_what_the_committed_results_rebuild(tmp_path):
    """CI's staleness check: rebuild every report from results/ and compare byte for byte.
    reports/regression.md is excluded: the regression check writes it, not `reports`."""
    try:
        build_all(ROOT / "results", tmp_path)
    except ValueError as err:
        if "no results to report on" in str(err):
            pytest.skip("results/ holds no experiment results yet")
        raise
    rebuilt = files_under(tmp_path)
    committed = {k: v for k, v in files_under(ROOT / "reports").items()
                 if k != REPORT.name}
    missing = sorted(set(rebuilt) - set(committed))
    stale = sorted(k for k in set(rebuilt) & set(committed) if rebuilt[k] != committed[k])
    orphans = sorted(set(committed) - set(rebuilt))
    hint = "; rebuild them with `nox -s reports` and commit reports/"
    assert not missing, f"reports not committed: {missing}{hint}"
    assert not stale, f"committed reports differ from a rebuild: {stale}{hint}"
    assert not orphans, f"committed reports that results/ no longer produces: {orphans}"

