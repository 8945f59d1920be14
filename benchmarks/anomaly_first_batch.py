"""Diagnostic: does a stray rating in the random first batch decide whether a CNN + GP
search finds the irregular galaxies?

The simulated volunteers tick "irregular" now and then on any galaxy (a base rate of
~2.4% each, ``votes.irregular_vote_probability``), so some galaxies with nothing irregular
about them (no irregular or merger class, no major disturbance, no clumps in the hidden
truth) reach a vote fraction over 0.1 and the simulated user rates them 1. This reruns the finished
run's CNN + GP searches of one experiment, repeat by repeat with the workflow's seeds and
settings, twice: with the ratings as they are (which must reproduce the workflow's runs:
the script checks the rated galaxies against the run files), and with those unexplained
ratings set to 0, the same galaxies and anomalies otherwise. If the searches that found
nothing had such a rating in their first batch and find the class without it, the
failures come from that rating, not from the representation.

Simulated survey only (it reads the hidden truth). Writes
benchmarks/results/anomaly_first_batch.json:

    .venv/bin/python benchmarks/anomaly_first_batch.py --results results/anomaly_scale \\
        --resources resources/anomaly_scale [--experiment irregular] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from anomaly_separability import truth_rows  # noqa: E402

from morphtools.anomaly.io import acquired_in_order, read_experiment, read_run, run_table  # noqa: E402
from morphtools.anomaly.methods import ActiveParams, run_method  # noqa: E402
from morphtools.anomaly.summary import run_metrics  # noqa: E402
from morphtools.simulation.votes import IRREGULAR_BASE_PROBABILITY, irregular_vote_probability  # noqa: E402


def calm_for_irregular(truth: pd.DataFrame, survey: str) -> np.ndarray:
    """Galaxies of ``survey`` with none of the traits the simulated volunteers' irregular
    votes respond to (``votes.irregular_vote_probability`` at its base rate)."""
    return irregular_vote_probability(truth, survey) == IRREGULAR_BASE_PROBABILITY


def search(galaxies: pd.DataFrame, features, ratings, params: ActiveParams, seed: int) -> tuple[dict, object]:
    """One CNN + GP search with ``ratings`` standing in for the experiment's; its Table 1
    metrics and how it went (``summary.run_metrics``), and its ``RunResult``."""
    is_anomaly = galaxies["is_anomaly"].to_numpy(bool)
    with threadpool_limits(limits=1):
        result = run_method("cnn_gp", features, ratings, params, seed, is_anomaly=is_anomaly)
    metrics = run_metrics(galaxies, run_table(galaxies["galaxy_id"], result))
    keys = ("average_precision", "accuracy_top50", "rated_anomalies", "first_anomaly_batch")
    return {k: round(metrics[k], 3) if isinstance(metrics[k], float) else metrics[k] for k in keys}, result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", default="results")
    parser.add_argument("--resources", default="resources")
    parser.add_argument("--experiment", default="irregular")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "anomaly_first_batch.json"))
    args = parser.parse_args()
    results, resources = Path(args.results), Path(args.resources)
    folder = results / "anomaly" / args.experiment
    galaxies, features = read_experiment(folder / "galaxies.csv", folder / "features.h5")
    summary = json.loads((folder / "summary.json").read_text())
    truth = truth_rows(results, resources, summary["survey"], galaxies["galaxy_id"])
    ratings = galaxies["rating"].to_numpy(int)
    is_anomaly = galaxies["is_anomaly"].to_numpy(bool)
    calm = calm_for_irregular(truth, summary["survey"])
    unexplained = calm & (ratings > 0)
    without = np.where(unexplained, 0, ratings)
    repeats = []
    for run_file in sorted((folder / "runs" / "cnn_gp").glob("repeat_*.csv"), key=lambda p: int(p.stem.split("_")[1])):
        info = json.loads(run_file.with_suffix(".json").read_text())
        params = ActiveParams(**info["params"])
        as_run, result = search(galaxies, features["cnn"], ratings, params, info["seed"])
        rated_in_run = acquired_in_order(read_run(run_file))["galaxy_id"].tolist()
        if rated_in_run != galaxies["galaxy_id"].to_numpy()[result.acquired].tolist():
            raise RuntimeError(f"{run_file}: the rerun rated other galaxies than the workflow's run did")
        first_batch = result.acquired[: params.first_batch]
        counterfactual, _ = search(galaxies, features["cnn"], without, params, info["seed"])
        repeats.append({"repeat": info["repeat"], "seed": info["seed"],
                        "unexplained_ratings_in_first_batch": int(unexplained[first_batch].sum()),
                        "anomalies_in_first_batch": int(is_anomaly[first_batch].sum()),
                        "as_run": as_run, "without_unexplained_ratings": counterfactual})
        print(repeats[-1], flush=True)
    table = pd.json_normalize(repeats)
    stray = table["unexplained_ratings_in_first_batch"] > 0
    out = {"experiment": args.experiment, "results": str(results), "galaxies": len(galaxies),
           "anomalies": int(is_anomaly.sum()),
           "unexplained_ratings": int(unexplained.sum()),
           "unexplained_share_of_calm_galaxies": round(float(unexplained.sum() / calm.sum()), 4),
           "mean": {name: {"average_precision": round(float(table[f"{name}.average_precision"].mean()), 3),
                           "accuracy_top50": round(float(table[f"{name}.accuracy_top50"].mean()), 3),
                           "runs_without_rated_anomaly": int((table[f"{name}.rated_anomalies"] == 0).sum())}
                    for name in ("as_run", "without_unexplained_ratings")},
           "runs_with_unexplained_first_batch_rating": table.loc[stray, "repeat"].tolist(),
           "repeats": repeats}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "repeats"}, indent=1))


if __name__ == "__main__":
    main()
