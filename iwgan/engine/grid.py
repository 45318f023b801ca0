"""Run a grid of units (tuples of configs trained as one model, iwgan.engine.stacking) with
progress bars and an ETA, handing each finished unit's result to ``record`` at once so
an interrupted grid loses nothing.

:func:`drive` is the one loop every executor runs (iwgan.engine.executors): it keeps at
most the executor's capacity of units in flight, runs a unit whose worker failed
``retries`` more times, then records it as failed (``failed(unit, error)``), and answers
interrupts. This module has the local executors' two backends: :class:`InProcess`
(``--jobs 1``: the units run in this process) and :class:`Processes` (``--jobs N``:
spawned worker processes).

Interrupts (SIGINT, i.e. Ctrl-C, or SIGTERM) while a grid runs:

- the first stops the grid: no unit starts any more; a unit still training stops at its
  next iteration (not recorded: ``--resume`` runs it again); a unit past training
  (evaluating, writing its run directory) ends and is recorded. Whatever has not come
  back after :data:`GRACE` seconds is killed. Then :class:`GridInterrupted` is raised,
  which says what was recorded and what was not.
- a second one kills the workers at once; a results write in progress is finished
  first (the tables are written atomically in any case), so nothing is left corrupt.

The worker processes ignore SIGINT (a terminal's Ctrl-C reaches the whole process
group: only this process decides), and they die with the grid: a worker whose parent
is gone (killed, even by SIGKILL, which nothing can catch) exits at once (Linux: the
kernel's parent-death signal; elsewhere a watchdog thread polling the parent's pid), so
no orphan finishes its run into ``runs/`` behind a resumed grid's back."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue as queue_lib
import re
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, CancelledError, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from tqdm import tqdm

from iwgan.engine.records import read_results
from iwgan.engine.workers import Stopped, call_unit, init_worker, run_in_worker, unit_id

RETRIES = 1     # further attempts of a unit whose worker failed, before it is recorded
GRACE = 30.0    # seconds an interrupted grid waits for its units in flight to come back
POLL = 0.2      # seconds between looks at the units in flight


def finished_runs(results_csv: Path, read=read_results, also=None) -> set[tuple[str, str]]:
    """(run_id, config_hash) of the finished rows of ``results_csv`` whose columns also
    hold the values ``also`` names (a table without such a column holds none). A damaged
    row (iwgan.engine.records.read_results) is not finished: a resumed grid runs it again."""
    if not Path(results_csv).exists():
        return set()
    df = read(results_csv, required=["status", "config_hash"], damaged="drop")
    done = df["status"].isin(["finished", "stopped_early"])
    for column, value in (also or {}).items():
        done &= (df[column] == value) if column in df else False
    return set(zip(df["run_id"][done], df["config_hash"][done]))


def unfinished(configs, results_csv: Path, read=read_results, also=None) -> list:
    """The configs without a finished row of the same config (and the values ``also``
    names) in ``results_csv``."""
    done = finished_runs(results_csv, read, also)
    return [c for c in configs if (c.run_id, c.hash()) not in done]


def runs(units) -> int:
    return sum(len(u) for u in units)


# --- interrupts ---------------------------------------------------------------------------

class Forced(KeyboardInterrupt):
    """A second interrupt: stop now."""


class GridInterrupted(KeyboardInterrupt):
    """The grid was interrupted; ``summary`` says what was recorded and what was not."""

    def __init__(self, signum: int, recorded: int, failed: int, stopped: int,
                 not_started: int, killed: int, forced: bool, seconds: float):
        super().__init__(signum)
        self.signum, self.forced = signum, forced
        self.recorded, self.failed, self.stopped = recorded, failed, stopped
        self.not_started, self.killed, self.seconds = not_started, killed, seconds

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def summary(self) -> str:
        lost = self.stopped + self.killed
        parts = [f"{signal.Signals(self.signum).name} after {self.seconds:.0f} s"
                 + (" (twice: stopped at once)" if self.forced else "") + ": ",
                 f"{self.recorded} run(s) recorded"
                 + (f" ({self.failed} of them failed)" if self.failed else ""),
                 f", {lost} stopped before the end and not recorded"
                 + (f" ({self.killed} killed)" if self.killed else ""),
                 f", {self.not_started} not started"]
        return "".join(parts)


class Interrupts:
    """SIGINT and SIGTERM while a grid runs (main thread only): the first sets ``signal``,
    which the grid polls; the second calls ``on_force`` and raises :class:`Forced` at
    once, or right after the results write in progress (:meth:`recording`)."""

    def __init__(self):
        self.signal: int | None = None
        self.forced = False
        self.on_force = lambda: None
        self.ending = False       # the grid is tearing down: nothing to raise into
        self._recording = 0
        self._pending = False
        self._old: dict = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame) -> None:
        if self.signal is None:
            self.signal = signum
            # os.write, not print: a handler may run in the middle of a print
            _say(f"\n{signal.Signals(signum).name}: stopping the grid: no run starts any "
                 "more, running ones stop at their next iteration, finished ones are "
                 "recorded (interrupt again to stop at once)\n")
            return
        if not self.forced:
            self.forced = True
            _say("\nstopping at once\n")
            self.on_force()
        if self._recording or self.ending:
            self._pending = True
            return
        raise Forced(signum)

    @contextlib.contextmanager
    def recording(self):
        """A results write: a second interrupt waits for its end."""
        self._recording += 1
        try:
            yield
        finally:
            self._recording -= 1
            if self._pending and not self._recording:
                self._pending = False
                raise Forced(self.signal)


def _say(text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(sys.stderr.fileno(), text.encode())


@contextlib.contextmanager
def ignoring_sigint():
    """Processes started inside inherit an ignored SIGINT (Python keeps a SIGINT that is
    ignored at its start ignored): a terminal's Ctrl-C, which reaches the whole process
    group, then reaches the grid alone, which stops its workers itself."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.getsignal(signal.SIGINT)
    try:
        # inside the try: the grid's handler may raise (a second interrupt) as soon as
        # this call returns, and the handler found must still come back
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        yield
    finally:
        signal.signal(signal.SIGINT, old)


