"""reports/mode_coverage.md from made-up results: the run flags counted beside every
cell's mean over all its runs (never a mean over the runs a flag selects), budgets never
mixed in one cell, the literature
beside the literature preset with an equivalence verdict per baseline, quick against
converged for every cell."""

import json

import numpy as np
import pandas as pd

from iwgan.data.mixtures import MIXTURES, PRESETS, get_mixture
from iwgan.engine.config import make_config
from iwgan.engine.records import SCHEMA_VERSION
from iwgan.experiments.tuning import SPACE
from iwgan.reporting.mode_coverage import build_report, identical_candidate, quick_vs_converged


def row(profile, preset, mixture, method, seed, modes, hq, converged=True, **override):
    cfg = make_config(profile, method=method, mixture=mixture, preset=preset, seed=seed,
                      **override)
    return {"schema_version": SCHEMA_VERSION, "run_id": cfg.run_id, "method": method,
            "mixture": mixture, "preset": preset, "seed": seed, "profile": profile,
            "iterations": cfg.iterations, "width": cfg.width, "batch_size": cfg.batch_size,
            "lr": cfg.lr, "lr_schedule": cfg.lr_schedule, "n_critic": cfg.n_critic,
            "config_hash": cfg.hash(), "cell": cfg.cell_key(), "status": "finished",
            "modes": modes, "hq_pct": hq, "kl": 0.1, "w1": 0.2, "recon_error": 0.1,
            "latent_mmd": 0.01, "converged": converged, "train_seconds": 1.0,
            "eval_seconds": 0.1, "command": "python -m iwgan mode-coverage", "commit": "abc",
            "dirty": False, "stacked": 1, "diverged_at": np.nan}


def write(tmp_path, rows):
    results = tmp_path / "results"
    results.mkdir()
    return write_into(results, rows)


def write_into(results, rows):
    pd.DataFrame(rows).to_csv(results / "mode_coverage.csv", index=False)
    (results / "mixtures.json").write_text(json.dumps(
        {f"{m}-{p}": get_mixture(m, p).to_json() for p in PRESETS for m in MIXTURES}))
    return (build_report(results, results.parent / "reports")).read_text()


def test_a_cell_counts_its_flags_beside_the_mean_of_all_its_runs_and_budgets_are_not_mixed(
        tmp_path):
    rows = [dict(row("converged", "paper", "ring", "iwgan", s, m, hq, converged=c),
                 collapsed=m < 4, degraded_late=s == 1)
            for s, c, m, hq in ((0, True, 8, 80.0), (1, True, 8, 70.0), (2, False, 2, 30.0))]
    rows += [row("converged", "paper", "ring", "iwgan", 0, 4, 10.0, iterations=100)]
    text = write(tmp_path, rows)
    table = [line for line in text.splitlines()
             if line.startswith("| ring | iwgan") and " / 8 |" in line]   # modes of K = 8
    assert len(table) == 2                      # 5,000 iterations (all 3 runs), 100 its
    full = next(line for line in table if "| 5000 |" in line)
    # converged 2/3, collapsed 1/3, degraded late 1/3; modes 6.0 ± 2.0, HQ 60.0 ± 15.3
    assert "| 3 | 2/3 | 1/3 | 1/3 | 6.0 ± 2.0 / 8 | 60.0 ± 15.3 |" in full
    short = next(line for line in table if "| 100 |" in line)
    assert "| 1 | 1/1 | n/a | n/a | 4.0" in short         # a row without flags: not known
    assert "3 of 4 runs converged." in text


def equivalence_lines(text, method):
    section = text.split("by equivalence")[1]
    return [line for line in section.splitlines()
            if line.startswith(f"| ring | {method} |")]


