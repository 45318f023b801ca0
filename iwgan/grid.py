"""Run a grid of configs, in parallel processes, with progress bars and an ETA, writing
each finished run's row to ``results/`` at once so an interrupted grid loses nothing."""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_lib
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from tqdm import tqdm

from iwgan.records import read_results, upsert_results
from iwgan.runs import run_one

TICK = 20  # iterations between progress messages from a worker


def finished_runs(results_csv: Path) -> set[tuple[str, str]]:
    if not Path(results_csv).exists():
        return set()
    df = read_results(results_csv)
    done = df[df["status"].isin(["finished", "stopped_early"])]
    return set(zip(done["run_id"], done["config_hash"]))


def _worker(cfg, runs_root, messages):
    pending = [0]

    def progress(n):
        pending[0] += n
        if pending[0] >= TICK:
            messages.put((cfg.run_id, pending[0]))
            pending[0] = 0

    row = run_one(cfg, runs_root, progress)
    messages.put((cfg.run_id, pending[0]))
    return row


def run_grid(configs, results_csv: Path, runs_root: Path, jobs: int = 1,
             resume: bool = False) -> list[dict]:
    """Run every config (skipping finished ones when ``resume``); returns the new rows."""
    if resume:
        done = finished_runs(results_csv)
        configs = [c for c in configs if (c.run_id, c.hash()) not in done]
    total = tqdm(total=sum(c.iterations for c in configs), desc=f"grid ({len(configs)} runs)",
                 unit="it", position=0, dynamic_ncols=True, mininterval=1.0)
    bars: dict[str, tqdm] = {}
    rows: list[dict] = []

    def advance(run_id, n, iterations):
        if run_id not in bars:
            bars[run_id] = tqdm(total=iterations, desc=run_id, unit="it", leave=False,
                                position=len(bars) % max(jobs, 1) + 1, dynamic_ncols=True,
                                mininterval=1.0)
        bars[run_id].update(n)
        total.update(n)

    def finish(row):
        rows.append(row)
        upsert_results(results_csv, [row])
        bar = bars.pop(row["run_id"], None)
        if bar:
            bar.close()
        if row["status"] == "diverged":
            tqdm.write(f"{row['run_id']}: diverged at iteration {row['diverged_at']}")

    try:
        if jobs <= 1:
            for cfg in configs:
                finish(run_one(cfg, runs_root,
                               lambda n, c=cfg: advance(c.run_id, n, c.iterations)))
        else:
            by_id = {c.run_id: c for c in configs}
            ctx = mp.get_context("spawn")
            with ctx.Manager() as manager, ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
                messages = manager.Queue()
                futures = {pool.submit(_worker, c, runs_root, messages) for c in configs}
                while futures:
                    done, futures = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
                    _drain(messages, lambda rid, n: advance(rid, n, by_id[rid].iterations))
                    for fut in done:
                        finish(fut.result())
    finally:
        for bar in bars.values():
            bar.close()
        total.close()
    return rows


def _drain(messages, advance) -> None:
    while True:
        try:
            run_id, n = messages.get_nowait()
        except queue_lib.Empty:
            return
        advance(run_id, n)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
