"""Command-line entry point: ``python -m iwgan <command> --help``.

Every nox session calls one of these commands, so anything a session does can be run
directly. Bad input is refused before anything is written, with exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import sys
from pathlib import Path

from iwgan.core.methods import ADD_A_METHOD, get_method
from iwgan.data.datasets import default_cache_dir
from iwgan.engine.grid import GridInterrupted
from iwgan.experiments import (
    convergence,
    images,
    migrate_bigan,
    migrate_flags,
    mode_coverage,
    regression,
    throughput,
    tuning,
)

OUT_FOLDERS = ("runs", "results", "reports")   # what a command writes under --out


def cmd_reports(args) -> int:
    from iwgan.reporting import build_all  # matplotlib and seaborn: only for this command

    for path in build_all(args.out / "results", args.out / "reports"):
        print(f"report: {path}")
    return 0


def cmd_check_method(args) -> int:
    # Imported here: the check trains networks; the other commands never need it.
    from iwgan.engine.conformance import check_method

    checks = check_method(args.method)
    method = get_method(args.method)
    print(f"method {method.name!r}: {method.module.__name__} ({method.origin})")
    for check in checks:
        print(f"  {'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
    failed = [c.name for c in checks if not c.ok]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks passed"
          + (f"; fix: {', '.join(failed)} ({ADD_A_METHOD})" if failed else ""))
    return 1 if failed else 0


def cmd_power(args) -> int:
    from iwgan.reporting.verdicts import refresh_docs, write_power  # the reporting stack

    results = args.out / "results"
    if not any((results / name).exists() for name in ("mode_coverage.csv", "convergence.csv")):
        raise ValueError(f"{results}: no mode-coverage or convergence results to compute "
                         "the power from; run `nox -s mode_coverage` or `nox -s convergence`")
    print(f"power: {write_power(results)}")
    docs = refresh_docs(args.out)
    if docs is not None:
        print(f"docs: {docs} (its generated tables)")
    return 0


def check_out(out: Path) -> None:
    """``--out`` must be a folder this process can write: refused before anything runs."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; give a folder")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"--out {out}: {existing} is a file, not a folder; give a folder")
    if not os.access(existing, os.W_OK):
        raise ValueError(f"--out {out}: {existing} is not writable; choose another --out")
    for name in OUT_FOLDERS:
        if (out / name).exists() and not (out / name).is_dir():
            raise ValueError(f"--out {out}: {out / name} is a file where the suite keeps a "
                             "folder; move it away or choose another --out")


def io_error(err: OSError, options: dict | None = None) -> str:
    """One line: what could not be written, why, and what to do about it. ``options``
    maps a folder to the option that chooses it (--out, --cache-dir): the fix names the
    option of the folder the path is in."""
    what = f"cannot write {err.filename}" if err.filename else "an I/O operation failed"
    option = "--out"
    if err.filename:
        path = Path(os.path.abspath(err.filename))
        for folder, name in (options or {}).items():
            if path.is_relative_to(os.path.abspath(folder)):
                option = name
    fix = {errno.ENOSPC: f"free disk space or choose another {option}",
           errno.EDQUOT: f"free disk space or choose another {option}",
           errno.EROFS: f"the file system is read-only: choose another {option}",
           errno.EACCES: f"permission denied: choose a writable {option}",
           errno.EPERM: f"permission denied: choose a writable {option}",
           errno.ENOTDIR: f"a file stands where a folder should be: choose another {option}",
           errno.EISDIR: "a folder stands where a file should be: remove it"}
    return f"{what}: {err.strerror or err}; {fix.get(err.errno, 'check the path and retry')}"


def folder_options(args) -> dict:
    """The folders a command writes, each with the option that chooses it; the cache's
    last, as it may lie inside --out."""
    options = {getattr(args, "out", None) or Path("."): "--out"}
    if hasattr(args, "cache_dir"):
        options[args.cache_dir or default_cache_dir()] = "--cache-dir (or $IWGAN_CACHE)"
    return options


