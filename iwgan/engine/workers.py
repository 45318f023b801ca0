"""What runs on the workers' side of a grid: the stop protocol every executor's units
follow (:func:`call_unit`), and the set-up of the local worker processes.

Standard library only: a spawned worker imports this module to run its initializer, and
so sets its parent-death signal at once, before the imports of its first unit (seconds
of torch and pandas), during which a killed grid would otherwise leave it behind."""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import sys
import threading
import time

TICK = 20       # iterations between progress messages from a worker


class Stopped(Exception):
    """Raised in a unit asked to stop (the grid was interrupted): not a failure, never
    retried or recorded; ``started``: whether its runner had begun. An Exception, not a
    KeyboardInterrupt, so that every engine hands it back as the unit's outcome."""

    def __init__(self, started: bool = True):
        super().__init__("stopped: the grid was interrupted")
        self.started = started

    def __reduce__(self):
        return Stopped, (self.started,)


class Halted:
    """What a stopped unit returns on an engine that would log a raised :class:`Stopped`
    as a failed task (Dask, Slurm); the grid reads it as that Stopped."""

    def __init__(self, stopped: Stopped):
        self.started = stopped.started

    def error(self) -> Stopped:
        return Stopped(self.started)


def unit_id(unit) -> str:
    """A unit's name in progress bars: its run, or its first run and how many more."""
    return unit[0].run_id if len(unit) == 1 else f"{unit[0].run_id} (+{len(unit) - 1} stacked)"


def call_unit(runner, unit, should_stop, report=None):
    """``runner(unit, progress=...)``, raising :class:`Stopped` before it starts and at
    any iteration once ``should_stop()``; ``report(n)`` gets the iterations done."""
    if should_stop():
        raise Stopped(started=False)

    def progress(n):
        if should_stop():
            raise Stopped()
        if report is not None:
            report(n)

    return runner(unit, progress=progress)


def halting(unit_call):
    """A unit's call on an engine that logs a raised exception as a failed task (Dask,
    Slurm): a :class:`Stopped` unit returns :class:`Halted` instead."""
    try:
        return unit_call()
    except Stopped as stopped:
        return Halted(stopped)


def slurm_unit(packed: bytes, stop: str):
    """A unit in a Slurm job, ``packed`` = pickle of (runner, unit): it stops at its next
    iteration once the file ``stop`` exists (the job folder is on a file system the
    coordinator sees too). The runner is unpickled, and so its imports made, only when
    the unit is to run: a job the grid stopped before it began ends at once."""
    should_stop = Throttled(lambda: os.path.exists(stop))
    if should_stop():
        return Halted(Stopped(started=False))
    runner, unit = pickle.loads(packed)
    return halting(lambda: call_unit(runner, unit, should_stop))


class Throttled:
    """``check()`` at most once every ``every`` seconds (a remote look-up), and True once
    it has been."""

    def __init__(self, check, every: float = 1.0):
        self.check, self.every, self.last, self.value = check, every, -float("inf"), False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.value and now - self.last >= self.every:
            self.last, self.value = now, bool(self.check())
        return self.value


_MESSAGES = None   # a worker's progress queue, set by its initializer
_STOP = None       # the grid's stop event, set by the worker's initializer


def init_worker(parent: int, messages, stop) -> None:
    """Worker initializer: ignore SIGINT (the grid decides), keep the grid's queue and
    stop event, and exit when the grid's process ``parent`` is gone."""
    global _MESSAGES, _STOP
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _MESSAGES, _STOP = messages, stop
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


def run_in_worker(runner, unit):
    """A unit in a local worker process (iwgan.engine.grid.Processes): its iterations
    reported on the grid's queue, stopped by the grid's event."""
    name, pending, done = unit_id(unit), [0], [0]

    def report(n):
        # the first iteration at once (the grid then knows the unit trains), then every
        # TICK, and the last (the grid then knows it is past training)
        pending[0] += n
        done[0] += n
        if pending[0] >= TICK or done[0] in (n, unit[0].iterations):
            _MESSAGES.put((name, pending[0]))
            pending[0] = 0

    try:
        return call_unit(runner, unit, _STOP.is_set, report)
    finally:
        if pending[0]:
            _MESSAGES.put((name, pending[0]))
