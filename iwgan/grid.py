"""Run a grid of configs, in parallel processes, with progress bars and an ETA, handing
each finished run's result to ``record`` at once so an interrupted grid loses nothing."""

from __future__ import annotations

import functools
import multiprocessing as mp
import queue as queue_lib
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from tqdm import tqdm

from iwgan.records import read_results, upsert_results

TICK = 20  # iterations between progress messages from a worker


def finished_runs(results_csv: Path) -> set[tuple[str, str]]:
    if not Path(results_csv).exists():
        return set()
    df = read_results(results_csv)
    done = df[df["status"].isin(["finished", "stopped_early"])]
    return set(zip(done["run_id"], done["config_hash"]))


def unfinished(configs, results_csv: Path) -> list:
    """The configs without a finished row of the same config in ``results_csv``."""
    done = finished_runs(results_csv)
    return [c for c in configs if (c.run_id, c.hash()) not in done]


def _worker(runner, cfg, messages):
    pending = [0]

    def progress(n):
        pending[0] += n
        if pending[0] >= TICK:
            messages.put((cfg.run_id, pending[0]))
            pending[0] = 0

    result = runner(cfg, progress=progress)
    messages.put((cfg.run_id, pending[0]))
    return result


def run_grid(configs, runner, record, jobs: int = 1) -> list:
    """``runner(cfg, progress=...)`` for every config, in ``jobs`` spawned processes (the
    runner must be picklable: a module-level function or a partial of one); ``record``
    receives each result in this process as soon as its run finishes."""
    runs = sum(len(getattr(c, "configs", (c,))) for c in configs)  # a seed group is K runs
    total = tqdm(total=sum(c.iterations for c in configs), desc=f"grid ({runs} runs)",
                 unit="it", position=0, dynamic_ncols=True, mininterval=1.0)
    bars: dict[str, tqdm] = {}
    by_id = {c.run_id: c for c in configs}
    results = []

    def advance(run_id, n):
        if run_id not in bars:
            bars[run_id] = tqdm(total=by_id[run_id].iterations, desc=run_id, unit="it",
                                leave=False, position=len(bars) % max(jobs, 1) + 1,
                                dynamic_ncols=True, mininterval=1.0)
        bars[run_id].update(n)
        total.update(n)

    def finish(cfg, result):
        results.append(result)
        record(result)
        bar = bars.pop(cfg.run_id, None)
        if bar:
            bar.close()

    try:
        if jobs <= 1:
            for cfg in configs:
                finish(cfg, runner(cfg, progress=functools.partial(advance, cfg.run_id)))
        else:
            ctx = mp.get_context("spawn")
            with ctx.Manager() as manager, ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
                messages = manager.Queue()
                futures = {pool.submit(_worker, runner, c, messages): c for c in configs}
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    _drain(messages, advance)
                    for fut in done:
                        finish(futures[fut], fut.result())
    finally:
        for bar in bars.values():
            bar.close()
        total.close()
    return results


def _drain(messages, advance) -> None:
    while True:
        try:
            run_id, n = messages.get_nowait()
        except queue_lib.Empty:
            return
        advance(run_id, n)


def run_mode_coverage(configs, results_csv: Path, runs_root: Path, jobs: int = 1,
                      resume: bool = False, batch_seeds: str = "auto") -> list[dict]:
    """The mode-coverage grid: one results row per run, written as each run (or batch of
    a cell's seeds, ``batch_seeds``: auto | on | off, iwgan.batched.plan_groups)
    finishes."""
    from iwgan.batched import plan_groups, run_group

    if resume:
        configs = unfinished(configs, results_csv)
    groups = plan_groups(configs, batch_seeds)

    def record(rows):
        upsert_results(results_csv, rows)
        for row in rows:
            if row["status"] == "diverged":
                tqdm.write(f"{row['run_id']}: diverged at iteration {row['diverged_at']}")

    done = run_grid(groups, functools.partial(run_group, runs_root=runs_root), record, jobs)
    return [row for rows in done for row in rows]