def resume_command(argv=None) -> str:
    """This command line, with --resume."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return "python -m iwgan " + shlex.join(argv + ([] if "--resume" in argv else ["--resume"]))


COMMANDS = [
    ("mode-coverage", mode_coverage, "mixture grid: modes, HQ %%, KL, W1",
     "Train every method x mixture x preset x seed and score mode coverage under the 3-std "
     "protocol; then rebuild the report. --protocol tuned trains each method x preset "
     "with the recipe `tune` selected."),
    ("tune", tuning, "the tuned protocol's equal-budget search",
     "Train the same number of configurations for every method (a stated space that holds "
     "each method's published recipe) x mixture x preset on tuning seeds (>= 1000, "
     "disjoint from the reported ones), score each by mean (modes/K) x (HQ %/100) and "
     "write results/tuning/ (space.json, search.csv, selected.json); prints the number of "
     "runs and the estimated wall time first (docs/tuning.md). Resumable with --resume."),
    ("convergence", convergence, "duality gap vs exact W1 over training, latent space, "
     "quality score", "Train every method x mixture x seed with the duality gap of eq. (4), "
     "exact W1 and mode coverage every M iterations, then the latent, quality-score and "
     "interpolation analyses; then rebuild reports/convergence.md."),
    ("regression", regression, "metric-drift check against committed references",
     "Re-run a small seeded subset of every experiment kind, compare its metrics with "
     "results/regression/reference.csv (explicit per-metric tolerances, "
     "docs/reproducibility.md), print the drift table and write reports/regression.md; "
     "exit 1 on any drift."),
    ("images", images, "MNIST / CelebA / digits: train, FID or FD, figures",
     "Train every method x seed on one image dataset (Section 5.2), resumable from "
     "checkpoints; score FID (or FD-<data>CNN offline); save the figure arrays; then "
     "rebuild reports/<dataset>.md."),
    ("throughput", throughput, "benchmarks: samples/s, suite overhead, stacked members, GPU "
     "fast path", "Run the benchmarks in benchmarks/ (pytest-benchmark), write "
     "results/throughput/<device>.json with the run manifest and rebuild "
     "reports/throughput.md."),
    ("migrate-bigan", migrate_bigan, "rename the runs recorded as ali before ALI's encoder "
     "became stochastic to bigan", "Rename every record under results/ of a run made while "
     "the method ali trained a deterministic encoder (BiGAN) to bigan: tables, curves, "
     "regression references, files named by a run id and benchmark records; atomic per "
     "file, and a second run changes nothing. --check changes nothing and exits 1 if such "
     "a record remains."),
    ("migrate-flags", migrate_flags, "fill in the collapsed / mode_lost / degraded_late "
     "flags of mixture rows recorded before runs recorded them", "Compute each trained "
     "mixture row's missing run flags (docs/verdicts.md) from its final modes and HQ % "
     "and its curve, by the function a run calls; atomic per table, under its lock; a "
     "recorded flag is kept, so a second run changes nothing. --check changes nothing and "
     "exits 1 if a trained row lacks its flags."),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iwgan", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module, help_text, description in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=description)
        module.add_arguments(p)
        p.set_defaults(func=module.command)
    p = sub.add_parser("check-method", help="check a method module against the interface",
                       description="Check a method (a built-in name, an installed method's "
                       "name, or a module path such as mypkg.mymethod) against the method "
                       "interface: one training step per phase on CPU, on points and where "
                       "it declares so on images, stacked members against single runs, "
                       "its logs and its typed options. Exit 1 if a check fails.")
    p.add_argument("method", help="the method's name or module path")
    p.set_defaults(func=cmd_check_method)
    p = sub.add_parser("reports", help="rebuild reports/ from results/ alone")
    p.add_argument("--out", type=Path, default=Path("."), help="root of results/ and reports/")
    p.set_defaults(func=cmd_reports)
    p = sub.add_parser("power", help="seeds per cell each comparison verdict needs",
                       description="From the committed spreads of results/, the runs per "
                       "group Welch's test needs for 80 % power at the observed effects, "
                       "iWGAN against WGAN-GP on the paper preset; writes "
                       "results/verdicts/power.json and refreshes the generated tables of "
                       "docs/verdicts.md.")
    p.add_argument("--out", type=Path, default=Path("."), help="root of results/ and docs/")
    p.set_defaults(func=cmd_power)
    args = parser.parse_args(argv)
    try:
        if getattr(args, "out", None) is not None:
            check_out(args.out)
        return args.func(args)
    except ValueError as err:  # bad input: a clear message, non-zero exit
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:     # the disk: full, read-only, a file where a folder should be
        print(f"error: {io_error(err, folder_options(args))}", file=sys.stderr)
        return 1
    except GridInterrupted as err:   # an interrupted grid: what it kept, how to go on
        print(f"interrupted: {err.summary()}; the recorded runs are in "
              f"{Path(args.out) / 'results'}/\nresume with: {resume_command(argv)}",
              file=sys.stderr, flush=True)
        if err.forced and argv is None:
            # Interrupted twice on the command line: at once, without the interpreter's
            # teardown (seconds with torch loaded); every file is closed and was written
            # atomically, the workers are gone.
            sys.stdout.flush()
            os._exit(err.exit_code)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished runs are recorded in results/; --resume skips them",
              file=sys.stderr)
        return 130
