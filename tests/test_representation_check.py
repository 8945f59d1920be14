import numpy as np
import pytest

from morphtools.representation_check import (
    CheckParams,
    knn_majority_vote,
    ring_labels,
    ring_linear_probe,
    summary_table,
)


def clustered(n_per_class=80, separation=6.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 10)) * separation
    labels = np.repeat(np.array(["a", "b", "c", "d"]), n_per_class)
    points = centres[np.searchsorted(["a", "b", "c", "d"], labels)] + rng.normal(size=(len(labels), 10))
    return points, labels


def test_knn_recovers_clusters_and_not_noise():
    points, labels = clustered()
    good = knn_majority_vote(points, labels, CheckParams())
    assert good["accuracy"] > 0.95 and good["chance_majority_class"] == pytest.approx(0.25, abs=0.06)
    assert np.asarray(good["confusion"]).sum() == good["n_held_out"]
    # float64 with string labels too (scikit-learn's fast path once failed on that)
    assert knn_majority_vote(points.astype(np.float64), labels, CheckParams())["accuracy"] == good["accuracy"]
    noise = np.random.default_rng(1).normal(size=points.shape)
    bad = knn_majority_vote(noise, labels, CheckParams())
    assert bad["accuracy"] < 0.45


def test_ring_labels_drop_the_grey_zone():
    keep, is_ring = ring_labels(np.array([0.0, 0.04, 0.1, 0.26, 0.9]), CheckParams())
    assert keep.tolist() == [True, True, False, True, True]
    assert is_ring.tolist() == [False, False, True, True]


def test_probe_finds_a_linear_signal_and_reports_too_few_rings():
    rng = np.random.default_rng(2)
    fraction = np.where(rng.random(400) < 0.1, 0.6, 0.0)
    representation = rng.normal(size=(400, 50))
    representation[:, 7] += 3 * (fraction > 0.25)
    probe = ring_linear_probe(representation, fraction, CheckParams())
    assert probe["roc_auc"] > 0.95 and probe["n_rings"] == int((fraction > 0.25).sum())
    shuffled = ring_linear_probe(rng.normal(size=(400, 50)), fraction, CheckParams())
    assert 0.3 < shuffled["roc_auc"] < 0.7
    one_ring = ring_linear_probe(representation, np.r_[0.9, np.zeros(399)], CheckParams())
    assert np.isnan(one_ring["roc_auc"]) and "1 rings" in one_ring["note"]
    table = summary_table(knn_majority_vote(*clustered(), CheckParams()), probe)
    assert table["metric"].tolist() == ["accuracy", "ROC AUC (cross-validated)"] and table["chance"].iloc[1] == 0.5
