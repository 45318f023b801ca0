"""The command line's answers to a disk that fails it: one line naming the path and the
fix, a non-zero exit, and nothing half-written."""

import errno
import os

import pytest

from iwgan import files
from iwgan.cli import main

GRID = ["mode-coverage", "--profile", "tiny", "--methods", "wgan_gp", "--mixtures", "ring",
        "--presets", "paper", "--seeds", "1", "--jobs", "1", "--no-report"]


def test_an_out_that_is_a_file_is_refused_before_anything_runs(tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("x")
    assert main([*GRID, "--out", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --out {target} is a file, not a folder; give a folder"
    assert main([*GRID, "--out", str(target / "below")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("code, fix", [(errno.ENOSPC, "free disk space"),
                                       (errno.EROFS, "read-only"),
                                       (errno.EACCES, "permission denied")])
def test_a_failing_disk_is_one_line_naming_the_path_and_the_fix(tmp_path, capsys,
                                                                monkeypatch, code, fix):
    def failing(path, data):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(files, "atomic_write_bytes", failing)
    rc = main([*GRID, "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert err[0].startswith(f"error: cannot write {tmp_path}") and fix in err[0]
