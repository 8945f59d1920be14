"""Diagnostic: how well does each feature set separate each experiment's anomalies at all?

For every anomaly experiment of a finished run (``results/anomaly/<experiment>/``), a
cross-validated, class-balanced logistic-regression probe on the standardised features the
methods use (CNN: PCA-40 of the representation; ellipse: the 24 Astronomaly features)
predicts the anomaly label; its ROC AUC and average precision say how separable the
anomalies are in that space, independent of the active-learning loop (``anomaly_oracle.py``
asks the converse: does the loop work when the features are good?). Also, for each survey,
the ROC AUC with which the pretrained model's own predicted ``merging_merger`` fraction
picks out the galaxies the simulation drew as mergers: whether the model recognises that
survey's mergers at all (the GZ2-like survey is embedded with the DECaLS-trained model).
And the neighbourhoods the GP's kernel sees: the share of anomalies among each anomaly's
10 nearest neighbours in the standardised features, against the prevalence. Expected
improvement can only walk from one rated anomaly to the next where that share is high.
And where the CNN + GP runs looked first: the simulated classes of the galaxies rated in
batches 1-5 (the first 50 chosen by expected improvement), split between the runs that
rated no anomaly in all their 200 ratings and the rest. A run whose interest model stays
flat (ratings that look like noise) is steered to the extremes of the feature space; this
says which galaxies live there.

Simulated survey only (it reads the hidden truth). Writes
benchmarks/results/anomaly_separability.json (with the run's pretrained models' epochs and
best validation loss, so a file says which representation it measured):

    .venv/bin/python benchmarks/anomaly_separability.py [--results results --resources resources] [--models DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from morphtools.anomaly.io import acquired_in_order, read_run

MERGER_ANSWER = "merging_merger_fraction"
TRUTH = {"decals": ("decals/hidden/truth.csv", "iauname"), "gz2": ("gz2/hidden/truth.csv", "gz2_id")}


def probe(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> dict:
    """Out-of-fold ROC AUC and average precision of a balanced logistic probe (C = 0.1)."""
    x = StandardScaler().fit_transform(features)
    p = cross_val_predict(LogisticRegression(C=0.1, max_iter=5000, class_weight="balanced"), x, labels,
                          cv=StratifiedKFold(folds, shuffle=True, random_state=seed), method="predict_proba")[:, 1]
    return {"roc_auc": round(float(roc_auc_score(labels, p)), 3),
            "average_precision": round(float(average_precision_score(labels, p)), 3)}


def neighbour_anomaly_share(features: np.ndarray, labels: np.ndarray, k: int = 10) -> dict:
    """Mean share of anomalies among each anomaly's ``k`` nearest neighbours (Euclidean, in
    the standardised features; itself excluded), and that share over the prevalence."""
    x = StandardScaler().fit_transform(features)
    _, index = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x[labels])
    share = float(labels[index[:, 1:]].mean())
    return {f"anomalies_among_{k}_neighbours": round(share, 3), "over_prevalence": round(float(share / labels.mean()), 1)}


def truth_rows(results: Path, resources: Path, survey: str, galaxy_ids) -> pd.DataFrame:
    """The hidden truth of ``galaxy_ids`` (the survey's own ids), in their order."""
    table, id_column = TRUTH[survey]
    truth = pd.read_csv(resources / "simulated" / table, dtype={id_column: str}).set_index(id_column)
    keys = pd.Index(galaxy_ids).astype(str)
    if survey == "decals":  # the catalogue's galaxy_id is the survey's; the truth is keyed by iauname
        catalogue = pd.read_csv(results / "decals/catalogue.csv", dtype={"galaxy_id": str}).set_index("galaxy_id")
        keys = catalogue.loc[keys, "iauname"]
    return truth.loc[keys]


def merger_recognition(results: Path, resources: Path, survey: str) -> dict:
    with h5py.File(results / survey / "representation.h5") as f:
        ids = f["galaxy_id"][:].astype(str)
        answers = [str(a) for a in f.attrs["answers"]]
        predicted = f["predicted_fractions"][:, answers.index(MERGER_ANSWER)]
    is_merger = (truth_rows(results, resources, survey, ids)["morph_class"] == "merger").to_numpy()
    return {"galaxies": len(ids), "mergers": int(is_merger.sum()),
            "predicted_merger_fraction_roc_auc": round(float(roc_auc_score(is_merger, predicted)), 3)}


def first_picks_by_class(results: Path, resources: Path, folder: Path, galaxies: pd.DataFrame, survey: str,
                         batches=range(1, 6)) -> dict:
    """For the experiment in ``folder`` (its ``galaxies`` table): the CNN + GP runs that
    rated no anomaly, and the shares of simulated classes (``morph_class``) among the
    galaxies each group of runs rated in ``batches``, largest first."""
    runs = sorted((folder / "runs" / "cnn_gp").glob("repeat_*.csv"))
    if not runs:
        return {}
    is_anomaly = galaxies.set_index("galaxy_id")["is_anomaly"]
    picks = {"without_rated_anomaly": [], "with_rated_anomaly": []}
    stuck = []
    for path in runs:
        rated = acquired_in_order(read_run(path))
        found = bool(is_anomaly.loc[rated["galaxy_id"]].any())
        if not found:
            stuck.append(int(path.stem.split("_")[1]))
        picks["with_rated_anomaly" if found else "without_rated_anomaly"] += list(
            rated.loc[rated["batch"].isin(list(batches)), "galaxy_id"])
    out = {"runs": len(runs), "runs_without_rated_anomaly": sorted(stuck)}
    for group, ids in picks.items():
        if ids:
            classes = truth_rows(results, resources, survey, ids)["morph_class"].value_counts(normalize=True)
            out[f"first_picks_{group}"] = {k: round(float(v), 3) for k, v in classes.items()}
    return out


def model_training(models: Path) -> dict:
    """Per pretrained model in ``models`` (a run's ``results/models``): epochs trained, the
    epoch whose weights were kept, its validation loss."""
    out = {}
    for history_file in sorted(models.glob("*/history.csv")):
        history = pd.read_csv(history_file)
        best = history.loc[history["val_loss"].idxmin()]
        out[history_file.parent.name] = {"epochs": len(history), "best_epoch": int(best["epoch"]),
                                         "best_val_loss": round(float(best["val_loss"]), 3)}
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", default="results")
    parser.add_argument("--resources", default="resources")
    parser.add_argument("--models", help="the run's pretrained models (default: <results>/models); a run that "
                        "reused another run's weights names that run's")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "anomaly_separability.json"))
    args = parser.parse_args()
    results, resources = Path(args.results), Path(args.resources)
    out = {"models": model_training(Path(args.models) if args.models else results / "models"), "experiments": {}, "merger_recognition": {}}
    for folder in sorted(p for p in (results / "anomaly").iterdir() if (p / "features.h5").exists()):
        galaxies = pd.read_csv(folder / "galaxies.csv", dtype={"galaxy_id": str})
        labels = galaxies["is_anomaly"].to_numpy(bool)
        summary = json.loads((folder / "summary.json").read_text())
        row = {"survey": summary["survey"], "galaxies": len(labels), "anomalies": int(labels.sum())}
        with h5py.File(folder / "features.h5") as f:
            for kind in ("cnn", "ellipse"):
                row[kind] = probe(f[kind][:], labels) | neighbour_anomaly_share(f[kind][:], labels)
        row["cnn_gp_first_picks"] = first_picks_by_class(results, resources, folder, galaxies, summary["survey"])
        out["experiments"][folder.name] = row
        print(folder.name, row, flush=True)
    for survey in TRUTH:
        if (results / survey / "representation.h5").exists():
            out["merger_recognition"][survey] = merger_recognition(results, resources, survey)
            print(survey, out["merger_recognition"][survey], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
