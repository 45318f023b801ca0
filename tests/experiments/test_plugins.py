"""A method from a package outside the suite, installed by pip (into a folder on the path:
the installed package's entry point names it ``wae_gan``) or given by its module path,
runs through the public commands on every executor and appears in the rebuilt reports,
after the built-ins, without a file of the suite changed."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iwgan.cli import main
from iwgan.core.methods import METHOD_NAMES, get_method
from iwgan.engine.records import read_image_results, read_results

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "wae_gan"
TINY = ["--profile", "tiny", "--mixtures", "ring", "--presets", "paper", "--seeds", "1",
        "--no-report"]
EXECUTORS = {"local": ["--jobs", "1"], "dask": ["--executor", "dask", "--jobs", "1"],
             "slurm": ["--executor", "slurm", "--slurm-local", "--jobs", "1"]}


def table(text: str, header: str) -> list[list[str]]:
    """The cells of the first Markdown table whose header starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The example, pip-installed (offline: no build isolation, no dependencies) into a
    folder that will be on the path."""
    source, target = tmp_path_factory.mktemp("src") / "wae_gan", tmp_path_factory.mktemp("site")
    shutil.copytree(EXAMPLE, source)   # pip builds in the source tree: not in the suite's
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--disable-pip-version-check", "--target",
                    str(target), str(source)], check=True, capture_output=True)
    assert (target / "iwgan_wae" / "wae_gan.py").exists()
    return target


@pytest.fixture
def on_path(installed, monkeypatch):
    """The installed package on this process's path and on its workers' (PYTHONPATH)."""
    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(installed), str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.chdir(ROOT)
    get_method.cache_clear()
    yield installed
    get_method.cache_clear()


def test_the_installed_package_names_its_method_and_the_path_finds_it_too(on_path):
    assert get_method("wae_gan").origin == "entry point iwgan_bench.methods: iwgan_wae.wae_gan"
    assert get_method("iwgan_wae.wae_gan").module is get_method("wae_gan").module


@pytest.mark.parametrize("executor", sorted(EXECUTORS))
def test_a_plugged_in_method_runs_every_experiment_and_is_in_every_report(on_path, tmp_path,
                                                                          executor):
    """Mode coverage by its module path, convergence and images by its installed name."""
    out, run = tmp_path / "out", EXECUTORS[executor]
    assert main(["mode-coverage", "--methods", "iwgan", "iwgan_wae.wae_gan", *TINY, *run,
                 "--out", str(out)]) == 0
    assert main(["convergence", "--methods", "wae_gan", *TINY, *run, "--eval-every", "2",
                 "--gap-steps", "1", "--w1-samples", "100", "--out", str(out)]) == 0
    assert main(["images", "--dataset", "digits", "--profile", "smoke", "--methods",
                 "wae_gan", "--iterations", "2", "--no-report", *run, "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    results = out / "results"
    mc = read_results(results / "mode_coverage.csv").set_index("method")
    assert set(mc.index) == {"iwgan", "iwgan_wae.wae_gan"}
    assert mc.loc["iwgan_wae.wae_gan", "status"] == "finished"
    assert mc.loc["iwgan_wae.wae_gan", "run_id"] == "tiny-paper-ring-iwgan_wae.wae_gan-seed0"
    conv = read_results(results / "convergence.csv")
    assert list(conv.method) == ["wae_gan"] and list(conv.status) == ["finished"]
    assert list(conv.gap_kind) == ["eq4"] and conv.latent_mmd.notna().all()
    img = read_image_results(results / "images.csv")
    assert list(img.method) == ["wae_gan"] and img.fd.notna().all()
    assert main(["reports", "--out", str(out)]) == 0
    reports = out / "reports"
    coverage = table((reports / "mode_coverage.md").read_text(), "| mixture | method |")
    assert [row[1] for row in coverage] == ["iwgan", "iwgan_wae.wae_gan"]
    convergence = (reports / "convergence.md").read_text()
    assert "| ring | wae_gan |" in convergence
    assert "![Latent pairs, wae_gan]" in convergence      # an encoder, read from its rows
    text = (reports / "digits.md").read_text()
    digits = table(text, "| method | paper FID |")
    header = next(line for line in text.splitlines() if line.startswith("| method | paper FID"))
    seeds = [cell.strip() for cell in header.strip("|").split("|")].index("seeds")
    assert [row[0] for row in digits] == [*METHOD_NAMES, "wae_gan"]
    assert "not run" in digits[0][2] and digits[-1][seeds] == "1"   # its one seed
