"""Rename the recorded BiGAN runs: until ALI's encoder became stochastic, the method ``ali``
trained a deterministic encoder, i.e. BiGAN (baselines/bigan.py). Every record of such a
run is renamed ``bigan``, so that a table never calls a BiGAN run ALI:

    python -m iwgan migrate-bigan            # rewrite results/ in place (atomic per file)
    python -m iwgan migrate-bigan --check    # exit 1 if a run recorded as ALI-before remains

What it rewrites, under ``results/``:

- every results table (a CSV with a ``method`` column): a row with method ``ali`` that
  started before :data:`CUTOFF` (a row without a date: every ``ali`` row) reads
  ``bigan`` in ``method``, and ``-bigan-seed`` in its run id. ``config_hash`` and
  ``cell`` are the digests of the run's config, which holds the method: the row's config
  is rebuilt from its columns, and each digest is replaced by the BiGAN config's only
  where the rebuilt ALI config reproduces the recorded one (a row that lacks a setting
  keeps its recorded digest, which then names no run of today's code: a resumed grid
  re-runs it rather than skip it);
- the regression references (``results/regression/reference.csv``): their cases and
  config hashes, rebuilt from the regression subsets' own configs (the check re-runs
  ``bigan`` where it ran ``ali``), each checked against the recorded hash;
- the curves (``*curves.csv``) and the files named by a run id (samples, figure arrays)
  of a renamed run: a run id is renamed where the table it belongs to holds the BiGAN
  run and not an ALI run of that id;
- the benchmark and wall-time records (JSON) dated before :data:`CUTOFF`: the method name
  ``ali`` and the ``ali`` of a run id or a benchmark id (``[cpu-ali]``).

Running it twice changes nothing the second time. The ``command`` column is left as it
was: it records what was typed.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import re
from pathlib import Path

from iwgan.engine.config import ImageConfig, MixtureConfig, parse_field
from iwgan.experiments import regression
from iwgan.experiments.common import add_migration_arguments, results_folder
from iwgan.files import atomic_write_text

OLD, NEW = "ali", "bigan"
# Records that started before this were made while ``ali`` trained BiGAN's deterministic
# encoder (its default until this migration).
CUTOFF = "2026-12-07T12:00:00+00:00"
DATE_KEYS = ("started", "date", "finished")
# The folders of files named by a run id, and the table that holds those runs.
NAMED_FILES = {"mode_coverage_samples": "mode_coverage.csv",
               "convergence_artifacts": "convergence.csv", "images": "images.csv"}
REFERENCE = Path("regression") / "reference.csv"
_ID = re.compile(rf"(?<=[-\[]){OLD}(?=[-\]])")   # quick-paper-ring-ali-seed0, [cpu-ali]


def old_id(run_id: str) -> bool:
    return f"-{OLD}-seed" in run_id


def new_id(run_id: str) -> str:
    return run_id.replace(f"-{OLD}-seed", f"-{NEW}-seed")


def before_cutoff(row: dict) -> bool:
    dates = [row[k] for k in DATE_KEYS if isinstance(row.get(k), str) and row[k]]
    return not dates or dates[0] < CUTOFF


# --- Tables ---------------------------------------------------------------------------

def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    text = path.read_text()
    reader = csv.DictReader(io.StringIO(text))
    return list(reader.fieldnames or []), list(reader)


def csv_text(header: list[str], rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def rebuilt_config(row: dict):
    """The ALI config the row's columns give (None where they give none)."""
    cls = ImageConfig if "dataset" in row else MixtureConfig
    names = {f.name for f in dataclasses.fields(cls)} - {"profile", "device"}
    values = {}
    for k in names & set(row):
        if row[k] not in ("", None):
            try:
                values[k] = parse_field(k, row[k], cls)
            except ValueError:
                pass
    try:
        return cls.make(row["profile"], **values)
    except (ValueError, KeyError, TypeError):
        return None


def migrate_row(row: dict) -> dict:
    """The row of a BiGAN run recorded as ``ali``, renamed (digests where verifiable)."""
    cfg = rebuilt_config(row)
    out = dict(row, method=NEW, run_id=new_id(row["run_id"]))
    if cfg is not None and cfg.run_id == row["run_id"]:
        bigan = dataclasses.replace(cfg, method=NEW)
        if row.get("config_hash") == cfg.hash():
            out["config_hash"] = bigan.hash()
        if row.get("cell") == cfg.cell_key():
            out["cell"] = bigan.cell_key()
    return out


def is_old_row(row: dict) -> bool:
    return row.get("method") == OLD and before_cutoff(row)


def migrate_table(path: Path) -> tuple[str | None, set[str]]:
    """(the table's new text, or None if unchanged; the run ids it renamed)."""
    header, rows = read_csv(path)
    if "method" not in header or "run_id" not in header:
        return None, set()
    renamed = {r["run_id"] for r in rows if is_old_row(r)}
    if not renamed:
        return None, set()
    return csv_text(header, [migrate_row(r) if is_old_row(r) else r for r in rows]), renamed


def bigan_ids(table: Path) -> set[str]:
    """The ALI run ids whose run is BiGAN's in ``table``: the table holds the BiGAN run
    and no ALI run of that id."""
    if not table.exists():
        return set()
    _, rows = read_csv(table)
    ids = {r.get("run_id", "") for r in rows}
    return {i.replace(f"-{NEW}-seed", f"-{OLD}-seed") for i in ids
            if f"-{NEW}-seed" in i} - ids


