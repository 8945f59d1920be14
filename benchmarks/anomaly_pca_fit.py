"""Diagnostic: does it matter which galaxies the CNN + GP's PCA-40 is fitted on?

The workflow fits one incremental PCA per survey (``rule pca``, ``results/{survey}/pca.h5``)
and every anomaly experiment takes its galaxies' rows of that projection. The paper's
experiment code (``get_embed`` in ``anomaly/comparison_from_scratch/shared.py`` of
mwalmsley/morphology-tools, read through the code search) fits an ``IncrementalPCA(40)``
on the experiment's own galaxies instead: after the vote-count cut, the ellipse-failure
drop and, for the ring and irregular experiments, the featured / face-on filter. Where the
filter keeps under half of the survey, the two fits differ: the survey's components also
spend variance on the smooth, edge-on and artefact galaxies the filter removed.

For every experiment of a finished run this reruns its CNN + GP searches, repeat by repeat
with the run's seeds and settings, on a PCA fitted to the experiment's galaxies (the
1280-d representation read from ``results/{survey}/representation.h5``), and sets their
Table 1 metrics beside the run's own. Also the share of anomalies among each anomaly's 10
nearest neighbours in both standardised feature sets (``anomaly_separability``).

Writes benchmarks/results/anomaly_pca_fit.json:

    .venv/bin/python benchmarks/anomaly_pca_fit.py --results results/anomaly_scale \\
        [--experiment ring-featured-face-on ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import IncrementalPCA
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from anomaly_separability import neighbour_anomaly_share  # noqa: E402

from morphtools.anomaly.io import read_experiment, read_run, run_table  # noqa: E402
from morphtools.anomaly.methods import ActiveParams, run_method  # noqa: E402
from morphtools.anomaly.summary import run_metrics  # noqa: E402
from morphtools.embedding import read_embeddings  # noqa: E402

KEYS = ("average_precision", "accuracy_top50", "accuracy_top200", "rated_anomalies")


def experiment_pca(representation: np.ndarray, n_components: int) -> np.ndarray:
    """(n, n_components) projection of the experiment's (n, 1280) representation on a PCA
    fitted to those galaxies alone, as the paper's code does."""
    return IncrementalPCA(n_components=n_components).fit_transform(representation.astype(np.float64))


def rows_of(ids, wanted) -> np.ndarray:
    """Positions of ``wanted`` galaxy ids in ``ids``; an id missing from ``ids`` is an error."""
    position = pd.Series(np.arange(len(ids)), index=pd.Index(ids, dtype=str))
    missing = pd.Index(wanted, dtype=str).difference(position.index)
    if len(missing):
        raise KeyError(f"{len(missing)} experiment galaxies are not in the representation, e.g. {missing[0]}")
    return position.loc[list(wanted)].to_numpy()


def compare_experiment(folder: Path, representations: dict) -> dict:
    """``representations``: survey -> its ``read_embeddings`` (``galaxy_id``, ``representation``)."""
    galaxies, features = read_experiment(folder / "galaxies.csv", folder / "features.h5")
    summary = json.loads((folder / "summary.json").read_text())
    emb = representations[summary["survey"]]
    ids = galaxies["galaxy_id"].astype(str).to_numpy()
    representation = emb["representation"][rows_of(emb["galaxy_id"], ids)]
    survey_fit = features["cnn"]
    own_fit = experiment_pca(representation, survey_fit.shape[1])
    is_anomaly = galaxies["is_anomaly"].to_numpy(bool)
    ratings = galaxies["rating"].to_numpy(int)
    repeats = []
    for run_file in sorted((folder / "runs" / "cnn_gp").glob("repeat_*.csv"), key=lambda p: int(p.stem.split("_")[1])):
        info = json.loads(run_file.with_suffix(".json").read_text())
        as_run = run_metrics(galaxies, read_run(run_file))
        with threadpool_limits(limits=1):
            result = run_method("cnn_gp", own_fit, ratings, ActiveParams(**info["params"]), info["seed"],
                                is_anomaly=is_anomaly)
        refit = run_metrics(galaxies, run_table(galaxies["galaxy_id"], result))
        repeats.append({"repeat": info["repeat"], "seed": info["seed"],
                        "survey_pca": {k: round(float(as_run[k]), 3) for k in KEYS},
                        "experiment_pca": {k: round(float(refit[k]), 3) for k in KEYS}})
        print(folder.name, repeats[-1], flush=True)
    table = pd.json_normalize(repeats)
    return {"survey": summary["survey"], "galaxies": len(galaxies), "anomalies": int(is_anomaly.sum()),
            "pca_components": int(survey_fit.shape[1]),
            "neighbour_anomaly_share": {"survey_pca": neighbour_anomaly_share(survey_fit, is_anomaly),
                                        "experiment_pca": neighbour_anomaly_share(own_fit, is_anomaly)},
            "mean": {fit: {k: round(float(table[f"{fit}.{k}"].mean()), 3) for k in KEYS}
                     for fit in ("survey_pca", "experiment_pca")},
            "repeats": repeats}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", default="results")
    parser.add_argument("--experiment", nargs="*", help="default: every experiment with CNN + GP runs")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "anomaly_pca_fit.json"))
    args = parser.parse_args()
    results = Path(args.results)
    names = args.experiment or sorted(p.parent.parent.name for p in (results / "anomaly").glob("*/runs/cnn_gp"))
    if not names:
        raise SystemExit(f"no CNN + GP runs under {results / 'anomaly'}")
    surveys = {json.loads((results / "anomaly" / name / "summary.json").read_text())["survey"] for name in names}
    # one read of each survey's (n, 1280) representation, shared by its experiments
    representations = {survey: read_embeddings(results / survey / "representation.h5", ("galaxy_id", "representation"))
                       for survey in surveys}
    out = {"results": str(results),
           "experiments": {name: compare_experiment(results / "anomaly" / name, representations) for name in names}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({name: {k: v for k, v in e.items() if k != "repeats"} for name, e in out["experiments"].items()},
                     indent=1))


if __name__ == "__main__":
    main()
