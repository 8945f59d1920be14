"""Benchmark: the anomaly experiments' costs.

- One acquisition step of CNN + GP as the paper's responsive loop needs it: refit the GP
  (rational quadratic + white kernel, hyperparameters by maximum likelihood) on the rated
  set (190 -> 200 ratings), then expected improvement over an unrated pool of 60,000 x 40
  (the paper's GZ2 size and PCA-40) and the top 10. Median over ``--steps`` steps. The
  paper's anchor: "a few seconds" per step. Measured twice on the same data: with the
  project's interest model (``make_gp``: ``InterestGP``, its own likelihood for the refit
  and a blocked posterior) and, as the baseline in the same run, scikit-learn's own
  ``GaussianProcessRegressor`` (fit and predict); the ratios are recorded.
- The experiment grid on the demo: the wall time of every ``anomaly_run`` job of a finished
  run (Snakemake's per-job benchmark files in ``results/benchmarks/anomaly_run/``), summed
  (one core's worth) and per method.

- With ``--experiment DIR`` (a finished ``anomaly/{experiment}`` folder): whole CNN + GP runs
  (200 ratings) on that experiment's galaxies, alternating the project's interest model and
  scikit-learn's in one process, so that the ratio is free of the machine's drift between
  grid runs.

Also records the machine's load average, since a shared machine inflates both numbers.
Writes benchmarks/results/anomaly.json:

    .venv/bin/python benchmarks/bench_anomaly.py [--pool 60000 --dims 40 --steps 5 --results results]
        [--experiment results/anomaly/merger --runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from morphtools.anomaly.methods import make_gp as interest_model


def acquisition_steps(pool: int, dims: int, steps: int, rated: int = 200, batch: int = 10, seed: int = 0,
                      make_model=None):
    import warnings

    from modAL.acquisition import max_EI
    from modAL.models import BayesianOptimizer

    from morphtools.anomaly.methods import make_gp

    make_model = make_model or make_gp
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(pool + rated, dims))
    centre = np.zeros(dims)
    centre[:3] = 2.0
    interest = 5 * np.exp(-np.sum((X[:, :6] - centre[:6]) ** 2, axis=1) / 10)
    y = np.round(interest + rng.normal(0, 0.3, len(X))).clip(0, 5)
    times, fits, queries = [], [], []
    for step in range(steps):
        known = rng.choice(len(X), rated - batch, replace=False)
        unknown = np.setdiff1d(np.arange(len(X)), known)[:pool]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = BayesianOptimizer(make_model(step), query_strategy=partial(max_EI, tradeoff=0.5),
                                    X_training=X[known[:-batch]], y_training=y[known[:-batch]])
            t0 = time.perf_counter()
            opt.teach(X[known[-batch:]], y[known[-batch:]])  # the refit on the rated set
            t1 = time.perf_counter()
            opt.query(X[unknown], n_instances=batch)  # EI over the pool, top 10
            t2 = time.perf_counter()
        fits.append(t1 - t0)
        queries.append(t2 - t1)
        times.append(t2 - t0)
    return {"median_step_s": float(np.median(times)), "median_refit_s": float(np.median(fits)),
            "median_ei_over_pool_s": float(np.median(queries)), "steps": steps, "pool": pool, "dims": dims,
            "rated_after_step": rated}


def scikit_learn_gp(seed: int, normalize_y: bool = False):
    """The baseline: the interest model's settings in scikit-learn's GaussianProcessRegressor itself."""
    from sklearn.gaussian_process import GaussianProcessRegressor

    # bound at import: whole_runs swaps methods.make_gp for this function
    return GaussianProcessRegressor(**interest_model(seed, normalize_y).get_params(deep=False))


def whole_runs(experiment: Path, runs: int, seed: int = 0):
    """Median seconds of a whole CNN + GP run with each interest model, alternated."""
    from morphtools.anomaly import methods
    from morphtools.anomaly.io import read_experiment

    galaxies, features = read_experiment(experiment / "galaxies.csv", experiment / "features.h5")
    ratings = galaxies["rating"].to_numpy()
    models = {"interest_gp": methods.make_gp, "scikit_learn": scikit_learn_gp}
    seconds = {name: [] for name in models}
    acquired = {}
    try:
        for run in range(runs):
            for name, make_model in models.items():
                methods.make_gp = make_model
                start = time.perf_counter()
                result = methods.run_method("cnn_gp", features["cnn"], ratings, methods.ActiveParams(), seed + run,
                                            is_anomaly=galaxies["is_anomaly"].to_numpy(bool))
                seconds[name].append(time.perf_counter() - start)
                acquired.setdefault(run, []).append(result.acquired)
    finally:
        methods.make_gp = models["interest_gp"]
    same = all(np.array_equal(*pair) for pair in acquired.values())
    medians = {name: round(float(np.median(values)), 3) for name, values in seconds.items()}
    return {"experiment": str(experiment), "galaxies": len(galaxies), "runs": runs,
            "median_run_s": medians, "speedup": round(medians["scikit_learn"] / medians["interest_gp"], 2),
            "same_galaxies_acquired": same}


def grid_times(results: Path):
    files = sorted((results / "benchmarks" / "anomaly_run").glob("*.tsv"))
    if not files:
        return None
    rows = []
    for f in files:
        match = re.match(r"^(.+)_(cnn_gp|ellipse_gp|baseline|random)_(\d+)$", f.stem)
        if match is None:
            continue
        seconds = float(pd.read_csv(f, sep="\t")["s"].iloc[0])
        rows.append({"experiment": match[1], "method": match[2], "repeat": int(match[3]), "seconds": seconds})
    table = pd.DataFrame(rows)
    return {"jobs": len(table), "sum_job_seconds": float(table["seconds"].sum()),
            "median_job_seconds_by_method": table.groupby("method")["seconds"].median().round(2).to_dict(),
            "sum_job_seconds_by_method": table.groupby("method")["seconds"].sum().round(1).to_dict(),
            "repeats": int(table["repeat"].nunique())}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", type=int, default=60000)
    parser.add_argument("--dims", type=int, default=40)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (the run jobs use 1)")
    parser.add_argument("--results", default="results")
    parser.add_argument("--experiment", help="a finished anomaly/{experiment} folder to time whole runs on")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/anomaly.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    out = {"machine": {"processor": platform.machine(), "python": platform.python_version(),
                       "cpus": os.cpu_count(), "load_average_1min_before": round(load_before[0], 2)},
           "blas_threads": args.threads}
    with threadpool_limits(limits=args.threads):
        out["acquisition_step"] = acquisition_steps(args.pool, args.dims, args.steps)
        baseline = acquisition_steps(args.pool, args.dims, args.steps, make_model=scikit_learn_gp)
        if args.experiment:
            out["whole_cnn_gp_run"] = whole_runs(Path(args.experiment), args.runs)
    out["acquisition_step_scikit_learn"] = baseline
    out["acquisition_step_speedup"] = {
        "step": round(baseline["median_step_s"] / out["acquisition_step"]["median_step_s"], 2),
        "refit": round(baseline["median_refit_s"] / out["acquisition_step"]["median_refit_s"], 2),
        "ei_over_pool": round(baseline["median_ei_over_pool_s"] / out["acquisition_step"]["median_ei_over_pool_s"], 2)}
    out["grid"] = grid_times(Path(args.results))
    out["machine"]["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
