"""The BiGAN migration on a tiny results folder: what was ``ali`` before ALI's encoder became
stochastic reads ``bigan`` everywhere, with the BiGAN config's digests; a real ALI run
recorded after the change is left alone; a second run changes nothing; --check says which
state the folder is in."""

import csv
import dataclasses
import json

import numpy as np

from iwgan.cli import main
from iwgan.engine.config import make_config
from iwgan.experiments.regression import mode_coverage_subset

BEFORE, AFTER = "2026-12-01T10:00:00+00:00", "2026-12-08T10:00:00+00:00"


def row(cfg, started):
    return {"run_id": cfg.run_id, "method": cfg.method, "mixture": cfg.mixture,
            "preset": cfg.preset, "seed": cfg.seed, "profile": cfg.profile,
            "iterations": cfg.iterations, "lr": cfg.lr, "config_hash": cfg.hash(),
            "cell": cfg.cell_key(),
            "command": "python -m iwgan mode-coverage --methods ali", "started": started,
            "modes": 3.0}


def write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def read_csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def make_folder(root):
    res = root / "results"
    old = make_config("tiny", method="ali", mixture="ring", seed=0)
    lr = make_config("tiny", method="ali", mixture="grid", seed=1, lr=5e-4)   # hashed id
    new = make_config("tiny", method="ali", mixture="ring", seed=3)            # real ALI
    iw = make_config("tiny", method="iwgan", mixture="ring", seed=0)
    write_csv(res / "mode_coverage.csv", [row(old, BEFORE), row(lr, BEFORE), row(new, AFTER),
                                          row(iw, BEFORE)])
    write_csv(res / "mode_coverage_curves.csv",
              [{"run_id": c.run_id, "method": c.method, "iteration": i, "value": i / 10}
               for c in (old, lr, new, iw) for i in (1, 2)])
    (res / "mode_coverage_samples").mkdir()
    for c in (old, lr, new, iw):
        np.save(res / "mode_coverage_samples" / f"{c.run_id}.npy", np.zeros(3))
    ref = next(c for c in mode_coverage_subset().configs if c.method == "bigan")
    ref_ali = dataclasses.replace(ref, method="ali")
    write_csv(res / "regression" / "reference.csv",
              [{"kind": "mode_coverage", "case": c.run_id, "metric": "modes", "value": 2.0,
                "config_hash": c.hash()}
               for c in (ref_ali, make_config("regression", method="iwgan"))])
    (res / "benchmarks").mkdir()
    (res / "benchmarks" / "wall_time.json").write_text(json.dumps(
        {"quick": {"date": BEFORE, "methods": ["ali", "iwgan"], "name": "test[cpu-ali]"},
         "later": {"date": AFTER, "methods": ["ali", "iwgan"]}}, indent=2, sort_keys=True)
        + "\n")
    return res, old, lr, new, iw, ref


def test_the_migration_renames_what_was_bigan_and_nothing_else(tmp_path, capsys):
    res, old, lr, new, iw, ref = make_folder(tmp_path)
    assert main(["migrate-bigan", "--check", "--out", str(tmp_path)]) == 1
    assert "unmigrated" in capsys.readouterr().out
    assert main(["migrate-bigan", "--out", str(tmp_path)]) == 0

    rows = {r["run_id"]: r for r in read_csv(res / "mode_coverage.csv")}
    for cfg in (old, lr):
        bigan = dataclasses.replace(cfg, method="bigan")
        assert bigan.run_id == cfg.run_id.replace("-ali-", "-bigan-")
        r = rows.pop(bigan.run_id)
        assert r["method"] == "bigan"
        assert (r["config_hash"], r["cell"]) == (bigan.hash(), bigan.cell_key())
        assert r["command"] == "python -m iwgan mode-coverage --methods ali"   # as typed
        assert r["modes"] == "3.0"
    assert rows[new.run_id]["method"] == "ali" and rows[new.run_id]["config_hash"] == new.hash()
    assert rows[iw.run_id]["config_hash"] == iw.hash() and len(rows) == 2

    curves = read_csv(res / "mode_coverage_curves.csv")
    assert {(r["run_id"], r["method"]) for r in curves} == {
        (old.run_id.replace("-ali-", "-bigan-"), "bigan"),
        (lr.run_id.replace("-ali-", "-bigan-"), "bigan"), (new.run_id, "ali"),
        (iw.run_id, "iwgan")}
    samples = sorted(p.stem for p in (res / "mode_coverage_samples").iterdir())
    assert samples == sorted([old.run_id.replace("-ali-", "-bigan-"),
                              lr.run_id.replace("-ali-", "-bigan-"), new.run_id, iw.run_id])

    refs = read_csv(res / "regression" / "reference.csv")
    assert (refs[0]["case"], refs[0]["config_hash"]) == (ref.run_id, ref.hash())
    assert refs[1]["case"] == "regression-paper-ring-iwgan-seed0"

    wall = json.loads((res / "benchmarks" / "wall_time.json").read_text())
    assert wall["quick"]["methods"] == ["bigan", "iwgan"]
    assert wall["quick"]["name"] == "test[cpu-bigan]"
    assert wall["later"]["methods"] == ["ali", "iwgan"]

    # idempotent: nothing left, and a second run changes no byte
    snapshot = {p: p.read_bytes() for p in res.rglob("*") if p.is_file()}
    assert main(["migrate-bigan", "--check", "--out", str(tmp_path)]) == 0
    assert main(["migrate-bigan", "--out", str(tmp_path)]) == 0
    assert {p: p.read_bytes() for p in res.rglob("*") if p.is_file()} == snapshot


def test_a_reference_the_regression_does_not_rerun_as_bigan_is_refused(tmp_path, capsys):
    res = tmp_path / "results"
    write_csv(res / "regression" / "reference.csv",
              [{"kind": "mode_coverage", "case": "regression-paper-ring-ali-seed0",
                "metric": "modes", "value": 2.0, "config_hash": "000000000000"}])
    assert main(["migrate-bigan", "--out", str(tmp_path)]) == 2
    assert "python -m iwgan regression --update" in capsys.readouterr().err   # nothing written
    assert read_csv(res / "regression" / "reference.csv")[0]["case"].endswith("ali-seed0")