def test_the_literature_is_shown_beside_the_literature_preset_by_equivalence(tmp_path):
    rows = [row("converged", "literature", "ring", "wgan_gp", s, 6.8, 59.6) for s in (0, 1)]
    rows += [row("converged", "literature", "ring", "ali", s, 1.0, 0.0) for s in (0, 1)]
    text = write(tmp_path, rows)
    assert ("| ring | GDPP (Table 1; 7-centre ring, a different setup) | WGAN-GP | 6.8 | "
            "59.6 |") in text
    assert "| ring | PacGAN (Table 1) | ALI | 6.6 | 97.6 |" in text
    assert "| ring | PacGAN (Table 1) | GAN | 6.3 | 98.2 | 0.45 |" in text
    assert "| ring | this suite (converged) | wgan_gp |" in text
    assert "5,000 iterations = 5,000 G updates" in text
    assert "2 s.e." not in text                   # the vacuous overlap check is gone
    wgan = equivalence_lines(text, "wgan_gp")
    assert len(wgan) == 2                         # GDPP's modes and HQ %
    assert all("| identical | 2 |" in line and "7-centre ring" in line for line in wgan)
    assert "| modes | 6.8 [6.8, 6.8] | 6.8 | +0.0 [+0.0, +0.0] | ± 1 | agrees |" in wgan[0]
    assert "| HQ % | 59.6 [59.6, 59.6] | 59.6 | +0.0 [+0.0, +0.0] | ± 10 | agrees |" \
        in wgan[1]
    ali = equivalence_lines(text, "ali")
    assert len(ali) == 4                          # VEEGAN and PacGAN, modes and HQ %
    assert "VEEGAN (Table 1) ALI | modes | 1.0 [1.0, 1.0] | 2.8 | -1.8 [-1.8, -1.8] | " \
        "± 1 | below |" in ali[0]
    assert "VEEGAN (Table 1) ALI | HQ % | 0.0 [0.0, 0.0] | 0.13 | -0.1 [-0.1, -0.1] | " \
        "± 10 | agrees |" in ali[1]
    assert "| below | 0/2 [0, 66 %] |" in ali[3]   # PacGAN's 97.6 % HQ; no run succeeds
    assert "Over the 6 comparisons: 3 agrees, 3 below, 0 above, 0 inconclusive." in text


def test_a_split_cell_reports_its_success_rate_and_a_wide_interval_is_inconclusive(tmp_path):
    rows = [row("converged", "literature", "ring", "wgan_gp", s, m, hq)
            for s, m, hq in ((0, 8, 85.0), (1, 8, 86.0), (2, 1, 0.2), (3, 2, 0.2))]
    lines = equivalence_lines(write(tmp_path, rows), "wgan_gp")
    # 2 of 4 runs cover all 8 modes: Wilson 95 % [0.150, 0.850]; the other two collapsed
    assert len(lines) == 2
    assert all(line.endswith("| inconclusive | 2/4 [15, 85 %] split |") for line in lines)


def test_a_baseline_outside_the_range_shows_the_searchs_longer_runs(tmp_path):
    rows = [row("converged", "literature", "ring", "wgan_gp", s, 2.0, 1.0) for s in (0, 1)]
    search = tmp_path / "results" / "converged_search"
    search.mkdir(parents=True)
    longer = [row("converged", "literature", "ring", "wgan_gp", 0, 8.0, 89.9,
                  iterations=10_000),
              row("converged", "literature", "grid", "wgan_gp", 0, 25.0, 54.2,
                  iterations=10_000),            # another mixture: not shown for the ring
              row("converged", "literature", "ring", "wgan_gp", 0, 1.0, 0.5,
                  iterations=500)]               # a shorter budget: not shown
    pd.DataFrame(longer).to_csv(search / "round.csv", index=False)
    pd.DataFrame(longer[:1]).to_csv(search / "round-curves.csv", index=False)
    text = write_into(tmp_path / "results", rows)
    assert text.count("Measured budget effect") == 1
    wgan = next(v for v in text.splitlines() if v.startswith("- **wgan_gp, ring**"))
    assert ("10,000 iterations (batch 64, n_critic 5, lr 0.001 linear, seed 0, `round`): "
            "8 modes, 89.9 % HQ, converged 1/1, collapsed n/a") in wgan
    assert "54.2" not in wgan and "500 iterations" not in wgan


