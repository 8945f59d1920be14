"""Metrics of every run, and Table 1 laid out as the paper's with its numbers beside ours."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .methods import METHOD_LABELS
from .metrics import curves, mean_and_error, ranking_metrics

# Walmsley et al. 2022, Table 1: mean of 15 runs +- (roughly) 3 sigma of the mean
PAPER_TABLE_1 = {
    ("odd", "baseline"): ("0.16 ± 0.02", "66% ± 16", "40% ± 7"),
    ("odd", "ellipse_gp"): ("0.21 ± 0.10", "99% ± 5", "63% ± 22"),
    ("odd", "cnn_gp"): ("0.55 ± 0.10", "100%", "87% ± 11"),
    ("merger", "baseline"): ("0.12 ± 0.03", "25.5% ± 18.6", "24.9% ± 7.7"),
    ("merger", "cnn_gp"): ("0.58 ± 0.20", "100%", "88% ± 15.4"),
    ("ring", "baseline"): ("failed", "failed", "failed"),
    ("ring", "cnn_gp"): ("0.63 ± 0.11", "99.9% ± 1.5", "95.8% ± 13"),
    ("irregular", "baseline"): ("failed", "failed", "failed"),
    ("irregular", "cnn_gp"): ("0.58 ± 0.04", "100%", "91% ± 5.4"),
}
SURVEY_LABELS = {"gz2": "GZ2", "decals": "DECaLS"}
METHOD_ORDER = ("baseline", "ellipse_gp", "cnn_gp", "random")


def run_metrics(galaxies: pd.DataFrame, run: pd.DataFrame, top_n=(50, 200), info: dict | None = None) -> dict:
    """Table 1 metrics of one run (``run`` rows matched to ``galaxies`` by id), with how
    the search went: ``rated_anomalies``; ``first_anomaly_batch``, the batch in which the
    first anomaly was rated (0 = the random first batch; -1: none was); and, from the run's
    ``info`` (its JSON) where it describes the interest model's fits (the GP methods),
    ``flat_fit_share``, the share of those fits that were flat (NaN otherwise; see
    :func:`~morphtools.anomaly.methods.describe_interest_fit`)."""
    scores = run.set_index("galaxy_id")["score"].reindex(galaxies["galaxy_id"]).to_numpy(float)
    if not np.isfinite(scores).all():
        raise ValueError("run scores do not cover every galaxy of the experiment")
    out = ranking_metrics(galaxies["is_anomaly"].to_numpy(bool), scores, top_n)
    rated = run[run["order"] >= 0]
    rated_is_anomaly = galaxies.set_index("galaxy_id").loc[rated["galaxy_id"], "is_anomaly"].to_numpy(bool)
    out["n_rated"] = int(len(rated))
    out["rated_anomalies"] = int(rated_is_anomaly.sum())
    out["first_anomaly_batch"] = int(rated["batch"].to_numpy()[rated_is_anomaly].min()) if rated_is_anomaly.any() else -1
    fits = (info or {}).get("interest_fits") or []
    out["flat_fit_share"] = float(np.mean([fit["flat"] for fit in fits])) if fits else float("nan")
    return out


def run_curves(galaxies: pd.DataFrame, run: pd.DataFrame, max_n: int) -> pd.DataFrame:
    scores = run.set_index("galaxy_id")["score"].reindex(galaxies["galaxy_id"]).to_numpy(float)
    ns = np.arange(1, min(max_n, len(galaxies)) + 1)
    return curves(galaxies["is_anomaly"].to_numpy(bool), scores, ns)


def _fmt(mean, err, percent):
    if not np.isfinite(mean):
        return "n/a"
    if percent:
        text = f"{100 * mean:.1f}%"
        return text if not np.isfinite(err) else f"{text} ± {100 * err:.1f}"
    return f"{mean:.2f}" if not np.isfinite(err) else f"{mean:.2f} ± {err:.2f}"


def table_1(metrics: pd.DataFrame, summaries: dict[str, dict], top_n=(50, 200), sigmas: float = 3.0,
            left_out: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per experiment and method: mean ± ``sigmas`` sigma of the mean over repeats
    of average precision and the top-n accuracies, with the paper's values beside them
    (its row for the experiment's ``paper_row``, else for the experiment's name),
    the number of repeats, galaxies and anomalies, and the best accuracy reachable (when
    an experiment holds fewer anomalies than n, top-n accuracy cannot reach 100%).

    ``left_out`` maps experiments that could not run to the reason; each gets one row
    saying so (in the ``note`` column), so the table never drops a paper row silently."""
    rows = []
    paper_n = (50, 200)
    for experiment in dict.fromkeys(metrics["experiment"]):
        info = summaries.get(experiment, {})
        sub = metrics[metrics["experiment"] == experiment]
        methods = [m for m in METHOD_ORDER if m in set(sub["method"])]
        for method in methods:
            runs = sub[sub["method"] == method]
            paper = PAPER_TABLE_1.get((info.get("paper_row", experiment), method), ("", "", ""))
            row = {"data set": SURVEY_LABELS.get(info.get("survey", ""), info.get("survey", "")),
                   "anomaly": experiment, "method": METHOD_LABELS.get(method, method)}
            mean, err, _ = mean_and_error(runs["average_precision"], sigmas)
            row["average precision"] = _fmt(mean, err, False)
            row["paper average precision"] = paper[0]
            for n in top_n:
                mean, err, _ = mean_and_error(runs[f"accuracy_top{n}"], sigmas)
                row[f"accuracy (top {n})"] = _fmt(mean, err, True)
                row[f"paper accuracy (top {n})"] = paper[1 + paper_n.index(n)] if n in paper_n else ""
            for n in top_n:
                row[f"best possible (top {n})"] = _fmt(float(runs[f"max_accuracy_top{n}"].iloc[0]), np.nan, True)
            row.update(repeats=int(runs["repeat"].nunique()), galaxies=int(runs["n_galaxies"].iloc[0]),
                       anomalies=int(runs["n_anomalies"].iloc[0]),
                       threshold=round(float(info.get("threshold", np.nan)), 3))
            row["note"] = ""
            rows.append(row)
    for experiment, why in (left_out or {}).items():
        row = {"data set": "", "anomaly": experiment, "method": "not run", "average precision": "",
               "paper average precision": ""}
        for n in top_n:
            row[f"accuracy (top {n})"] = ""
            row[f"paper accuracy (top {n})"] = ""
        row["note"] = why
        rows.append(row)
    return pd.DataFrame(rows)


def numeric_summary(metrics: pd.DataFrame, sigmas: float = 3.0) -> pd.DataFrame:
    """Mean and error of every numeric metric per experiment and method (for comparisons)."""
    # first_anomaly_batch is -1 where none was rated: its mean would mean nothing
    skip = {"repeat", "n_galaxies", "n_anomalies", "prevalence", "n_rated", "first_anomaly_batch"}
    cols = [c for c in metrics.columns if c not in skip and pd.api.types.is_numeric_dtype(metrics[c])
            and not c.startswith("max_accuracy")]
    rows = []
    for (experiment, method), runs in metrics.groupby(["experiment", "method"], sort=False):
        row = {"experiment": experiment, "method": method}
        for c in cols:
            mean, err, _ = mean_and_error(runs[c], sigmas)
            row[c], row[f"{c}_err"] = mean, err
        # not a column's count: flat_fit_share has none for the methods without a GP
        row["repeats"] = int(runs["repeat"].nunique())
        rows.append(row)
    return pd.DataFrame(rows)
