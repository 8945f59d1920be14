"""Metrics for a ranking of galaxies against the anomaly labels (paper sec. 3.3, LB21).

Every function takes ``is_anomaly`` (bool, one per galaxy) and ``scores`` (higher = more
likely an interesting anomaly), ranks by descending score, and measures the top of that
ranking. Ties are broken by the original order (a stable sort), so a ranking is fully
determined by its scores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score


def ranked_labels(is_anomaly, scores) -> np.ndarray:
    """The anomaly labels in ranked order (best score first; stable for ties)."""
    is_anomaly = np.asarray(is_anomaly, bool)
    scores = np.asarray(scores, float)
    if is_anomaly.shape != scores.shape:
        raise ValueError(f"{is_anomaly.shape[0]} labels but {scores.shape[0]} scores")
    order = np.argsort(-scores, kind="stable")
    return is_anomaly[order]


def rank_weighted_score(ranked: np.ndarray, n: int) -> float:
    """LB21's rank weighted score of the top ``n``: sum_i (n - i + 1) I_i / (n (n + 1) / 2),
    i = 1..n, I_i = 1 when the i-th ranked galaxy is an anomaly. 1 when all top ``n`` are
    anomalies; the prevalence on average for a random ranking."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    hits = np.zeros(n)
    top = np.asarray(ranked[:n], float)
    hits[: len(top)] = top
    weights = np.arange(n, 0, -1)
    return float((weights * hits).sum() / (n * (n + 1) / 2))


def rank_weighted_scores(ranked: np.ndarray, ns) -> np.ndarray:
    """``rank_weighted_score`` for every n in ``ns`` (vectorised with cumulative sums)."""
    ns = np.asarray(ns, int)
    n_max = int(ns.max())
    hits = np.zeros(n_max)
    top = np.asarray(ranked[:n_max], float)
    hits[: len(top)] = top
    i = np.arange(1, n_max + 1)
    # sum_{i<=n} (n - i + 1) I_i = (n + 1) C_n - D_n with C_n = sum I_i and D_n = sum i I_i
    c, d = np.cumsum(hits), np.cumsum(i * hits)
    return ((ns + 1) * c[ns - 1] - d[ns - 1]) / (ns * (ns + 1) / 2)


def top_n_accuracy(ranked: np.ndarray, n: int) -> float:
    """Share of the top ``n`` that are anomalies (precision at n)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return float(np.asarray(ranked[:n], float).sum() / n)


def top_n_accuracies(ranked: np.ndarray, ns) -> np.ndarray:
    ns = np.asarray(ns, int)
    c = np.cumsum(np.asarray(ranked[: int(ns.max())], float))
    c = np.concatenate([c, np.full(max(0, int(ns.max()) - len(c)), c[-1] if len(c) else 0.0)])
    return c[ns - 1] / ns


def recall_at(ranked: np.ndarray, n: int) -> float:
    """Share of all anomalies found in the top ``n``."""
    total = int(np.asarray(ranked, bool).sum())
    if total == 0:
        return float("nan")
    return float(np.asarray(ranked[:n], bool).sum() / total)


def average_precision(is_anomaly, scores) -> float:
    """scikit-learn's average precision of the scores (NaN when there is no anomaly)."""
    is_anomaly = np.asarray(is_anomaly, bool)
    if not is_anomaly.any():
        return float("nan")
    return float(average_precision_score(is_anomaly, np.asarray(scores, float)))


def ranking_metrics(is_anomaly, scores, top_n=(50, 200)) -> dict:
    """The Table 1 metrics of one run: average precision, accuracy and recall in each top
    n, plus the prevalence and the best accuracy any ranking could reach (min(n, anomalies) / n)."""
    ranked = ranked_labels(is_anomaly, scores)
    n_anomalies = int(ranked.sum())
    out = {
        "n_galaxies": int(len(ranked)),
        "n_anomalies": n_anomalies,
        "prevalence": n_anomalies / len(ranked) if len(ranked) else float("nan"),
        "average_precision": average_precision(is_anomaly, scores),
    }
    for n in top_n:
        out[f"accuracy_top{n}"] = top_n_accuracy(ranked, n)
        out[f"recall_top{n}"] = recall_at(ranked, n)
        out[f"max_accuracy_top{n}"] = min(n, n_anomalies) / n
    return out


def curves(is_anomaly, scores, ns) -> pd.DataFrame:
    """RWS(N) and accuracy(N) for every N in ``ns``: one row per N (Figs 3 and 5)."""
    ranked = ranked_labels(is_anomaly, scores)
    ns = np.asarray(ns, int)
    return pd.DataFrame({"n": ns, "rws": rank_weighted_scores(ranked, ns), "accuracy": top_n_accuracies(ranked, ns)})


def mean_and_error(values, sigmas: float = 3.0) -> tuple[float, float, int]:
    """(mean, ``sigmas`` x standard error of the mean, count) over repeats, ignoring NaN;
    the error is NaN for fewer than two values. The paper quotes 3 sigma of the mean."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), 0
    if len(v) == 1:
        return float(v[0]), float("nan"), 1
    return float(v.mean()), float(sigmas * v.std(ddof=1) / np.sqrt(len(v))), int(len(v))