def test_quick_against_converged_is_shown_for_every_cell(tmp_path):
    rows = []
    for mixture in ("ring", "grid"):
        rows += [row("quick", "paper", mixture, "iwgan", 0, 3, 5.0, converged=False),
                 row("converged", "paper", mixture, "iwgan", 0, 8, 70.0)]
    text = write(tmp_path, rows)
    section = text.split("## Quick against converged, every cell")[1]
    assert "| paper | ring | iwgan | 1 / 1 | 0/1 → 1/1 | 3.0 → 8.0 | 5.0 → 70.0 |" in section
    assert "| paper | grid | iwgan |" in section


def test_the_report_says_when_there_is_no_converged_table(tmp_path):
    quick = [row("quick", "paper", "ring", "iwgan", 0, 8, 10.0)]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    assert "No converged table yet" in write(tmp_path / "a", quick)
    both = quick + [row("converged", "paper", "ring", "iwgan", 0, 8, 90.0)]
    assert "No converged table yet" not in write(tmp_path / "b", both)


def test_quick_against_converged_takes_other_metrics_and_rows_without_a_converged_flag():
    """The convergence report's use: its quick rows predate the flag, WGAN-GP has no
    encoder (its latent metrics are NaN)."""
    quick = row("quick", "paper", "ring", "wgan_gp", 0, 3, 5.0)
    conv = row("converged", "paper", "ring", "wgan_gp", 0, 8, 70.0)
    del quick["converged"]
    for r, gap in ((quick, 0.5), (conv, 0.125)):
        r.update(dual_gap_final=gap, auroc=np.nan)
    df = pd.DataFrame([quick, conv])
    section = "\n".join(quick_vs_converged(
        df, {"gap": ("dual_gap_final", 3), "AUROC": ("auroc", 3)}))
    assert "| paper | ring | wgan_gp | 1 / 1 | n/a → 1/1 | 0.500 → 0.125 | n/a |" in section


def test_runs_of_a_gpu_name_it_and_sit_beside_the_quarter_width_cpu_cells(tmp_path):
    gpu = "NVIDIA H100 80GB HBM3"
    rows = [{**row("paper", "paper", "ring", m, s, 8, 90.0, iterations=2_000), "device": gpu}
            for m in ("iwgan", "wgan_gp") for s in range(2)]
    rows += [{**row(p, "paper", "ring", m, s, 7, 40.0), "device": "x86_64"}
             for p in ("quick", "converged") for m in ("iwgan", "wgan_gp") for s in range(3)]
    text = write(tmp_path, rows)
    assert f"## paper profile, paper preset, on {gpu}" in text
    assert "## quick profile, paper preset\n" in text          # CPU sections name no device
    assert ("The profile's own budget is 20,000 iterations: these runs trained 2,000 (an "
            "override, in their run ids)") in text
    section = text.split(f"## The paper profile on {gpu} beside the quarter-width CPU runs")[1]
    table = section.split("\n## ")[0]
    assert (f"| paper | ring | iwgan | paper | {gpu} | 1 | 256 | 2,000 | 2 | 2/2 "
            "| 8.0 ± 0.0") in table
    assert ("| paper | ring | iwgan | quick | x86_64 | 0.25 | 64 | 1,500 | 3 | 3/3 "
            "| 7.0 ± 0.0") in table
    assert "| paper | ring | wgan_gp | converged | x86_64 | 0.25 | 64 | 5,000 | 3 |" in table
    runtime = text.split("## Runtime")[1]
    assert f"| paper | iwgan | {gpu} | 2 |" in runtime         # which device ran which rows
    assert "beside the quarter-width" not in write_into(tmp_path / "results", rows[4:])


