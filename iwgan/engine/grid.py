"""Run a grid of units (tuples of configs trained as one model, iwgan.engine.stacking), in
parallel processes, with progress bars and an ETA, handing each finished unit's result
to ``record`` at once so an interrupted grid loses nothing.

The worker processes die with the grid: a worker whose parent is gone (killed, even by
SIGKILL, which nothing can catch) exits at once (Linux: the kernel's parent-death
signal; elsewhere a watchdog thread polling the parent's pid), so no orphan finishes its
run into ``runs/`` behind a resumed grid's back."""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import queue as queue_lib
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from tqdm import tqdm

from iwgan.engine.records import read_results

TICK = 20  # iterations between progress messages from a worker


def finished_runs(results_csv: Path, read=read_results, also=None) -> set[tuple[str, str]]:
    """(run_id, config_hash) of the finished rows of ``results_csv`` whose columns also
    hold the values ``also`` names."""
    if not Path(results_csv).exists():
        return set()
    df = read(results_csv)
    done = df["status"].isin(["finished", "stopped_early"])
    for column, value in (also or {}).items():
        done &= (df[column] == value) if column in df else False
    return set(zip(df["run_id"][done], df["config_hash"][done]))


def unfinished(configs, results_csv: Path, read=read_results, also=None) -> list:
    """The configs without a finished row of the same config (and the values ``also``
    names) in ``results_csv``."""
    done = finished_runs(results_csv, read, also)
    return [c for c in configs if (c.run_id, c.hash()) not in done]


def unit_id(unit) -> str:
    """A unit's name in progress bars: its run, or its first run and how many more."""
    return unit[0].run_id if len(unit) == 1 else f"{unit[0].run_id} (+{len(unit) - 1} stacked)"


_MESSAGES = None   # a worker's progress queue, set by its initializer


def _die_with_parent(parent: int, messages) -> None:
    """Worker initializer: exit when the grid's process ``parent`` is gone."""
    global _MESSAGES
    _MESSAGES = messages
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)         # PR_SET_PDEATHSIG: SIGKILL with the parent
    if os.getppid() != parent:                # it died before the signal was set
        os._exit(1)

    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


def _worker(runner, unit):
    messages = _MESSAGES
    pending = [0]
    name = unit_id(unit)

    def progress(n):
        pending[0] += n
        if pending[0] >= TICK:
            messages.put((name, pending[0]))
            pending[0] = 0

    result = runner(unit, progress=progress)
    messages.put((name, pending[0]))
    return result


def run_grid(units, runner, record, jobs: int = 1, failed=None, retries: int = 1) -> list:
    """``runner(unit, progress=...)`` for every unit, in ``jobs`` spawned processes (the
    runner must be picklable: a module-level function or a partial of one); ``record``
    receives each result in this process as soon as its unit finishes. A unit whose
    runner raises is run ``retries`` more times, then ``failed(unit, error)`` is recorded
    in its place (without ``failed``, the error propagates)."""
    units = list(units)
    runs = sum(len(u) for u in units)
    total = tqdm(total=sum(u[0].iterations for u in units), desc=f"grid ({runs} runs)",
                 unit="it", position=0, dynamic_ncols=True, mininterval=1.0)
    bars: dict[str, tqdm] = {}
    by_id = {unit_id(u): u for u in units}
    results = []

    def advance(name, n):
        if name not in bars:
            bars[name] = tqdm(total=by_id[name][0].iterations, desc=name, unit="it",
                              leave=False, position=len(bars) % max(jobs, 1) + 1,
                              dynamic_ncols=True, mininterval=1.0)
        bars[name].update(n)
        total.update(n)

    def finish(unit, result):
        results.append(result)
        record(result)
        bar = bars.pop(unit_id(unit), None)
        if bar:
            bar.close()

    def give_up(unit, err):
        if failed is None:
            raise err
        tqdm.write(f"{unit_id(unit)}: failed ({type(err).__name__}: {err})")
        finish(unit, failed(unit, f"{type(err).__name__}: {err}"))

    try:
        if jobs <= 1:
            for unit in units:
                name = unit_id(unit)
                for attempt in range(retries + 1):
                    try:
                        result = runner(unit, progress=lambda n, name=name: advance(name, n))
                    except Exception as err:  # a failing unit is retried, then recorded
                        if attempt == retries:
                            give_up(unit, err)
                        continue
                    finish(unit, result)
                    break
        else:
            ctx = mp.get_context("spawn")
            messages = ctx.Queue()
            with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_die_with_parent,
                                     initargs=(os.getpid(), messages)) as pool:
                futures = {pool.submit(_worker, runner, u): (u, 0) for u in units}
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    _drain(messages, advance)
                    for fut in done:
                        unit, attempt = futures.pop(fut)
                        try:
                            result = fut.result()
                        except Exception as err:  # retried, then recorded as failed
                            if attempt < retries:
                                again = pool.submit(_worker, runner, unit)
                                futures[again] = (unit, attempt + 1)
                                pending.add(again)
                            else:
                                give_up(unit, err)
                            continue
                        finish(unit, result)
    finally:
        for bar in bars.values():
            bar.close()
        total.close()
    return results


def _drain(messages, advance) -> None:
    while True:
        try:
            name, n = messages.get_nowait()
        except queue_lib.Empty:
            return
        advance(name, n)
