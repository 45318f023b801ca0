"""The one grid loop (iwgan.engine.grid.drive) on every executor: a unit that fails is run
once more, then recorded as failed; an interrupt starts nothing more, stops the units in
flight at their next iteration, keeps what came back, lets a unit past training end,
and raises GridInterrupted saying so; a second interrupt stops at once."""

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from iwgan.engine.executors import DaskExecutor, ExecutorOptions, SlurmExecutor
from iwgan.engine.grid import (
    GridInterrupted,
    InProcess,
    Processes,
    drive,
    ignoring_sigint,
    run_grid,
)

ROOT = Path(__file__).resolve().parents[2]
MARKS = "IWGAN_TEST_MARKS"
STEP = 0.02   # seconds an iteration of the test runners takes


@dataclass(frozen=True)
class Cfg:
    run_id: str
    iterations: int


def units(n: int, iterations: int = 5) -> list[tuple]:
    return [(Cfg(f"run{i}", iterations),) for i in range(n)]


def mark(unit, what: str) -> None:
    (Path(os.environ[MARKS]) / f"{unit[0].run_id}.{what}").touch()


def marked(tmp_path: Path, what: str) -> list[str]:
    return sorted(p.stem for p in tmp_path.glob(f"*.{what}"))


def trains(unit, progress=None):
    """A unit that trains ``iterations`` steps of STEP seconds."""
    mark(unit, "started")
    for _ in range(unit[0].iterations):
        time.sleep(STEP)
        progress(1)
    mark(unit, "ended")
    return [unit[0].run_id]


def evaluates_long(unit, progress=None):
    """A unit that trains 3 steps, then evaluates for 1.5 s (no iterations)."""
    mark(unit, "started")
    for _ in range(3):
        time.sleep(STEP)
        progress(1)
    time.sleep(1.5)
    mark(unit, "ended")
    return [unit[0].run_id]


def fails_once(unit, progress=None):
    attempt = Path(os.environ[MARKS]) / f"{unit[0].run_id}.attempt"
    if not attempt.exists():
        attempt.touch()
        raise RuntimeError("the first attempt fails")
    return [unit[0].run_id]


def always_fails(unit, progress=None):
    mark(unit, "started")
    raise RuntimeError("this unit always fails\nline two of its message")


def failed(unit, error):
    return [f"failed: {error}"]


def interrupt_at_first(recorded: list):
    """A record callback that keeps what it gets and sends SIGINT to this process on the
    first result, as a user's Ctrl-C while the grid writes its first row."""
    def record(result):
        recorded.append(result)
        if len(recorded) == 1:
            os.kill(os.getpid(), signal.SIGINT)
    return record


@pytest.fixture
def marks(tmp_path, monkeypatch):
    monkeypatch.setenv(MARKS, str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [
        str(ROOT), os.environ.get("PYTHONPATH")])))   # workers import this module
    monkeypatch.chdir(ROOT)
    return tmp_path


def test_a_failing_unit_is_run_once_more_then_recorded_as_failed(marks):
    recorded = []
    run_grid(units(2), fails_once, recorded.append, jobs=1, failed=failed)
    assert recorded == [["run0"], ["run1"]]
    recorded.clear()
    run_grid(units(2), always_fails, recorded.append, jobs=1, failed=failed)
    # one line: the error's type, its first and last line
    assert recorded == [["failed: RuntimeError: this unit always fails ... line two of its "
                         "message"]] * 2
    with pytest.raises(RuntimeError, match="always fails"):   # without failed(): raised
        run_grid(units(1), always_fails, recorded.append, jobs=1)


def test_an_interrupt_in_process_keeps_what_finished_and_starts_nothing_more(marks):
    before = signal.getsignal(signal.SIGINT)
    recorded = []
    with pytest.raises(GridInterrupted) as err:
        drive(units(4), InProcess(trains), interrupt_at_first(recorded), failed)
    assert recorded == [["run0"]]
    assert marked(marks, "started") == ["run0"]
    e = err.value
    assert (e.recorded, e.stopped, e.not_started, e.killed) == (1, 0, 3, 0)
    assert e.exit_code == 130 and not e.forced
    assert e.summary().startswith("SIGINT after ") and "1 run(s) recorded" in e.summary()
    # restored to the handler it found (in a fresh process Python's default_int_handler;
    # in one fresh-clone suite run an earlier test had left SIGINT ignored, a leak still
    # to be found)
    assert signal.getsignal(signal.SIGINT) is before