def test_the_continuation_check_is_counted_where_the_runs_ran_it(tmp_path):
    """Tolerances from the cell's seed spread (final HQ % 80, 70, 60: s.d. 10 points; W1
    0.2 each: s.d. 0, so W1 must not move): seed 0 stays, seed 1 moves HQ % by 12 points,
    seed 2 loses a mode."""
    def continued(seed, hq, hq_trend, modes_after):
        return dict(row("converged", "paper", "ring", "iwgan", seed, 8, hq),
                    continued_iterations=1250, continued_status="finished",
                    continued_w1_trend=0.0, continued_hq_trend=hq_trend,
                    continued_modes=modes_after)
    rows = [continued(0, 80.0, 3.0, 8), continued(1, 70.0, 12.0, 8),
            continued(2, 60.0, 0.0, 7)]
    rows[2]["converged"] = False
    text = write(tmp_path, rows)
    # the plateau flag (True, True, False) against the check (stays, moves, loses a mode)
    against = text.split("## The plateau flag against the continuation check")[1]
    assert "| converged | paper | identical | iwgan | 3 | 1 | 1 | 0 | 1 | 1/3 [6, 79 %] |" \
        in against
    header = next(line for line in text.splitlines() if line.startswith("| mixture | method |"))
    assert "| converged | stays converged | collapsed |" in header
    line = next(line for line in text.splitlines() if line.startswith("| ring | iwgan"))
    assert "| 3 | 2/3 | 1/3 |" in line
    (tmp_path / "other").mkdir()
    plain = write(tmp_path / "other", [row("converged", "paper", "ring", "iwgan", 0, 8, 80.0)])
    assert "stays converged |" not in plain
    assert "The plateau flag against the continuation check" not in plain


def test_tuned_runs_are_judged_against_the_literature_beside_the_identical_ones(tmp_path):
    rows = [row("converged", "literature", "ring", "wgan_gp", s, 6.8, 59.6) for s in (0, 1)]
    rows += [dict(row("converged", "literature", "ring", "gan", s, 6.3, 98.2,
                      protocol="tuned"), protocol="tuned") for s in (0, 1, 2)]
    text = write(tmp_path, rows)
    section = text.split("by equivalence")[1].split("Over the")[0]
    assert any(line.startswith("| ring | gan | tuned | 3 |") and "PacGAN (Table 1) GAN" in line
               for line in section.splitlines())
    assert any(line.startswith("| ring | wgan_gp | identical | 2 |")
               for line in section.splitlines())


def test_a_cell_run_under_both_protocols_shows_tuned_minus_identical_with_its_interval(
        tmp_path):
    """HQ % identical 20, 30, 40 (mean 30, s.d. 10) and tuned 80, 90 (mean 85, s.d. 7.07):
    Welch difference +55.0, se sqrt(100/3 + 50/2) = 7.64, df 2.88 → t 3.26, interval
    [30.1, 79.9]; modes do not vary (8 → 8, a zero-width interval)."""
    rows = [row("converged", "literature", "ring", "wgan_gp", s, 8, hq)
            for s, hq in ((0, 20.0), (1, 30.0), (2, 40.0))]
    rows += [dict(row("converged", "literature", "ring", "wgan_gp", s, 8, hq,
                      protocol="tuned"), protocol="tuned", collapsed=False)
             for s, hq in ((0, 80.0), (1, 90.0))]
    rows += [dict(row("converged", "literature", "grid", "gan", 0, 20, 50.0,
                      protocol="tuned"), protocol="tuned")]   # no identical twin: no row
    text = write(tmp_path, rows)
    section = text.split("## Identical against tuned, every cell")[1].split("\n## ")[0]
    lines = [line for line in section.splitlines() if line.startswith("| converged |")]
    assert len(lines) == 1
    cells = [c.strip() for c in lines[0].strip("|").split("|")]
    assert cells[:6] == ["converged", "literature", "ring", "wgan_gp", "5,000", "3 / 2"]
    assert cells[6:10] == ["8.0 → 8.0", "+0.0 [+0.0, +0.0]", "30.0 → 85.0",
                           "+55.0 [+30.1, +79.9]"]
    assert cells[-2:] == ["3/3 → 2/2", "n/a → 0/2"]
    (tmp_path / "other").mkdir()
    plain = write(tmp_path / "other", rows[:3])
    assert "Identical against tuned" not in plain


