"""Where a grid's units run: local processes, a Dask cluster, or Slurm through submitit.

Every grid command takes ``--executor local|dask|slurm``. The unit of work is the one of
the local grid (iwgan.engine.grid): a run, or a stack of runs trained as one model.
Workers train and write their own run directories (``runs/<run>/``: on a cluster, a file
system every node sees); they return the results rows, and only this process, the
coordinator, writes the shared results tables, as each unit comes back. A unit whose
worker fails or is lost is run once more, then recorded as failed (status ``failed``,
with the error), never lost; ``--resume`` re-runs what did not finish.

- ``local``: ``--jobs`` processes on this machine (the default).
- ``dask``: Dask distributed. ``--scheduler ADDRESS`` uses a running cluster; without it
  a ``LocalCluster`` of ``--jobs`` single-threaded worker processes is started, bound to
  127.0.0.1, with no dashboard unless ``--dashboard`` asks for one (on 127.0.0.1 too).
- ``slurm``: one submitit job per unit, with ``--partition``, ``--time-min``,
  ``--cpus-per-job`` and ``--gpus-per-job``; ``--slurm-local`` runs the jobs with
  submitit's local executor (no Slurm needed: for testing), at most ``--jobs`` at once.

dask/distributed and submitit are optional (``pip install .[cluster]``) and imported only
when their executor is chosen.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from iwgan.engine.grid import run_grid, unit_id

EXECUTORS = ("local", "dask", "slurm")
RETRIES = 1


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

    def run(self, units, runner, record, failed) -> list:
        return run_grid(units, runner, record, self.options.jobs, failed=failed)


def _progress(units):
    return tqdm(total=sum(len(u) for u in units), desc=f"grid ({sum(map(len, units))} runs)",
                unit="run", dynamic_ncols=True, mininterval=1.0)


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
        cluster = LocalCluster(n_workers=options.jobs, threads_per_worker=1, processes=True,
                               host="127.0.0.1",
                               dashboard_address="127.0.0.1:0" if options.dashboard else None)
        with cluster, Client(cluster) as client:
            if options.dashboard:
                print(f"dask dashboard: {client.dashboard_link}")
            yield cls(client, options)

    def run(self, units, runner, record, failed) -> list:
        from distributed import as_completed  # optional: the dask executor's

        futures = {self.client.submit(runner, unit, pure=False, retries=RETRIES,
                                      key=f"unit-{i}-{unit_id(unit)}"): unit
                   for i, unit in enumerate(units)}
        results = []
        with _progress(units) as bar:
            for fut in as_completed(futures):
                unit = futures[fut]
                try:
                    result = fut.result()
                except Exception as err:  # retried already: record it, lose nothing
                    result = failed(unit, f"{type(err).__name__}: {err}")
                results.append(result)
                record(result)
                bar.update(len(unit))
        return results


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

    def run(self, units, runner, record, failed) -> list:
        ex = self.executor()
        limit = self.options.jobs if self.options.slurm_local else len(units)
        waiting = list(enumerate(units))
        running: dict = {}          # job -> (index, unit, attempt)
        results = []
        with _progress(units) as bar:
            while waiting or running:
                while waiting and len(running) < limit:
                    i, unit = waiting.pop(0)
                    running[ex.submit(runner, unit)] = (i, unit, 0)
                time.sleep(0.5)
                for job in [j for j in running if j.done()]:
                    i, unit, attempt = running.pop(job)
                    try:
                        result = job.result()
                    except Exception as err:  # a failed or lost job
                        if attempt < RETRIES:
                            running[ex.submit(runner, unit)] = (i, unit, attempt + 1)
                            continue
                        result = failed(unit, f"{type(err).__name__}: {err}")
                    results.append(result)
                    record(result)
                    bar.update(len(unit))
        return results
