"""The two protocols: identical (the paper's comparison, the ids as they always were) and
tuned (the equal-budget search of iwgan.experiments.tuning and the runs that read its
selection); every bad input refused with one line, nothing written."""

import dataclasses
import json

import pandas as pd
import pytest

from iwgan.cli import main
from iwgan.engine.config import make_config
from iwgan.engine.records import REPO_ROOT, read_results
from iwgan.experiments import tuning
from iwgan.experiments.protocols import TUNING_SEEDS

TINY = ["--profile", "tiny", "--presets", "literature", "--mixtures", "ring", "--jobs", "1"]


def one_line_error(capsys, *words) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for word in words:
        assert word in err, err
    return err


@pytest.mark.parametrize("method", ["iwgan", "wgan_gp"])
def test_identical_runs_keep_the_committed_ids_and_hashes(method):
    committed = read_results(REPO_ROOT / "results" / "mode_coverage.csv")
    row = committed[(committed.profile == "converged") & (committed.method == method)
                    & (committed.preset == "literature") & (committed.mixture == "ring")
                    & (committed.seed == 0)
                    & (committed.protocol.fillna("identical") == "identical")].iloc[0]
    cfg = make_config("converged", method=method, mixture="ring", preset="literature", seed=0)
    assert (cfg.run_id, cfg.hash(), cfg.cell_key()) == (row.run_id, row.config_hash, row.cell)
    assert cfg.run_id == f"converged-literature-ring-{method}-seed0"


def test_a_tuned_run_never_takes_an_identical_runs_id_hash_or_cell():
    cfg = make_config("converged", method="wgan_gp", mixture="ring", preset="literature")
    tuned = dataclasses.replace(cfg, protocol="tuned")
    assert tuned.run_id.startswith("converged-tuned-literature-ring-wgan_gp-seed0-")
    assert tuned.hash() != cfg.hash() and tuned.cell_key() != cfg.cell_key()
    # the same recipe under both protocols: still two runs
    same = dataclasses.replace(cfg, lr=1e-4)
    assert dataclasses.replace(same, protocol="tuned").run_id != same.run_id


def test_an_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="unknown protocol 'best'; valid choices: identical"):
        make_config("tiny", protocol="best")


def test_an_unknown_protocol_on_the_command_line_writes_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["mode-coverage", "--out", str(tmp_path), "--protocol", "best"])
    assert err.value.code == 2 and "invalid choice: 'best'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["mode-coverage", "--out", str(tmp_path), "--set", "protocol=tuned"])
    assert "use --protocol" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_rows_without_the_protocol_column_read_as_identical(tmp_path):
    """Committed rows as they were written before the column existed (their run ids and
    hashes are identical runs')."""
    committed = pd.read_csv(REPO_ROOT / "results" / "mode_coverage.csv")
    older = committed[committed.protocol == "identical"].head(3).drop(columns="protocol")
    path = tmp_path / "mode_coverage.csv"
    older.to_csv(path, index=False)
    assert list(read_results(path).protocol) == ["identical"] * 3


def test_the_stated_space_is_equal_for_every_method_and_holds_each_published_recipe():
    tuning.check_space(tuning.SPACE, list(tuning.SPACE))
    assert set(tuning.SPACE) == set(tuning.PUBLISHED) >= {"iwgan", "wgan_gp", "alpha_gan",
                                                          "ali", "bigan", "gan"}
    for method, entries in tuning.SPACE.items():
        assert len({json.dumps(e, sort_keys=True) for e in entries}) == tuning.CONFIGURATIONS
        assert tuning.same_recipe(entries[0], tuning.PUBLISHED[method])
    # WGAN-GP's toy code: lambda 0.1, Adam 1e-4 (0.5, 0.9), 5 critic steps
    assert tuning.PUBLISHED["wgan_gp"] == dict(lr=1e-4, beta1=0.5, beta2=0.9, n_critic=5,
                                               lambda_gp=0.1)


def test_the_score_is_modes_share_times_hq_share_and_a_diverged_run_scores_zero():
    assert tuning.run_score({"status": "finished", "modes": 6, "hq_pct": 50.0}, 8) == 0.375
    assert tuning.run_score({"status": "diverged", "modes": 8, "hq_pct": 90.0}, 8) == 0.0


def test_the_selection_takes_the_best_mean_score_and_a_tie_goes_to_the_published_recipe():
    base = [make_config("tiny", method="wgan_gp", mixture="ring", preset="literature",
                        seed=s) for s in (1000, 1001)]
    configs, candidates = tuning.search_configs(base, tuning.SPACE)
    assert len(configs) == 2 * tuning.CONFIGURATIONS
    scores = {0: (4, 50.0), 3: (8, 100.0), 5: (8, 100.0)}   # candidate -> modes, HQ %
    rows = pd.DataFrame([{"run_id": c.run_id, "status": "finished",
                          "modes": scores.get(candidates[c.run_id][0], (0, 0.0))[0],
                          "hq_pct": scores.get(candidates[c.run_id][0], (0, 0.0))[1]}
                         for c in configs])
    chosen = tuning.select(rows, configs, candidates)["tiny"]["literature"]["wgan_gp"]
    assert chosen["candidate"] == 3 and chosen["score"] == 1.0
    assert chosen["tuning_seeds"] == [1000, 1001]
    rows.loc[rows.run_id.isin([c.run_id for c in configs if candidates[c.run_id][0] in (3, 5)]),
             ["modes", "hq_pct"]] = (4, 50.0)
    assert tuning.select(rows, configs, candidates)["tiny"]["literature"]["wgan_gp"][
        "candidate"] == 0
    # a search with a run missing selects nothing (a --resume finishes it)
    assert tuning.select(rows.iloc[1:], configs, candidates) == {}


