"""Measure the seed-to-seed spread behind the metric-drift check's "other build" bands.

    python benchmarks/regression_bands.py --kinds convergence digits

Runs each kind's subset with seeds 0, 1, 2 and, for every metric, the largest
difference between two seeds of the same case: absolute for metrics whose band is
absolute, relative (|a - b| / |a|) for the others; writes them with 1.5x that (the band
the check uses) to results/regression/bands.json. Another build (torch, CPU, GPU) ends a
seeded run as far from the reference as another seed would, so a band that wide catches
gross breakage only.
"""

from __future__ import annotations

import argparse
import itertools
import math
import tempfile
from pathlib import Path

from iwgan.engine.records import now
from iwgan.experiments import regression
from iwgan.files import write_json

OUT = Path("results") / "regression" / "bands.json"
FACTORIES = {"convergence": regression.convergence_subset, "digits": regression.digits_subset,
             "mode_coverage": regression.mode_coverage_subset}


def spread(subset_factory, seeds=(0, 1, 2)) -> dict:
    subset = subset_factory(seeds=seeds)
    with tempfile.TemporaryDirectory() as tmp:
        subset.run(Path(tmp), 1)
        table = regression.collect(subset, Path(tmp))
    cfg_of = {c.run_id: c for c in subset.configs}
    table["cell"] = [cfg_of[c].cell_key() for c in table.case]
    out = {}
    for metric, spec in subset.metrics.items():
        relative = spec.other.rel > 0
        worst, where = 0.0, None
        for _, g in table[table.metric == metric].groupby("cell"):
            for a, b in itertools.permutations(g.value, 2):
                if math.isnan(a) or math.isnan(b):
                    continue
                d = abs(a - b) / abs(a) if relative and a else abs(a - b)
                if d > worst:
                    worst, where = d, g.case.iloc[0]
        out[metric] = {"max_seed_difference": worst, "relative": relative,
                       "band": 1.5 * worst, "case": where}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kinds", nargs="+", choices=list(FACTORIES), default=["convergence",
                                                                           "digits"])
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    record = {"date": now(), "seeds": [0, 1, 2]}
    for kind in args.kinds:
        record[kind] = spread(FACTORIES[kind])
        for metric, v in record[kind].items():
            print(f"{kind} {metric}: max seed difference {v['max_seed_difference']:.4g}"
                  f"{' (relative)' if v['relative'] else ''}, band {v['band']:.4g}")
    write_json(args.out, record)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
