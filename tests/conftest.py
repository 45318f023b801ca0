"""What every test must leave as it found it."""

import signal

import pytest
import torch


@pytest.fixture(autouse=True)
def signal_handlers_restored(request):
    """A grid takes SIGINT and SIGTERM while it runs and ignores SIGINT while it starts
    workers; after any test both must be back as they were, or a later Ctrl-C (or test)
    meets an ignored or stale handler."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    after = {s: signal.getsignal(s) for s in before}
    assert after == before, f"{request.node.nodeid} left the signal handlers changed: {after}"


@pytest.fixture
def float64():
    """float64 as the default dtype for one test."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)
