"""Run records and results tables: concurrent writers keep every row, files follow the
umask, and a bad results file is an error naming it."""

import multiprocessing as mp
import os
import stat

import pandas as pd
import pytest

from iwgan.engine.records import (
    ResultsError,
    atomic_write_text,
    read_results,
    update_json,
    upsert_results,
)


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
        from iwgan.engine import records

        mask = records.FILE_MODE
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
