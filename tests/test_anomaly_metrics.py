"""Anomaly metrics against hand-worked examples."""

import numpy as np
import pytest

from morphtools.anomaly.metrics import (
    average_precision,
    curves,
    mean_and_error,
    rank_weighted_score,
    rank_weighted_scores,
    ranked_labels,
    ranking_metrics,
    recall_at,
    top_n_accuracy,
)


def test_ranked_labels_sorts_by_descending_score_and_keeps_ties_stable():
    labels = np.array([0, 1, 0, 1], bool)
    scores = np.array([0.1, 0.9, 0.5, 0.5])
    # 0.9 (1), then the tie 0.5 in original order: index 2 (0), index 3 (1), then 0.1 (0)
    assert ranked_labels(labels, scores).tolist() == [True, False, True, False]


def test_rank_weighted_score_by_hand():
    ranked = np.array([1, 0, 1, 0, 0], bool)
    # N = 3: weights 3, 2, 1 over 1, 0, 1 -> (3 + 1) / 6
    assert rank_weighted_score(ranked, 3) == pytest.approx(4 / 6)
    # N = 5: weights 5..1 over 1, 0, 1, 0, 0 -> (5 + 3) / 15
    assert rank_weighted_score(ranked, 5) == pytest.approx(8 / 15)
    assert rank_weighted_score(np.ones(4, bool), 4) == 1.0 and rank_weighted_score(np.zeros(4, bool), 4) == 0.0
    # a list shorter than N counts the missing places as misses
    assert rank_weighted_score(np.array([1], bool), 2) == pytest.approx(2 / 3)
    # the vectorised form agrees at every N
    rng = np.random.default_rng(0)
    long = rng.random(300) < 0.2
    ns = np.arange(1, 301)
    np.testing.assert_allclose(rank_weighted_scores(long, ns), [rank_weighted_score(long, n) for n in ns])


def test_random_ranking_rws_is_about_the_prevalence():
    rng = np.random.default_rng(1)
    values = [rank_weighted_score(rng.random(5000) < 0.1, 500) for _ in range(50)]
    assert np.mean(values) == pytest.approx(0.1, abs=0.01)


def test_accuracy_recall_and_average_precision_by_hand():
    labels = np.array([1, 0, 1, 0, 0, 1], bool)
    scores = np.array([6, 5, 4, 3, 2, 1], float)  # ranked as given
    ranked = ranked_labels(labels, scores)
    assert top_n_accuracy(ranked, 1) == 1.0
    assert top_n_accuracy(ranked, 2) == 0.5
    assert top_n_accuracy(ranked, 3) == pytest.approx(2 / 3)
    assert recall_at(ranked, 3) == pytest.approx(2 / 3)
    assert recall_at(ranked, 6) == 1.0
    # AP = mean precision at each hit: (1/1 + 2/3 + 3/6) / 3
    assert average_precision(labels, scores) == pytest.approx((1 + 2 / 3 + 0.5) / 3)
    m = ranking_metrics(labels, scores, top_n=(2, 4))
    assert m["n_anomalies"] == 3 and m["prevalence"] == 0.5
    assert m["accuracy_top2"] == 0.5 and m["accuracy_top4"] == 0.5
    assert m["max_accuracy_top2"] == 1.0 and m["max_accuracy_top4"] == 0.75  # only 3 anomalies exist
    table = curves(labels, scores, [1, 2, 3])
    assert table["accuracy"].tolist() == pytest.approx([1, 0.5, 2 / 3])
    assert table["rws"].tolist() == pytest.approx([1, 2 / 3, 4 / 6])


def test_no_anomalies_gives_nan_not_an_error():
    assert np.isnan(average_precision(np.zeros(5, bool), np.arange(5)))
    assert np.isnan(recall_at(np.zeros(5, bool), 3))


def test_mean_and_three_sigma_of_the_mean():
    mean, err, n = mean_and_error([1.0, 2.0, 3.0, np.nan])
    # std (ddof 1) = 1, sigma of the mean = 1 / sqrt(3), three of them
    assert (mean, n) == (2.0, 3) and err == pytest.approx(3 / np.sqrt(3))
    assert np.isnan(mean_and_error([0.5])[1]) and mean_and_error([])[2] == 0
