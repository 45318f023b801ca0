"""Reports rebuilt from results/ alone."""

from pathlib import Path

from iwgan.reporting import convergence, images, mode_coverage, scorecard, throughput


def build_all(results: Path, reports: Path) -> list[Path]:
    """Rebuild every report whose results exist, then the scorecard (reports/README.md)."""
    built = []
    if (Path(results) / "mode_coverage.csv").exists():
        built.append(mode_coverage.build_report(results, reports))
    if (Path(results) / "convergence.csv").exists():
        built.append(convergence.build_report(results, reports))
    if (Path(results) / "images.csv").exists():
        built.extend(images.build_reports(results, reports))
    if any((Path(results) / "throughput").glob("*.json")):
        built.append(throughput.build_report(results, reports))
    if not built:
        raise ValueError(f"{results}: no results to report on; run an experiment first "
                         "(e.g. `nox -s mode_coverage`)")
    built.append(scorecard.build_report(results, reports))
    return built