# --- the loop -----------------------------------------------------------------------------

def budget(unit) -> int:
    """The iterations a unit trains: its members' budget."""
    return unit[0].iterations


class GridProgress:
    """The grid's bars: iterations, with one bar per unit in flight, where the backend
    reports them; else runs, as their units come back. ``work(unit)``: the iterations a
    unit reports (default its budget; a continuation check's are counted too)."""

    def __init__(self, units, iterations: bool, slots: int, work=None):
        self.iterations, self.slots = iterations, max(slots, 1)
        self.work = work or budget
        total = sum(self.work(u) for u in units) if iterations else runs(units)
        self.total = tqdm(total=total, desc=f"grid ({runs(units)} runs)",
                          unit="it" if iterations else "run", position=0,
                          dynamic_ncols=True, mininterval=1.0)
        self.live: dict[str, tuple] = {}
        self.bars: dict[str, tqdm] = {}

    def begin(self, unit) -> None:
        self.live[unit_id(unit)] = unit

    def started(self, unit) -> bool:
        """Whether the unit has reported an iteration: it trains, or has trained."""
        return unit_id(unit) in self.bars

    def advance(self, name: str, n: int) -> None:
        if name not in self.live:     # a late message of a unit that came back
            return
        if name not in self.bars:
            self.bars[name] = tqdm(total=self.work(self.live[name]), desc=name, unit="it",
                                   leave=False, position=len(self.bars) % self.slots + 1,
                                   dynamic_ncols=True, mininterval=1.0)
        self.bars[name].update(n)
        self.total.update(n)

    def done(self, unit, recorded: bool) -> None:
        """The unit came back: its bar closes, and the total counts all its iterations if
        it is recorded (it may have stopped early), none if it will run again."""
        self.live.pop(unit_id(unit), None)
        bar = self.bars.pop(unit_id(unit), None)
        counted = bar.n if bar is not None else 0
        if bar is not None:
            bar.close()
        if not self.iterations:
            self.total.update(len(unit) if recorded else 0)
        else:
            self.total.update(self.work(unit) - counted if recorded else -counted)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.total.close()


