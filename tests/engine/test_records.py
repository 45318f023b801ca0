"""Run records and results tables: concurrent writers keep every row, files follow the
umask, and a bad results file is an error naming it."""

import multiprocessing as mp
import os
import stat

import pandas as pd
import pytest

from iwgan.engine.records import ResultsError, check_results, read_results, upsert_results
from iwgan.files import atomic_write_text, update_json


def _writer(path, who, n):
    for i in range(n):
        upsert_results(path, [{"run_id": f"{who}-{i}", "method": "iwgan", "mixture": "ring",
                               "preset": "paper", "seed": i, "profile": who,
                               "status": "finished"}])


def _json_writer(path, who, n):
    for i in range(n):
        update_json(path, lambda record, i=i: record.update({f"{who}-{i}": i}))


@pytest.mark.parametrize("writer", [_writer, _json_writer])
def test_concurrent_writers_into_one_file_keep_every_row(tmp_path, writer):
    path = tmp_path / ("results.csv" if writer is _writer else "record.json")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=writer, args=(path, who, 15)) for who in ("a", "b", "c")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    if writer is _writer:
        assert sorted(read_results(path).run_id) == sorted(f"{w}-{i}" for w in "abc"
                                                           for i in range(15))
    else:
        import json

        assert len(json.loads(path.read_text())) == 45


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        from iwgan import files

        mask = files.FILE_MODE
        atomic_write_text(tmp_path / "x.txt", "hello")
        mode = stat.S_IMODE((tmp_path / "x.txt").stat().st_mode)
    finally:
        os.umask(old)
    assert mode == mask and mode & 0o044   # readable by group and others, not 0600


def test_an_empty_or_header_only_results_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "mode_coverage.csv"
    path.write_text("")
    with pytest.raises(ResultsError, match=rf"{path}: empty file"):
        read_results(path)
    pd.DataFrame(columns=["schema_version", "run_id", "method", "mixture", "preset", "seed",
                          "profile"]).to_csv(path, index=False)
    with pytest.raises(ResultsError, match=rf"{path}: a header and no rows"):
        read_results(path)


# --- a damaged results table ---------------------------------------------------------------

def _row(i):
    return {"run_id": f"r{i}", "method": "iwgan", "mixture": "ring", "preset": "paper",
            "seed": i, "profile": "tiny", "config_hash": f"h{i}", "status": "finished",
            "modes": 8.0, "hq_pct": 50.0 + i, "kl": 0.1, "w1": 0.5, "converged": True}


def _table(tmp_path, n=4):
    path = tmp_path / "mode_coverage.csv"
    upsert_results(path, [_row(i) for i in range(n)])
    return path


def damage_field(path, line: int, column: str, value: str) -> str:
    """Write ``value`` into ``column`` of line ``line`` of the table at ``path``; the
    line's run id."""
    lines = path.read_text().split("\n")
    header = lines[0].split(",")
    fields = lines[line - 1].split(",")
    fields[header.index(column)] = value
    lines[line - 1] = ",".join(fields)
    path.write_text("\n".join(lines))
    return fields[header.index("run_id")]