def test_the_selection_margin_pairs_the_search_runs_by_mixture_and_seed(tmp_path):
    """GAN's search: candidate 6 scores 0.5, 0.6, 0.7, 0.8 and candidate 3 (the identical
    recipe) 0.4, 0.55, 0.6, 0.75 on the same four (mixture, seed) pairs: differences 0.1,
    0.05, 0.1, 0.05, mean 0.075, s.d. 0.0289, se 0.0144, t(3) 3.182 → [0.029, 0.121]."""
    results = tmp_path / "results"
    (results / "tuning").mkdir(parents=True)
    recipes = {0: dict(lr=1e-4, beta1=0.8, beta2=0.999), 3: dict(lr=1e-3, beta1=0.5, beta2=0.9),
               6: dict(lr=1e-3, beta1=0.5, beta2=0.999)}
    hq = {0: [10.0] * 4, 3: [40.0, 55.0, 60.0, 75.0], 6: [50.0, 60.0, 70.0, 80.0]}
    pairs = [("ring", 1000), ("ring", 1001), ("grid", 1000), ("grid", 1001)]
    search = [dict(row("converged", "literature", mixture, "gan", seed,
                       len(get_mixture(mixture, "literature").centres), hq[k][i],
                       protocol="tuned", **recipes[k]), protocol="tuned", candidate=k)
              for k in recipes for i, (mixture, seed) in enumerate(pairs)]
    pd.DataFrame(search).to_csv(results / "tuning" / "search.csv", index=False)
    scores = {k: sum(h) / 400 for k, h in hq.items()}
    (results / "tuning" / "selected.json").write_text(json.dumps({"converged": {
        "literature": {"gan": {
            "candidate": 6, "recipe": recipes[6], "score": scores[6], "iterations": 5000,
            "mixtures": ["grid", "ring"], "tuning_seeds": [1000, 1001],
            "candidates": [{"candidate": k, "recipe": recipes[k], "score": scores[k],
                            "runs": 4} for k in recipes]}}}}))
    text = write_into(results, [row("converged", "literature", "ring", "gan", 0, 8, 90.0)])
    section = text.split("How far the search separated")[1].split("\n## ")[0]
    assert "0 of 1 selections are within such a near tie" in section
    line = next(li for li in section.splitlines() if li.startswith("| converged |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells == ["converged", "literature", "gan", "4", "6 (0.650)", "3 (0.575)",
                     "+0.075 [+0.029, +0.121]", "3 (0.575)", "+0.075 [+0.029, +0.121]"]


def test_the_identical_recipe_is_found_in_every_methods_space():
    """docs/tuning.md: each method's space holds the identical protocol's converged recipe."""
    found = {method: identical_candidate(
        "converged", method, [{"candidate": k, "recipe": r} for k, r in enumerate(entries)])
        for method, entries in SPACE.items()}
    assert found == {"iwgan": 1, "wgan_gp": 1, "ali": 3, "bigan": 3, "gan": 3,
                     "alpha_gan": 1}


def test_the_selected_recipes_budget_runs_are_summed_up_over_their_seeds(tmp_path):
    rows = [row("converged", "literature", "grid", "wgan_gp", s, 24.0, 14.0) for s in (0, 1)]
    folder = tmp_path / "results" / "budget_effect"
    folder.mkdir(parents=True)
    longer = [row("converged", "literature", "grid", "wgan_gp", s, modes, hq,
                  iterations=25_000, lambda_gp=0.1)
              for s, modes, hq in ((0, 25.0, 30.0), (1, 24.0, 40.0), (2, 25.0, 50.0))]
    pd.DataFrame(longer).to_csv(folder / "tuned-wgan_gp-T25000.csv", index=False)
    text = write_into(tmp_path / "results", rows)
    wgan = next(v for v in text.splitlines() if v.startswith("- **wgan_gp, grid**"))
    assert ("25,000 iterations (batch 64, n_critic 5, lr 0.001 linear, seeds 0-2, "
            "`tuned-wgan_gp-T25000`): 24.7 ± 0.3 modes, 40.0 ± 5.8 % HQ, "
            "converged 3/3, collapsed n/a") in wgan