def test_the_search_says_its_cost_and_plan_runs_nothing(tmp_path, capsys):
    assert main(["tune", "--profile", "converged", "--plan", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "configurations x 2 presets x 3 mixtures x 2 tuning seeds" in out
    assert "estimated wall time" in out and " h at --jobs" in out
    assert list(tmp_path.iterdir()) == []


def test_a_search_on_the_reported_seeds_is_refused(tmp_path, capsys):
    assert main(["tune", *TINY, "--first-seed", "0", "--out", str(tmp_path)]) == 2
    one_line_error(capsys, "would select on the reported seeds", str(TUNING_SEEDS))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("edit, says", [
    (lambda space: space["wgan_gp"].__setitem__(0, {"lr": 1e-4}),
     "leaves out the published recipe of 'wgan_gp'"),
    (lambda space: space["wgan_gp"].pop(), "gives method 'wgan_gp' 7 configurations"),
    (lambda space: space["wgan_gp"].__setitem__(1, dict(space["wgan_gp"][0])),
     "train alike"),
])
def test_a_space_without_the_published_recipe_or_an_equal_budget_is_refused(
        tmp_path, capsys, edit, says):
    space = json.loads(json.dumps(tuning.SPACE))
    edit(space)
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"space": space}))
    out = tmp_path / "out"
    assert main(["tune", *TINY, "--methods", "wgan_gp", "--space", str(path),
                 "--out", str(out)]) == 2
    one_line_error(capsys, says)
    assert not out.exists()


def test_tuned_without_a_search_names_the_command_that_runs_it(tmp_path, capsys):
    assert main(["mode-coverage", *TINY, "--methods", "wgan_gp", "--protocol", "tuned",
                 "--out", str(tmp_path)]) == 2
    one_line_error(capsys, "no selected recipe for wgan_gp on the literature preset",
                   "python -m iwgan tune --profile tiny --presets literature --methods "
                   "wgan_gp")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_search_end_to_end_then_the_tuned_protocol_reads_its_selection(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["tune", *TINY, "--methods", "wgan_gp", "--seeds", "1", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"tuning search: {tuning.CONFIGURATIONS} runs")
    search = read_results(out / "results" / "tuning" / "search.csv")
    assert sorted(search.candidate) == list(range(tuning.CONFIGURATIONS))
    assert set(search.protocol) == {"tuned"} and set(search.seed) == {TUNING_SEEDS}
    assert set(search.status) == {"finished"}
    # candidates that differ only in lr, betas or lambda_GP train as one stack: 7 of the
    # 8 share n_critic 5, the eighth (n_critic 2) trains alone
    assert sorted(search.stacked) == [1] + [7] * 7
    space = json.loads((out / "results" / "tuning" / "space.json").read_text())
    assert space["space"]["wgan_gp"][0] == tuning.PUBLISHED["wgan_gp"]
    selected = json.loads((out / "results" / "tuning" / "selected.json").read_text())
    chosen = selected["tiny"]["literature"]["wgan_gp"]
    assert len(chosen["candidates"]) == tuning.CONFIGURATIONS and chosen["iterations"] == 6
    # resumable: a second call finds every run finished
    assert main([*args, "--resume"]) == 0
    assert "0 runs" in capsys.readouterr().out

    run = ["mode-coverage", *TINY, "--methods", "wgan_gp", "--seeds", "1", "--out", str(out)]
    assert main([*run, "--protocol", "tuned"]) == 0
    assert main(run) == 0          # the identical run beside it
    rows = read_results(out / "results" / "mode_coverage.csv").set_index("protocol")
    assert len(rows) == 2 and rows.loc["tuned", "run_id"] != rows.loc["identical", "run_id"]
    assert rows.loc["tuned", "lr"] == chosen["recipe"]["lr"]
    assert rows.loc["identical", "run_id"] == "tiny-literature-ring-wgan_gp-seed0"
    assert rows.loc["tuned", "seed"] == 0
    config = json.loads((out / "runs" / rows.loc["tuned", "run_id"] / "config.json")
                        .read_text())
    assert all(config[k] == v for k, v in chosen["recipe"].items())
    report = (out / "reports" / "mode_coverage.md").read_text()
    assert "## tiny profile, literature preset, tuned protocol" in report
    assert "## tiny profile, literature preset\n" in report
    assert "| tiny | literature | wgan_gp |" in report     # the selected recipe

    # a preset, a budget or a seed the search did not select for: refused, nothing run
    capsys.readouterr()
    assert main([*run, "--protocol", "tuned", "--presets", "paper"]) == 2
    one_line_error(capsys, "python -m iwgan tune --profile tiny --presets paper")
    assert main([*run, "--protocol", "tuned", "--iterations", "8"]) == 2
    one_line_error(capsys, "selected at 6 iterations")
    assert main([*run, "--protocol", "tuned", "--set", "lr=0.1"]) == 2
    one_line_error(capsys, "--set lr with --protocol tuned")
    assert len(read_results(out / "results" / "mode_coverage.csv")) == 2


def test_a_search_of_some_methods_keeps_the_space_the_others_recorded(tmp_path):
    path = tmp_path / "space.json"
    tuning.record_space(path, tuning.SPACE, ["iwgan", "wgan_gp"])
    tuning.record_space(path, tuning.SPACE, ["gan"])
    record = json.loads(path.read_text())
    assert sorted(record["space"]) == ["gan", "iwgan", "wgan_gp"]
    assert record["space"]["gan"] == json.loads(json.dumps(tuning.SPACE["gan"]))
    assert record["configurations"] == tuning.CONFIGURATIONS
