"""Shared fixtures of the throughput benchmarks (pytest-benchmark).

Not collected by ``nox -s tests`` (pyproject's testpaths is ["tests"]); run by
``nox -s throughput`` (``python -m iwgan throughput``), or directly:

    pytest benchmarks/ -o addopts= --benchmark-enable

Every benchmark records, in its extra_info, the 1-minute/5/15 load averages and the CPU
count it ran under and the peak memory (see iwgan.experiments.throughput.peak_memory); a benchmark
that cannot run here is skipped with its reason, which the runner records instead of a
number (THROUGHPUT_SKIPS). With THROUGHPUT_PARTIAL set, every benchmark and skip is also
appended to that file (one JSON object a line) the moment it finishes, so that a run
stopped at a time limit keeps what finished (iwgan.experiments.throughput.run_benchmarks).
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from iwgan.experiments.throughput import peak_memory, peak_memory_start

_SKIPS: list[dict] = []


def devices() -> list[str]:
    asked = os.environ.get("THROUGHPUT_DEVICE")
    if asked:
        return [asked]
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def fast_path() -> tuple[str, ...]:
    text = os.environ.get("THROUGHPUT_FAST_PATH")
    if text is None:
        return ("bf16", "channels_last", "compile", "cudagraphs")
    return tuple(o for o in text.split(",") if o)


@pytest.fixture(params=devices())
def device(request):
    return request.param


@pytest.fixture(autouse=True)
def _conditions(request):
    """Load average and CPU count before the benchmark, peak memory after it."""
    dev = request.getfixturevalue("device") if "device" in request.fixturenames else "cpu"
    torch.set_num_threads(os.cpu_count() or 1)  # a benchmark may set fewer; reset
    # Requested here so that it is torn down after this fixture.
    bench = request.getfixturevalue("benchmark") if "benchmark" in request.fixturenames else None
    peak_memory_start(dev)
    before = os.getloadavg()
    yield
    if bench is not None:
        mib, kind = peak_memory(dev)
        bench.extra_info.setdefault("threads", torch.get_num_threads())
        bench.extra_info.update(loadavg_before=[round(v, 2) for v in before],
                                loadavg_after=[round(v, 2) for v in os.getloadavg()],
                                cpu_count=os.cpu_count(), device=dev,
                                peak_memory_mib=round(mib, 1), memory_kind=kind)
        if bench.stats:   # it ran (a skipped benchmark has no stats)
            entry = bench.stats.as_dict(include_data=False)
            _append_partial({"kind": "benchmark", **{k: entry[k] for k in (
                "name", "group", "params", "stats", "extra_info")}})


def _append_partial(entry: dict) -> None:
    path = os.environ.get("THROUGHPUT_PARTIAL")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(entry, default=str) + "\n")


def pytest_runtest_logreport(report):
    if report.skipped and report.when in ("setup", "call"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        name = report.nodeid.split("::")[-1]
        _SKIPS.append({"name": name, "reason": reason.removeprefix("Skipped: "),
                       "group": report.nodeid.split("::")[0].split("/")[-1]})
        _append_partial({"kind": "skip", **_SKIPS[-1]})


def pytest_sessionfinish(session):
    path = os.environ.get("THROUGHPUT_SKIPS")
    if path:
        with open(path, "w") as f:
            json.dump(_SKIPS, f)
