"""Diagnostic: is the GP + expected-improvement loop sound, whatever the representation?

Runs the CNN + GP method (same code, same settings) on "oracle" features built from the
simulated survey's hidden truth (the morphology parameters the renderer drew: bulge, arms,
bar, clumps, ring, tidal features, companion, dust, neighbour, size, brightness), padded
with Gaussian noise to 40 dimensions, for the anomaly experiments of a finished run.
If the loop finds the anomalies here but not with the CNN features, the representation is
what limits CNN + GP. Simulated survey only. Writes benchmarks/results/anomaly_oracle.json:

    .venv/bin/python benchmarks/anomaly_oracle.py [--results results --resources resources --repeats 3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from anomaly_separability import neighbour_anomaly_share, truth_rows  # beside this file
from threadpoolctl import threadpool_limits

from morphtools.anomaly.io import read_experiment
from morphtools.anomaly.methods import ActiveParams, run_method
from morphtools.anomaly.metrics import mean_and_error, ranking_metrics

TRUTH_COLUMNS = ["bulge_to_total", "axis_ratio", "cos_inclination", "arm_strength", "bar_strength", "clumpiness",
                 "ring_strength", "tidal_strength", "companion_flux_ratio", "companion_separation", "merger_stage",
                 "dust_opacity", "neighbour_flux_ratio", "mag_r", "half_light_radius"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", default="results")
    parser.add_argument("--resources", default="resources")
    parser.add_argument("--experiments", nargs="+", default=["odd", "merger", "ring", "irregular"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dims", type=int, default=40)
    parser.add_argument("--out", default="benchmarks/results/anomaly_oracle.json")
    args = parser.parse_args()
    results = Path(args.results)
    resources = Path(args.resources)
    rng = np.random.default_rng(0)
    out = {"features": TRUTH_COLUMNS, "dims": args.dims, "repeats": args.repeats, "experiments": {}}
    for name in args.experiments:
        galaxies, _ = read_experiment(results / f"anomaly/{name}/galaxies.csv", results / f"anomaly/{name}/features.h5")
        survey = json.loads((results / f"anomaly/{name}/summary.json").read_text())["survey"]
        oracle = truth_rows(results, resources, survey, galaxies["galaxy_id"])[TRUTH_COLUMNS].to_numpy(float)
        X = np.hstack([oracle, rng.normal(size=(len(galaxies), args.dims - oracle.shape[1]))])
        runs = []
        with threadpool_limits(limits=1):
            for repeat in range(args.repeats):
                result = run_method("cnn_gp", X, galaxies["rating"].to_numpy(), ActiveParams(), seed=repeat,
                                    is_anomaly=galaxies["is_anomaly"].to_numpy(bool))
                runs.append(ranking_metrics(galaxies["is_anomaly"].to_numpy(bool), result.scores))
        table = pd.DataFrame(runs)
        out["experiments"][name] = {
            k: mean_and_error(table[k])[:2] for k in ("average_precision", "accuracy_top50", "accuracy_top200")
        } | {"best_top50": runs[0]["max_accuracy_top50"], "best_top200": runs[0]["max_accuracy_top200"],
             "n_galaxies": runs[0]["n_galaxies"], "n_anomalies": runs[0]["n_anomalies"]
             } | neighbour_anomaly_share(X, galaxies["is_anomaly"].to_numpy(bool))
        print(name, out["experiments"][name])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
