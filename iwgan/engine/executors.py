"""Where a grid's units run: local processes, a Dask cluster, or Slurm through submitit.

Every grid command takes ``--executor local|dask|slurm``. The unit of work is the one of
the local grid (iwgan.engine.grid): a run, or a stack of runs trained as one model.
Workers train and write their own run directories (``runs/<run>/``: on a cluster, a file
system every node sees); they return the results rows, and only this process, the
coordinator, writes the shared results tables, as each unit comes back. Every executor
runs the one loop of iwgan.engine.grid.drive: a unit whose worker fails or is lost is run
once more, then recorded as failed (status ``failed``, with the error), never lost;
``--resume`` re-runs what did not finish. An interrupt (Ctrl-C, SIGTERM) stops every
executor the same way: nothing more starts (Dask: queued units are cancelled; Slurm:
pending jobs are cancelled), running units stop at their next iteration (they poll a
stop flag: Dask an Event on the scheduler, Slurm a file in the job folder) or end if
past training, what comes back is recorded, and whatever has not come back after the
grace period is cancelled.

- ``local``: ``--jobs`` processes on this machine (the default).
- ``dask``: Dask distributed. ``--scheduler ADDRESS`` uses a running cluster; without it
  a ``LocalCluster`` of ``--jobs`` single-threaded worker processes is started, bound to
  127.0.0.1, with no dashboard unless ``--dashboard`` asks for one (on 127.0.0.1 too).
- ``slurm``: one submitit job per unit, with ``--partition``, ``--time-min``,
  ``--cpus-per-job`` and ``--gpus-per-job``; ``--slurm-local`` runs the jobs with
  submitit's local executor (no Slurm needed: for testing), at most ``--jobs`` at once.

``--jobs`` above this machine's CPU count is capped to it, with a warning, unless
``--oversubscribe`` (local processes, a local Dask cluster, ``--slurm-local``).
dask/distributed and submitit are optional (``pip install .[cluster]``) and imported only
when their executor is chosen.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from iwgan.engine.grid import drive, ignoring_sigint, run_grid
from iwgan.engine.workers import (
    Halted,
    Stopped,
    Throttled,
    call_unit,
    halting,
    slurm_unit,
    unit_id,
)

EXECUTORS = ("local", "dask", "slurm")


@dataclass(frozen=True)
class ExecutorOptions:
    kind: str = "local"
    jobs: int = 1
    scheduler: str | None = None
    dashboard: bool = False
    partition: str | None = None
    time_min: int = 60
    cpus: int = 1
    gpus: int = 0
    slurm_local: bool = False
    folder: Path = Path("runs") / "submitit"


def add_executor_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where the runs execute (docs/scale-out.md)")
    g.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local processes (default), a Dask cluster, or Slurm via submitit")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="dask: a running scheduler (e.g. tcp://10.0.0.5:8786); default: a "
                   "LocalCluster of --jobs workers on 127.0.0.1")
    g.add_argument("--dashboard", action="store_true",
                   help="dask LocalCluster: serve its dashboard (on 127.0.0.1 only)")
    g.add_argument("--partition", default=None, help="slurm: the partition")
    g.add_argument("--time-min", type=int, default=60, help="slurm: minutes per job (60)")
    g.add_argument("--cpus-per-job", type=int, default=1, help="slurm: CPUs per job (1)")
    g.add_argument("--gpus-per-job", type=int, default=0, help="slurm: GPUs per job (0)")
    g.add_argument("--slurm-local", action="store_true",
                   help="slurm: submitit's local executor instead of Slurm (testing)")
    g.add_argument("--oversubscribe", action="store_true",
                   help="allow --jobs above this machine's CPU count (capped to it otherwise)")


def cpu_count() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        return os.cpu_count() or 1


def local_jobs(args) -> int:
    """``--jobs``, capped to the CPU count (with a warning) where the processes run on this
    machine, unless ``--oversubscribe``: each worker holds its own torch (~0.45 GB), and
    more of them than CPUs only share the CPUs."""
    local = args.executor == "local" or (args.executor == "dask" and not args.scheduler) \
        or (args.executor == "slurm" and args.slurm_local)
    cpus = cpu_count()
    if not local or args.jobs <= cpus or args.oversubscribe:
        return args.jobs
    print(f"warning: --jobs {args.jobs} is more than the {cpus} CPU(s) of this machine: "
          f"running {cpus} at once (--oversubscribe keeps {args.jobs})", file=sys.stderr)
    return cpus


def executor_options(args) -> ExecutorOptions:
    for name in ("time_min", "cpus_per_job"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got "
                             f"{getattr(args, name)}")
    if args.gpus_per_job < 0:
        raise ValueError(f"--gpus-per-job must be non-negative, got {args.gpus_per_job}")
    if args.executor != "dask" and (args.scheduler or args.dashboard):
        raise ValueError("--scheduler and --dashboard belong to --executor dask")
    return ExecutorOptions(kind=args.executor, jobs=args.jobs, scheduler=args.scheduler,
                           dashboard=args.dashboard, partition=args.partition,
                           time_min=args.time_min, cpus=args.cpus_per_job,
                           gpus=args.gpus_per_job, slurm_local=args.slurm_local,
                           folder=Path(args.out) / "runs" / "submitit")


@contextlib.contextmanager
def open_executor(options: ExecutorOptions):
    """The executor, checked and connected before anything is written: an unreachable
    scheduler or a missing Slurm is a one-line error here."""
    if options.kind == "local":
        yield LocalExecutor(options)
    elif options.kind == "dask":
        with DaskExecutor.connect(options) as ex:
            yield ex
    else:
        yield SlurmExecutor.check(options)


class LocalExecutor:
    def __init__(self, options: ExecutorOptions):
        self.options = options

    def run(self, units, runner, record, failed, work=None) -> list:
        return run_grid(units, runner, record, self.options.jobs, failed=failed, work=work)


class DaskExecutor:
    def __init__(self, client, options: ExecutorOptions):
        self.client, self.options = client, options

    @classmethod
    @contextlib.contextmanager
    def connect(cls, options: ExecutorOptions):
        try:
            from distributed import Client, LocalCluster  # optional: the dask executor's
        except ImportError as err:
            raise ValueError("--executor dask needs dask[distributed]: pip install "
                             "'.[cluster]'") from err
        if options.scheduler:
            try:
                client = Client(options.scheduler, timeout="10s")
            except (OSError, TimeoutError) as err:
                raise ValueError(f"cannot reach the Dask scheduler at {options.scheduler} "
                                 f"({type(err).__name__}); start it (dask scheduler) or "
                                 "drop --scheduler for a local cluster") from None
            with client:
                yield cls(client, options)
            return
        with ignoring_sigint():   # its processes leave Ctrl-C to the grid
            cluster = LocalCluster(n_workers=options.jobs, threads_per_worker=1,
                                   processes=True, host="127.0.0.1",
                                   dashboard_address="127.0.0.1:0" if options.dashboard
                                   else None)
        with cluster, Client(cluster) as client:
            if options.dashboard:
                print(f"dask dashboard: {client.dashboard_link}")
            yield cls(client, options)

    def run(self, units, runner, record, failed, work=None) -> list:
        return drive(units, DaskBackend(self.client, runner), record, failed, work=work)


def _dask_unit(runner, unit, stop: str):
    """A unit on a Dask worker: it stops at its next iteration once the Event ``stop``
    is set on the scheduler (looked up at most once a second)."""
    from distributed import Event  # optional: the dask executor's

    return halting(lambda: call_unit(runner, unit, Throttled(Event(stop).is_set)))


class RemoteBackend:
    """What the Dask and Slurm backends share (the backend interface of
    iwgan.engine.grid.InProcess): handles with ``done()`` and ``result()``, looked at
    every 0.1 s; they report runs as they come back, not iterations."""

    counts_iterations = False

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.flight: set = set()

    def start(self, advance, interrupts) -> None:
        pass

    def submit(self, unit):
        handle = self._submit(unit)
        self.flight.add(handle)
        return handle

    def poll(self, handles, timeout):
        end = time.monotonic() + timeout
        while True:
            done = [h for h in handles if h.done()]
            if done or time.monotonic() >= end:
                break
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))
        self.flight -= set(done)
        return [(h, *self._outcome(h)) for h in done]

    def _outcome(self, handle) -> tuple:
        """(result, None), or (None, the error) of a finished handle."""
        try:
            result = handle.result()
        except Exception as err:  # the unit's error, or its cancellation: drive decides
            return None, err
        return (None, result.error()) if isinstance(result, Halted) else (result, None)

    def close(self) -> None:
        pass


class DaskBackend(RemoteBackend):
    """The units as Dask futures, all submitted at once (the scheduler queues them). Dask
    itself re-runs a task whose worker was lost (up to its ``allowed-failures``) before
    the loop sees a failure."""

    def __init__(self, client, runner):
        super().__init__(sys.maxsize)
        self.client, self.runner = client, runner
        self.stop_event = f"iwgan-stop-{uuid.uuid4().hex}"
        self.serial = itertools.count()

    def _submit(self, unit):
        return self.client.submit(_dask_unit, self.runner, unit, self.stop_event, pure=False,
                                  key=f"unit-{next(self.serial)}-{unit_id(unit)}")

    def stop(self, handles) -> None:
        from distributed import Event  # optional: the dask executor's

        Event(self.stop_event, client=self.client).set()
        running = {key for keys in self.client.processing().values() for key in keys}
        queued = [f for f in handles if f.key not in running and not f.done()]
        if queued:
            self.client.cancel(queued)

    def kill(self) -> None:
        if self.flight:
            self.client.cancel(list(self.flight), force=True)


class SlurmExecutor:
    def __init__(self, options: ExecutorOptions):
        self.options = options

    @classmethod
    def check(cls, options: ExecutorOptions) -> SlurmExecutor:
        try:
            import submitit  # noqa: F401  (optional: only the slurm executor needs it)
        except ImportError as err:
            raise ValueError("--executor slurm needs submitit: pip install '.[cluster]'") \
                from err
        if not options.slurm_local and shutil.which("sbatch") is None:
            raise ValueError("--executor slurm needs Slurm (no sbatch on this machine): run "
                             "it on a Slurm login node, or add --slurm-local to run the jobs "
                             "with submitit's local executor")
        return cls(options)

    def executor(self):
        import submitit  # optional: the slurm executor's

        o = self.options
        if o.slurm_local:
            ex = submitit.LocalExecutor(folder=str(o.folder))
            ex.update_parameters(timeout_min=o.time_min)
        else:
            ex = submitit.AutoExecutor(folder=str(o.folder), cluster="slurm")
            ex.update_parameters(timeout_min=o.time_min, cpus_per_task=o.cpus,
                                 gpus_per_node=o.gpus,
                                 **({"slurm_partition": o.partition} if o.partition else {}))
        return ex

    def run(self, units, runner, record, failed, work=None) -> list:
        o = self.options
        backend = SlurmBackend(self.executor(), runner, o.folder, o.slurm_local,
                               o.jobs if o.slurm_local else sys.maxsize)
        return drive(units, backend, record, failed, work=work)


class SlurmBackend(RemoteBackend):
    """One submitit job per unit; stop: the stop file, and pending jobs cancelled; kill:
    scancel (local jobs: their controller's SIGINT, which kills the job)."""

    def __init__(self, executor, runner, folder: Path, local: bool, capacity: int):
        super().__init__(capacity)
        self.ex, self.runner, self.local = executor, runner, local
        self.stop_file = Path(folder) / f".stop-{uuid.uuid4().hex}"
        self.never_started: set = set()      # pending jobs cancelled by stop()

    def start(self, advance, interrupts) -> None:
        self.stop_file.parent.mkdir(parents=True, exist_ok=True)

    def _submit(self, unit):
        with ignoring_sigint() if self.local else contextlib.nullcontext():
            # a local job (this machine's process group) leaves Ctrl-C to the grid
            return self.ex.submit(slurm_unit, pickle.dumps((self.runner, unit)),
                                  str(self.stop_file))

    def _outcome(self, job) -> tuple:
        if job in self.never_started:
            return None, Stopped(started=False)
        return super()._outcome(job)

    def stop(self, handles) -> None:
        self.stop_file.touch()
        if not self.local:
            self.never_started = {j for j in handles if j.state == "PENDING"}
            self._cancel(list(self.never_started))

    def kill(self) -> None:
        self._cancel(list(self.flight))

    def _cancel(self, jobs) -> None:
        if not jobs:
            return
        if self.local:   # its controller ignores SIGINT (cancel's signal): kill its tree
            for job in jobs:
                process = getattr(job, "_process", None)
                if process is None:
                    job.cancel(check=False)
                else:
                    _kill_tree(process.pid)
        else:   # one scancel for all of them
            subprocess.run(["scancel", *[str(j.job_id) for j in jobs]], check=False,
                           capture_output=True)

    def close(self) -> None:
        self.stop_file.unlink(missing_ok=True)


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and its descendants (Linux: /proc's children lists)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        _kill_tree(int(child))
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