@pytest.mark.parametrize("damage, reason", [
    (lambda p: p.write_text(p.read_text()[:-12]), "the file ends in the middle of this row"),
    (lambda p: damage_field(p, 3, "hq_pct", "abc"), "hq_pct 'abc' is not a number"),
    (lambda p: damage_field(p, 3, "status", "finishd"), "status 'finishd' is none of"),
    (lambda p: damage_field(p, 3, "modes", ""), "a finished row without its modes"),
    (lambda p: damage_field(p, 3, "seed", "1.5"), "seed '1.5' is not an integer"),
    (lambda p: damage_field(p, 3, "converged", "maybe"), "converged 'maybe' is neither True"),
    (lambda p: p.write_text(p.read_text().replace("r1,", "r1,x,", 1)), "fields where the "
     "header has"),
])
def test_a_damaged_row_is_named_by_file_and_line_and_never_read_as_finished(tmp_path, damage,
                                                                            reason):
    path = _table(tmp_path)
    damage(path)
    with pytest.raises(ResultsError) as err:      # a report refuses the table, in one line
        read_results(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: 1 damaged row(s): line ")
    assert reason in message and "--resume" in message
    df = read_results(path, damaged="drop")       # a resume leaves it out: it re-runs
    assert len(df) == 3 and len(check_results(path)[1]) == 1
    assert df["hq_pct"].dtype == float and df["seed"].dtype == "int64"


def test_a_damaged_row_is_moved_aside_when_the_table_is_next_written(tmp_path, capsys):
    path = _table(tmp_path)
    damage_field(path, 3, "hq_pct", "abc")
    damaged_line = path.read_text().split("\n")[2]
    upsert_results(path, [_row(9)])
    assert sorted(read_results(path).run_id) == ["r0", "r2", "r3", "r9"]
    assert (tmp_path / "mode_coverage.csv.damaged").read_text() == damaged_line + "\n"
    assert "line 3 (run r1): hq_pct 'abc' is not a number: moved to" in capsys.readouterr().err


def test_a_duplicate_run_id_is_an_error_naming_both_lines(tmp_path):
    path = _table(tmp_path)
    lines = path.read_text().split("\n")
    path.write_text(path.read_text() + lines[2] + "\n")
    for damaged in ("raise", "warn", "drop"):
        with pytest.raises(ResultsError, match=r"run r1 has 2 rows \(lines 3, 6;"):
            read_results(path, damaged=damaged)


def test_an_intact_table_reads_as_pandas_reads_it(tmp_path):
    path = _table(tmp_path)
    # rows written before the protocol column existed read as the identical protocol
    pd.testing.assert_frame_equal(read_results(path),
                                  pd.read_csv(path).assign(protocol="identical"))
    upsert_results(path, [{**_row(9), "protocol": "tuned"}])
    df = read_results(path)
    pd.testing.assert_frame_equal(df, pd.read_csv(path).fillna({"protocol": "identical"}))
    assert list(df.protocol) == ["identical"] * 4 + ["tuned"]


def test_a_held_lock_makes_a_writer_say_what_it_waits_for(tmp_path, capsys, monkeypatch):
    import fcntl
    import threading

    from iwgan import files

    monkeypatch.setattr(files, "LOCK_PATIENCE", 0.2)
    path = _table(tmp_path)
    lock = tmp_path / "mode_coverage.csv.lock"
    with open(lock, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.seek(0)
        held.truncate()
        held.write("pid 4242 (python -m iwgan mode-coverage)\n")
        held.flush()
        writer = threading.Thread(target=upsert_results, args=(path, [_row(9)]))
        writer.start()
        writer.join(1.0)
        assert writer.is_alive()          # it waits ...
        fcntl.flock(held, fcntl.LOCK_UN)
    writer.join(10)
    assert not writer.is_alive() and "r9" in set(read_results(path).run_id)
    assert (f"waiting for the lock {lock}, held by pid 4242 (python -m iwgan mode-coverage)"
            in capsys.readouterr().err)   # ... and says for what


def test_a_copy_without_git_takes_its_commit_from_the_environment(monkeypatch, tmp_path):
    """A checkout copied without .git (to a GPU machine: benchmarks/gpu_campaign.py)
    records the commit it was copied from, where the copy was prepared."""
    from iwgan.engine import records

    real = records.git_state()
    assert real["commit"] != "unknown"
    monkeypatch.setattr(records, "REPO_ROOT", tmp_path)   # no repository there
    monkeypatch.delenv(records.SOURCE_COMMIT, raising=False)
    assert records.git_state() == {"commit": "unknown", "dirty": False}
    monkeypatch.setenv(records.SOURCE_COMMIT, "0123abc")
    monkeypatch.setenv(records.SOURCE_DIRTY, "1")
    assert records.git_state() == {"commit": "0123abc", "dirty": True}
    monkeypatch.undo()
    assert records.git_state() == real       # a real repository's own commit wins


def test_a_finished_row_without_w1_is_intact_only_when_it_says_why(tmp_path):
    """Where POT was missing a run leaves W1 empty and says why (w1_unavailable)."""
    path = tmp_path / "mode_coverage.csv"
    reason = "W1 not computed: POT is not installed here"
    upsert_results(path, [{**_row(0), "w1": float("nan"), "w1_unavailable": reason},
                          {**_row(1), "w1_unavailable": float("nan")}])
    assert len(read_results(path)) == 2
    upsert_results(path, [{**_row(2), "w1": float("nan"), "w1_unavailable": float("nan")}])
    with pytest.raises(ResultsError, match="a finished row without its w1"):
        read_results(path)
