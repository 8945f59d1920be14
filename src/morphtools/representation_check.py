"""Does the representation know morphology? Two checks against the simulated survey's
hidden truth, which pretraining never saw:

1. Nearest-neighbour majority vote: for held-out galaxies, the hidden morphology class of
   their k nearest neighbours (Manhattan distance in the PCA-10 space, k = 10) among the
   other galaxies; accuracy next to chance (always guessing the commonest class).
2. Linear probe for rings: logistic regression on the standardised 1280-d representation,
   ring vs not-ring from the hidden ring votes, ROC AUC by stratified cross-validation;
   chance is 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


@dataclass(frozen=True)
class CheckParams:
    k: int = 10
    metric: str = "manhattan"
    held_out_fraction: float = 0.2
    ring_min_fraction: float = 0.25     # ring if more than this fraction of votes said ring
    not_ring_max_fraction: float = 0.05  # not-ring below this; in-between galaxies are dropped
    probe_c: float = 0.01               # inverse L2 strength of the logistic regression
    folds: int = 5
    seed: int = 0


def knn_majority_vote(pca: np.ndarray, labels: np.ndarray, params: CheckParams) -> dict:
    """Held-out accuracy of the k-NN majority vote; returns accuracy, chance, counts and the
    confusion matrix (rows true, columns predicted, ``classes`` order)."""
    rng = np.random.default_rng(params.seed)
    held_out = rng.random(len(labels)) < params.held_out_fraction
    if held_out.all() or not held_out.any():
        raise ValueError(f"{len(labels)} galaxies are too few for a held-out split")
    # integer codes: scikit-learn 1.7's fast k-NN path fails on string labels with float64
    classes, codes = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    labels = classes[codes]
    knn = KNeighborsClassifier(n_neighbors=params.k, metric=params.metric)
    knn.fit(pca[~held_out], codes[~held_out])
    predicted = classes[knn.predict(pca[held_out])]
    reference_share = pd.Series(labels[~held_out]).value_counts(normalize=True)
    return {
        "accuracy": float((predicted == labels[held_out]).mean()),
        "chance_majority_class": float(reference_share.iloc[0]),
        "majority_class": str(reference_share.index[0]),
        "chance_uniform": 1.0 / len(classes),
        "n_reference": int((~held_out).sum()),
        "n_held_out": int(held_out.sum()),
        "classes": [str(c) for c in classes],
        "confusion": confusion_matrix(labels[held_out], predicted, labels=classes).tolist(),
    }


def ring_labels(ring_fraction: np.ndarray, params: CheckParams) -> tuple[np.ndarray, np.ndarray]:
    """(kept mask, is_ring for the kept galaxies) from the ring vote fraction."""
    ring_fraction = np.asarray(ring_fraction, float)
    is_ring = ring_fraction > params.ring_min_fraction
    keep = is_ring | (ring_fraction < params.not_ring_max_fraction)
    return keep, is_ring[keep]


def ring_linear_probe(representation: np.ndarray, ring_fraction: np.ndarray, params: CheckParams) -> dict:
    """Cross-validated ROC AUC of a linear probe for rings; returns the AUC, chance (0.5),
    counts and the ROC curve. With fewer than two rings (or not-rings) the AUC is NaN and
    ``note`` says why."""
    keep, y = ring_labels(ring_fraction, params)
    n_rings, n_not = int(y.sum()), int(len(y) - y.sum())
    result = {"roc_auc": float("nan"), "chance": 0.5, "n_rings": n_rings, "n_not_rings": n_not,
              "n_dropped": int((~keep).sum()), "folds": 0, "fpr": [], "tpr": [], "note": ""}
    folds = min(params.folds, n_rings, n_not)
    if folds < 2:
        # a small catalogue (the test config) may hold one ring or none: say so, do not fail
        result["note"] = f"too few galaxies for a probe: {n_rings} rings, {n_not} not-rings"
        return result
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=params.probe_c, max_iter=5000))
    scores = cross_val_predict(probe, representation[keep], y, method="predict_proba",
                               cv=StratifiedKFold(folds, shuffle=True, random_state=params.seed))[:, 1]
    fpr, tpr, _ = roc_curve(y, scores)
    result.update(roc_auc=float(roc_auc_score(y, scores)), folds=folds, fpr=fpr.tolist(), tpr=tpr.tolist())
    return result


def summary_table(knn: dict, probe: dict) -> pd.DataFrame:
    """The two headline numbers with their chance levels, one row each."""
    return pd.DataFrame([
        {"check": f"k-NN majority vote, hidden morphology class (held-out {knn['n_held_out']} galaxies)",
         "metric": "accuracy", "value": knn["accuracy"], "chance": knn["chance_majority_class"]},
        {"check": f"linear probe, hidden rings ({probe['n_rings']} rings vs {probe['n_not_rings']} not)",
         "metric": "ROC AUC (cross-validated)", "value": probe["roc_auc"], "chance": probe["chance"]},
    ])