def error_line(error: BaseException) -> str:
    """An error in one line: its type and message; of a message over several lines, the
    last line that names an error (the traceback a cluster engine hands back ends in
    the worker's error), else the first and the last."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"[\w.]*(Error|Exception)\b", line)]
    text = raised[-1] if len(lines) > 1 and raised else " ... ".join(
        [lines[0], lines[-1]] if len(lines) > 1 else lines)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def drive(units, backend, record, failed=None, retries: int = RETRIES, work=None) -> list:
    """Every unit through ``backend`` (the interface: :class:`InProcess`), each result
    handed to ``record`` in this process as soon as its unit comes back. A unit whose
    worker fails is run ``retries`` more times, then ``failed(unit, error)`` is recorded
    in its place (without ``failed``, the error propagates). Returns the results; raises
    :class:`GridInterrupted` on an interrupt (module docstring). ``work``: what a unit's
    progress counts (:class:`GridProgress`)."""
    units = list(units)
    waiting = deque((u, 0) for u in units)
    flight: dict = {}                       # handle -> (unit, attempt)
    results = []
    count = {"recorded": 0, "failed": 0, "stopped": 0, "killed": 0, "not_started": 0}
    start = time.monotonic()
    progress = GridProgress(units, backend.counts_iterations, backend.capacity, work)

    with Interrupts() as interrupts:
        interrupts.on_force = backend.kill
        backend.start(progress.advance, interrupts)

        def finish(unit, result, as_failure=False):
            with interrupts.recording():
                record(result)
                results.append(result)
                count["recorded"] += len(unit)
                count["failed"] += len(unit) if as_failure else 0
            progress.done(unit, recorded=True)

        def outcome(handle, result, error) -> None:
            unit, attempt = flight.pop(handle)
            if error is None:
                return finish(unit, result)
            progress.done(unit, recorded=False)
            if isinstance(error, CancelledError) or (isinstance(error, Stopped)
                                                     and not error.started):
                count["not_started"] += len(unit)
                return
            if interrupts.signal is not None or isinstance(error, Stopped):
                count["stopped"] += len(unit)       # --resume runs it again
                return
            if attempt < retries:
                waiting.appendleft((unit, attempt + 1))
                return
            if failed is None:
                raise error
            message = error_line(error)
            tqdm.write(f"{unit_id(unit)}: failed after {attempt + 1} attempt(s) ({message})")
            finish(unit, failed(unit, message), as_failure=True)

        def look(timeout: float) -> None:
            for handle, result, error in backend.poll(list(flight), timeout):
                outcome(handle, result, error)

        try:
            while (waiting or flight) and interrupts.signal is None:
                while waiting and len(flight) < backend.capacity:
                    unit, attempt = waiting.popleft()
                    progress.begin(unit)
                    flight[backend.submit(unit)] = (unit, attempt)
                look(POLL)
            if interrupts.signal is not None and flight:
                # What has come back is kept; the rest is asked to stop, and whatever has
                # not come back after the grace period is killed.
                look(0)
                backend.stop(list(flight))

                def training() -> list:   # units that may still end (or are ending)
                    return [u for u, _ in flight.values()
                            if progress.started(u) or not backend.counts_iterations]

                if training():
                    tqdm.write(f"waiting for {runs(training())} run(s) in flight to stop or "
                               f"finish (at most {GRACE:.0f} s)")
                deadline = time.monotonic() + GRACE
                while training() and time.monotonic() < deadline:
                    look(POLL)
        except Forced:
            pass
        finally:
            interrupts.ending = True
            if flight or interrupts.signal is not None:
                # idle workers too: nothing is lost, and a worker's own exit (its torch
                # torn down) takes seconds
                backend.kill()
                # a unit that has not trained an iteration (its worker still starting)
                # loses nothing: it counts as not started
                left = [(u, progress.started(u) or not backend.counts_iterations)
                        for u, _ in flight.values()]
                count["killed"] = runs([u for u, started in left if started])
                count["not_started"] += runs([u for u, started in left if not started])
            progress.close()
            backend.close()
        if interrupts.signal is not None:
            raise GridInterrupted(interrupts.signal, count["recorded"], count["failed"],
                                  count["stopped"],
                                  runs([u for u, _ in waiting]) + count["not_started"],
                                  count["killed"], interrupts.forced,
                                  time.monotonic() - start)
    return results


# --- the local backends -------------------------------------------------------------------

class InProcess:
    """``--jobs 1``: a unit runs in this process, when it is polled.

    The interface every backend has (the Dask and Slurm ones: iwgan.engine.executors):
    ``capacity`` (units in flight at most), ``counts_iterations`` (whether it reports
    iterations through ``advance``), ``start(advance, interrupts)``, ``submit(unit) ->
    handle``, ``poll(handles, timeout) -> [(handle, result, error), ...]`` for the
    handles that came back (``error`` None, the worker's exception, or :class:`Stopped`),
    ``stop(handles)`` (ask them to stop: the first interrupt), ``kill()`` and
    ``close()``."""

    counts_iterations = True
    capacity = 1

    def __init__(self, runner):
        self.runner = runner

    def start(self, advance, interrupts) -> None:
        self.advance, self.interrupts = advance, interrupts

    def submit(self, unit):
        return _Handle(unit)

    def poll(self, handles, timeout):
        handle = handles[0]
        name = unit_id(handle.unit)
        try:
            result = call_unit(self.runner, handle.unit,
                               lambda: self.interrupts.signal is not None,
                               lambda n: self.advance(name, n))
        except Exception as err:  # a failing unit: retried, then recorded by drive
            return [(handle, None, err)]
        return [(handle, result, None)]

    def stop(self, handles) -> None:
        pass

    def kill(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Handle:
    def __init__(self, unit):
        self.unit = unit


class Processes:
    """``--jobs N``: N spawned worker processes, at most N units in flight (so that no
    unit waits in a queue an interrupt would have to drain). A worker that dies breaks
    the pool: its units in flight are failures (run again, then recorded) and the next
    unit starts a new pool."""

    counts_iterations = True

    def __init__(self, runner, jobs: int):
        self.runner, self.capacity = runner, jobs
        self.pool = None
        self.killed = False

    def start(self, advance, interrupts) -> None:
        self.advance = advance
        self.ctx = mp.get_context("spawn")
        self.messages, self.stop_event = self.ctx.Queue(), self.ctx.Event()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.capacity, mp_context=self.ctx,
                                   initializer=init_worker,
                                   initargs=(os.getpid(), self.messages, self.stop_event))

    def submit(self, unit):
        with ignoring_sigint():   # workers spawned here start with SIGINT ignored
            if self.pool is None:
                self.pool = self._new_pool()
            try:
                return self.pool.submit(run_in_worker, self.runner, unit)
            except BrokenProcessPool:
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = self._new_pool()
                return self.pool.submit(run_in_worker, self.runner, unit)

    def poll(self, handles, timeout):
        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        self._drain()
        out = []
        for fut in done:
            error = fut.exception()
            out.append((fut, None if error is not None else fut.result(), error))
        return out

    def _drain(self) -> None:
        while True:
            try:
                name, n = self.messages.get_nowait()
            except (queue_lib.Empty, OSError, ValueError):
                return
            self.advance(name, n)

    def stop(self, handles) -> None:
        self.stop_event.set()

    def kill(self) -> None:
        self.killed = True
        processes = getattr(self.pool, "_processes", None) or {}
        for process in list(processes.values()):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                process.kill()

    def close(self) -> None:
        if self.pool is not None:
            processes = list((getattr(self.pool, "_processes", None) or {}).values())
            self.pool.shutdown(wait=not self.killed, cancel_futures=True)
            for process in processes if self.killed else ():
                process.join(1.0)     # reaped: no zombie left behind
        self.messages.close()
        self.messages.cancel_join_thread()


def run_grid(units, runner, record, jobs: int = 1, failed=None, retries: int = RETRIES,
             work=None) -> list:
    """``runner(unit, progress=...)`` for every unit, in this process (``jobs`` 1) or in
    ``jobs`` spawned processes (the runner must be picklable: a module-level function or
    a partial of one); ``record`` receives each result in this process as soon as its
    unit finishes (:func:`drive`)."""
    backend = InProcess(runner) if jobs <= 1 else Processes(runner, jobs)
    return drive(units, backend, record, failed=failed, retries=retries, work=work)
