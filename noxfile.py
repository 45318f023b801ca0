"""Sessions: `nox -s tests`, `nox -s lint`, `nox -s mode_coverage`, `nox -s convergence`,
`nox -s reports`, `nox -s regression`.

Every session installs the suite with constraints.txt, which pins torch==2.13.0 (the CPU
wheel) and torchvision==0.28.0, so that no install pulls a newer CUDA stack. Arguments
after `--` go to the command (e.g. `nox -s mode_coverage -- --methods iwgan --seeds 1`).
"""

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

CONSTRAINTS = ("-c", "constraints.txt")


def install(session, extras=""):
    # torch first, alone, so pip takes the pinned wheel before resolving anything else.
    session.install(*CONSTRAINTS, "torch")
    session.install(*CONSTRAINTS, "-e", f".[{extras}]" if extras else ".")


@nox.session
def tests(session):
    """The test suite (closed-form checks, one step per method, tiny end-to-end runs)."""
    install(session, "test")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session):
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session
def mode_coverage(session):
    """Train the method x mixture x preset x seed grid, score it, rebuild the report."""
    install(session)
    session.run("python", "-m", "iwgan", "mode-coverage", *session.posargs)


@nox.session
def convergence(session):
    """Duality gap vs exact W1 over training, latent space, quality score; then rebuild
    reports/convergence.md (quick profile on CPU: at most 30 min on 2 cores)."""
    install(session)
    session.run("python", "-m", "iwgan", "convergence", *session.posargs)


@nox.session
def reports(session):
    """Rebuild every report under reports/ from results/ alone."""
    install(session)
    session.run("python", "-m", "iwgan", "reports", *session.posargs)


@nox.session
def regression(session):
    """Metric-drift check: re-run a seeded subset of every experiment kind and compare
    with results/regression/reference.csv (about a minute); fails on any drift.
    `nox -s regression -- --update` rewrites the references (docs/reproducibility.md)."""
    install(session)
    session.run("python", "-m", "iwgan", "regression", *session.posargs)
