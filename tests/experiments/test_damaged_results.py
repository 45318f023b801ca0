"""A damaged results table, end to end: ``reports`` refuses it in one line naming the file
and the row, ``--resume`` runs the damaged row's run again (and only it) instead of
averaging it, a duplicate run id or a dropped column is a one-line error; a results file
that cannot be read is called unreadable, not unwritable."""

import os

import pandas as pd
import pytest

from iwgan.cli import main
from iwgan.engine.records import read_results
from tests.engine.test_records import damage_field

pytestmark = pytest.mark.slow
GRID = ["mode-coverage", "--profile", "tiny", "--methods", "wgan_gp", "--mixtures", "ring",
        "--presets", "paper", "--seeds", "3", "--stack", "off", "--jobs", "1", "--no-report"]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """A finished three-run grid; each test damages a copy of its table."""
    out = tmp_path_factory.mktemp("grid")
    assert main([*GRID, "--out", str(out)]) == 0
    return out


@pytest.fixture
def out(grid, tmp_path):
    import shutil

    shutil.copytree(grid, tmp_path / "out")
    return tmp_path / "out"


def table(out):
    return out / "results" / "mode_coverage.csv"


def edit(out, line: int, column: str, value: str) -> str:
    return damage_field(table(out), line, column, value)


def cut_last_row(out) -> str:
    path = table(out)
    text = path.read_text()
    path.write_text(text[:-30])
    return text.rstrip("\n").split("\n")[-1].split(",")[1]


@pytest.mark.parametrize("damage, says", [
    (cut_last_row, "the file ends in the middle of this row"),
    (lambda out: edit(out, 3, "hq_pct", "abc"), "hq_pct 'abc' is not a number"),
])
def test_reports_refuse_a_damaged_row_and_resume_runs_only_it_again(out, capsys, damage,
                                                                    says):
    before = read_results(table(out)).set_index("run_id")
    run = damage(out)
    line = 4 if damage is cut_last_row else 3
    assert main(["reports", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"error: {table(out)}: 1 damaged row(s): "
                                              f"line {line} (run {run}): {says}")
    assert main([*GRID, "--out", str(out), "--resume"]) == 0
    captured = capsys.readouterr()
    assert "1 runs in" in captured.out                     # that run, and only it, re-ran
    warning = next(w for w in captured.err.splitlines() if w.startswith("warning: "))
    assert f"line {line} (run {run}): {says}" in warning and "left out" in warning
    after = read_results(table(out)).set_index("run_id")
    assert sorted(after.index) == sorted(before.index)
    assert (after.drop(index=run).started == before.drop(index=run).started).all()
    metrics = ["modes", "hq_pct", "kl", "w1"]   # --stack off: the re-run is the same run
    pd.testing.assert_frame_equal(after.loc[before.index, metrics], before[metrics])
    assert (out / "results" / "mode_coverage.csv.damaged").read_text().count("\n") == 1
    assert main(["reports", "--out", str(out)]) == 0


def test_a_duplicate_run_id_is_an_error_for_reports_and_for_resume(out, capsys):
    lines = table(out).read_text().split("\n")
    table(out).write_text("\n".join([*lines[:-1], lines[2], ""]))
    run = lines[2].split(",")[1]
    for command in (["reports", "--out", str(out)], [*GRID, "--out", str(out), "--resume"]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and f"run {run} has 2 rows (lines 3, 5;" in err


@pytest.mark.parametrize("column, command", [("config_hash", "resume"), ("hq_pct", "reports")])
def test_a_dropped_column_is_a_one_line_error(out, capsys, column, command):
    pd.read_csv(table(out)).drop(columns=[column]).to_csv(table(out), index=False)
    args = [*GRID, "--out", str(out), "--resume"] if command == "resume" else \
        ["reports", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"missing column(s) ['{column}']" in err


def test_an_unreadable_or_corrupt_record_is_called_so_not_unwritable(out, capsys):
    mixtures = out / "results" / "mixtures.json"
    mixtures.write_text("{ not json")
    assert main(["reports", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {mixtures}: not valid JSON") and "cannot write" not in err
    if os.geteuid() != 0:   # root reads any file
        mixtures.write_text("{}")
        mixtures.chmod(0)
        assert main(["reports", "--out", str(out)]) == 2
        assert f"cannot read {mixtures}: Permission denied" in capsys.readouterr().err