def kill_later(*delays: float, signum=signal.SIGINT) -> threading.Thread:
    def send():
        for delay in delays:
            time.sleep(delay)
            os.kill(os.getpid(), signum)
    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_a_unit_past_training_ends_and_is_recorded_one_in_training_stops(marks):
    # SIGTERM 0.5 s in: unit 0 is evaluating (no more iterations), so it ends and is
    # recorded; nothing else starts.
    recorded = []
    kill_later(0.5, signum=signal.SIGTERM)
    with pytest.raises(GridInterrupted) as err:
        drive(units(3), InProcess(evaluates_long), recorded.append, failed)
    assert recorded == [["run0"]] and marked(marks, "started") == ["run0"]
    assert err.value.exit_code == 143
    # SIGINT while unit 0 trains: it stops at its next iteration, unrecorded.
    for p in [*marks.glob("*.started"), *marks.glob("*.ended")]:
        p.unlink()
    recorded.clear()
    kill_later(0.05)
    with pytest.raises(GridInterrupted) as err:
        drive(units(3, iterations=200), InProcess(trains), recorded.append, failed)
    assert recorded == [] and marked(marks, "ended") == []
    assert (err.value.stopped, err.value.not_started) == (1, 2)


def test_a_second_interrupt_stops_at_once(marks):
    recorded = []
    start = time.monotonic()
    kill_later(0.3, 0.3)   # the second while unit 0 is still evaluating (1.5 s)
    with pytest.raises(GridInterrupted) as err:
        drive(units(2), InProcess(evaluates_long), recorded.append, failed)
    assert time.monotonic() - start < 1.45   # not the unit's 1.56 s
    assert err.value.forced and recorded == [] and marked(marks, "ended") == []


@pytest.mark.slow
def test_worker_processes_retry_then_record_and_stop_on_an_interrupt(marks):
    recorded = []
    run_grid(units(2), fails_once, recorded.append, jobs=2, failed=failed)
    assert sorted(recorded) == [["run0"], ["run1"]]
    recorded.clear()
    start = time.monotonic()
    with pytest.raises(GridInterrupted) as err:
        drive(units(6, iterations=150), Processes(trains, 2), interrupt_at_first(recorded),
              failed)
    stopping = time.monotonic()
    e = err.value
    assert len(recorded) == e.recorded >= 1
    # what was recorded is what ended; what was not recorded never ran to its end
    assert marked(marks, "ended") == sorted(r[0] for r in recorded)
    assert e.recorded + e.stopped + e.not_started + e.killed == 6 and e.killed == 0
    assert stopping - start < 60


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["dask", "slurm"])
def test_dask_and_slurm_keep_what_came_back_and_cancel_the_rest(marks, executor):
    options = ExecutorOptions(kind=executor, jobs=2, slurm_local=True,
                              folder=marks / "submitit")
    recorded = []

    def run(runner, units_, record):
        if executor == "dask":
            with DaskExecutor.connect(options) as ex:
                return ex.run(units_, runner, record, failed)
        return SlurmExecutor.check(options).run(units_, runner, record, failed)

    run(fails_once, units(2), recorded.append)       # the loop's retry on this engine
    assert sorted(recorded) == [["run0"], ["run1"]]
    recorded.clear()
    for p in marks.iterdir():
        if p.is_file():
            p.unlink()
    with pytest.raises(GridInterrupted) as err:
        run(trains, units(6, iterations=250), interrupt_at_first(recorded))
    e = err.value
    assert len(recorded) == e.recorded >= 1
    time.sleep(2)   # a unit the grid let go would go on and end now
    assert marked(marks, "ended") == sorted(r[0] for r in recorded)
    assert e.recorded + e.stopped + e.not_started + e.killed == 6
    assert not list((marks / "submitit").glob(".stop-*"))


def test_an_interrupt_raised_as_sigint_becomes_ignored_still_gets_its_handler_back(monkeypatch):
    """A second interrupt that arrived just before ignoring_sigint set SIG_IGN is handled
    as that call returns, and the grid's handler raises: the handler found must come back,
    or every later Ctrl-C of the process is ignored."""
    real = signal.signal

    def set_then_interrupted(signum, handler):
        old = real(signum, handler)
        if handler is signal.SIG_IGN:
            raise KeyboardInterrupt   # the pending handler, run as the call returns
        return old

    before = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(signal, "signal", set_then_interrupted)
    with pytest.raises(KeyboardInterrupt), ignoring_sigint():
        pass
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGINT) is before