def curves_table(path: Path) -> Path:
    """The results table whose runs a curves file holds."""
    name = path.name.replace("-curves.csv", ".csv").replace("_curves.csv", ".csv")
    return path.with_name(name)


def migrate_curves(path: Path, renamed: set[str]) -> str | None:
    header, rows = read_csv(path)
    if "run_id" not in header:
        return None
    if not any(r["run_id"] in renamed for r in rows):
        return None
    out = [dict(r, run_id=new_id(r["run_id"]),
                **({"method": NEW} if "method" in r else {}))
           if r["run_id"] in renamed else r for r in rows]
    return csv_text(header, out)


# --- Regression references ------------------------------------------------------------

def reference_configs() -> dict[str, tuple[str, object]]:
    """ALI's old run id -> (its config hash, the BiGAN config) over the regression
    subsets that re-run BiGAN."""
    out = {}
    for factory in regression.SUBSETS.values():
        for cfg in factory().configs:
            if cfg.method == NEW:
                ali = dataclasses.replace(cfg, method=OLD, options={})
                out[ali.run_id] = (ali.hash(), cfg)
    return out


def migrate_references(path: Path) -> str | None:
    header, rows = read_csv(path)
    old = [r for r in rows if old_id(r["case"])]
    if not old:
        return None
    configs = reference_configs()
    out = []
    for r in rows:
        if old_id(r["case"]):
            if r["case"] not in configs or configs[r["case"]][0] != r["config_hash"]:
                raise ValueError(f"{path}: reference case {r['case']} (config "
                                 f"{r['config_hash']}) is not one the regression subsets "
                                 "re-run as bigan: re-make the references with "
                                 "`python -m iwgan regression --update`")
            cfg = configs[r["case"]][1]
            r = dict(r, case=cfg.run_id, config_hash=cfg.hash())
        out.append(r)
    return csv_text(header, out)


# --- JSON records -----------------------------------------------------------------------

def first_date(obj) -> str | None:
    if isinstance(obj, dict):
        for k in DATE_KEYS:
            if isinstance(obj.get(k), str):
                return obj[k]
        values = obj.values()
    elif isinstance(obj, list):
        values = obj
    else:
        return None
    return next((d for d in map(first_date, values) if d), None)


def renamed_json(obj):
    """``obj`` with the method name ``ali`` and the ``ali`` of ids renamed."""
    if isinstance(obj, dict):
        return {renamed_json(k): renamed_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [renamed_json(v) for v in obj]
    if isinstance(obj, str):
        return NEW if obj == OLD else _ID.sub(NEW, obj)
    return obj


def migrate_json(path: Path) -> str | None:
    text = path.read_text()
    if not re.search(rf'"{OLD}"|[-\[]{OLD}[-\]]', text):
        return None
    data = json.loads(text)
    if not isinstance(data, dict):
        return None
    whole = first_date(data)
    # a file of records keyed by name (wall times) dates each; another, as a whole
    per_record = all(isinstance(v, dict) and first_date(v) for v in data.values())
    if per_record:
        out = {k: renamed_json(v) if (first_date(v) or "") < CUTOFF else v
               for k, v in data.items()}
    else:
        out = renamed_json(data) if (whole or "") < CUTOFF else data
    new = json.dumps(out, indent=2, sort_keys=True) + "\n"
    return None if out == data else new


# --- The whole folder -------------------------------------------------------------------

def plan(results: Path) -> dict[Path, str | tuple[Path, Path]]:
    """What the migration changes under ``results``: path -> new text, or a rename
    (old path -> new path)."""
    changes: dict[Path, object] = {}
    renamed: dict[Path, set[str]] = {}
    tables = sorted(p for p in results.rglob("*.csv") if not p.name.endswith("curves.csv")
                    and p != results / REFERENCE)
    for table in tables:
        text, ids = migrate_table(table)
        if text is not None:
            changes[table] = text
        renamed[table] = ids | bigan_ids(table)
    for curves in sorted(results.rglob("*curves.csv")):
        text = migrate_curves(curves, renamed.get(curves_table(curves), set()))
        if text is not None:
            changes[curves] = text
    if (results / REFERENCE).exists():
        text = migrate_references(results / REFERENCE)
        if text is not None:
            changes[results / REFERENCE] = text
    for folder, table in NAMED_FILES.items():
        ids = renamed.get(results / table, set())
        files = sorted((results / folder).iterdir()) if (results / folder).is_dir() else []
        for path in files:
            if path.stem in ids:     # <run id>.npz, <run id>.npy
                changes[path] = (path, path.with_name(new_id(path.name)))
    for path in sorted(results.rglob("*.json")):
        text = migrate_json(path)
        if text is not None:
            changes[path] = text
    return changes


def apply(changes: dict) -> None:
    for path, change in changes.items():
        if isinstance(change, tuple):
            old, new = change
            if new.exists():
                raise ValueError(f"cannot rename {old} to {new}: {new} exists; move one away")
            old.rename(new)
        else:
            atomic_write_text(path, change)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_migration_arguments(p, "a BiGAN run recorded as ali remains")


def command(args) -> int:
    results = results_folder(args)
    changes = plan(results)
    for path, change in changes.items():
        what = f"rename to {change[1].name}" if isinstance(change, tuple) else "rewrite"
        print(f"{'unmigrated' if args.check else 'migrated'}: {path} ({what})")
    if args.check:
        print(f"{len(changes)} file(s) still call BiGAN runs ali"
              + ("; run `python -m iwgan migrate-bigan`" if changes else ""))
        return 1 if changes else 0
    apply(changes)
    print(f"{len(changes)} file(s) migrated")
    return 0
