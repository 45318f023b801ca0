"""The images report's split by budget: runs with overridden settings are other runs, in
their own section, never averaged with the profile's."""

import numpy as np
import pandas as pd

from iwgan.engine.config import ImageConfig
from iwgan.reporting.images import budgets, plateau_by_budget


def row(method, **overrides):
    cfg = ImageConfig.make("cpu", dataset="digits", method=method, **overrides)
    return {"run_id": cfg.run_id, "profile": cfg.profile, "dataset": cfg.dataset,
            "method": method, "seed": cfg.seed, "iterations": cfg.iterations,
            "batch_size": cfg.batch_size, "lr": cfg.lr, "n_critic": cfg.n_critic,
            "width": cfg.width}


def test_each_budget_is_its_own_section_the_profiles_first_labelled_by_what_differs():
    runs = pd.DataFrame([row("ali", iterations=3000), row("iwgan"), row("ali"),
                         row("wgan_gp", iterations=3000), row("ali", lr=5e-4),
                         row("ali", lambda_gp=3.0)])
    sections = budgets(runs)
    labels = [label for label, _ in sections]
    assert labels[0] == "" and sorted(sections[0][1].method) == ["ali", "iwgan"]
    assert set(sections[0][1].iterations) == {1000}
    by_label = dict(sections)
    assert sorted(by_label["iterations 3,000"].method) == ["ali", "wgan_gp"]
    assert list(by_label["lr 0.0005"].lr) == [5e-4]
    # settings outside the budget columns still make another section, named by its hash
    [other] = [label for label in labels if label.startswith("settings ")]
    assert list(by_label[other].method) == ["ali"] and len(sections) == 4


def test_a_moving_average_names_its_section_and_rows_without_its_column_are_told_apart():
    with_ema = pd.DataFrame([{**row("iwgan", iterations=3000, ema=0.99), "ema": 0.99},
                             {**row("iwgan", iterations=3000), "ema": 0.0}])
    assert sorted(label for label, _ in budgets(with_ema)) == ["iterations 3,000",
                                                               "iterations 3,000, ema 0.99"]
    # rows recorded before the column: the two budgets read alike but stay two sections
    old = with_ema.drop(columns="ema")
    labels = [label for label, _ in budgets(old)]
    assert len(labels) == 2 and len(set(labels)) == 2
    assert all(label.startswith("iterations 3,000 (settings ") for label in labels)


def test_plateau_by_budget_reads_the_rule_off_the_first_part_of_each_curve(tmp_path):
    """A distance that falls until 800 iterations and is flat after: a 1,250-iteration run
    of it is converged, a 750-iteration one (still falling) is not; without an encoder
    only the distance counts, with one its reconstruction error (flat from 1,100) must
    settle too (whether a method has one is read from its rows, as the report reads it:
    a reconstruction error, or none)."""
    its = np.arange(0, 1501, 50)
    fd = np.where(its < 800, 900.0 - its, 100.0)
    recon = np.where(its < 1100, 9 - its / 200, 3.5)
    (tmp_path / "images").mkdir()
    rows = []
    for method in ("wgan_gp", "iwgan"):
        r = {**row(method), "dataset": "mnist", "profile": "cpu", "iterations": 1500,
             "fd_real_validation": 2.0, "status": "finished",
             "recon_error": 3.5 if method == "iwgan" else np.nan}
        r["run_id"] = f"cpu-mnist-{method}-seed0"
        rows.append(r)
        np.savez(tmp_path / "images" / f"{r['run_id']}.npz", curve_iteration=its,
                 curve_fd=fd, curve_recon_error=recon)
    text = "\n".join(plateau_by_budget(pd.DataFrame(rows), tmp_path))
    table = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in text.splitlines() if line.startswith("| ") and "method" not in line}
    assert "| method | 750 | 1,000 | 1,250 | 1,500 |" in text
    assert table["wgan_gp"][0].startswith("no (FD 150.0, Δ -")
    assert table["wgan_gp"][2] == "yes (FD 100.0, Δ +0.0 of ±12.0)"
    assert [c.split()[0] for c in table["wgan_gp"]] == ["no", "no", "yes", "yes"]
    assert [c.split()[0] for c in table["iwgan"]] == ["no", "no", "no", "yes"]
