"""The simulated user, anomaly thresholds and experiment tables."""

import numpy as np
import pandas as pd
import pytest

from morphtools.anomaly.experiment import (
    ExperimentSpec,
    build_experiment_table,
    simulated_rating,
    threshold_for_prevalence,
)


def test_rating_is_five_times_the_fraction_rounded_half_to_even():
    fractions = [0.0, 0.09, 0.1, 0.11, 0.5, 0.7, 0.9, 0.91, 1.0]
    # 0.1 -> 0.5 -> 0 and 0.5 -> 2.5 -> 2 and 0.7 -> 3.5 -> 4 and 0.9 -> 4.5 -> 4 (numpy rounding)
    assert simulated_rating(fractions).tolist() == [0, 0, 0, 1, 2, 4, 4, 5, 5]
    # so GZ2's 'odd > 0.9' anomalies are exactly the galaxies rated 5
    f = np.linspace(0, 1, 1001)
    assert ((simulated_rating(f) == 5) == (f > 0.9)).all()


def test_threshold_for_prevalence():
    f = np.arange(1000) / 1000  # 0.000 .. 0.999
    t = threshold_for_prevalence(f, 0.015)
    assert (f > t).mean() == pytest.approx(0.015)
    # discrete vote fractions: the nearest reachable share, ties to the higher threshold
    votes = np.repeat([0.0, 0.5, 1.0], [90, 5, 5])
    assert threshold_for_prevalence(votes, 0.05) == 0.5
    assert threshold_for_prevalence(votes, 0.07) == 0.5  # 5% is nearer 7% than 10% is
    assert threshold_for_prevalence(votes, 0.08) == 0.0  # 10% is nearer 8%
    assert threshold_for_prevalence(votes, 0.075) == 0.5  # a tie: the higher threshold
    with pytest.raises(ValueError):
        threshold_for_prevalence([np.nan], 0.1)


def make_inputs(n=400, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"g{i}" for i in range(n)]
    catalogue = pd.DataFrame({"galaxy_id": ids, "iauname": [f"J{i}" for i in range(n)],
                              "merging_merger_fraction": rng.random(n) ** 4,
                              "merging_total-votes": rng.integers(20, 50, n)})
    ellipse = pd.DataFrame(rng.normal(size=(n, 24)), columns=[f"f{i}" for i in range(24)])
    ellipse.insert(0, "galaxy_id", ids)
    ellipse.iloc[:7, 3] = np.nan  # failed fits
    predicted = pd.DataFrame({"galaxy_id": ids, "smooth-or-featured_featured-or-disk_fraction": rng.random(n),
                              "disk-edge-on_no_fraction": rng.random(n)})
    labels = pd.DataFrame({"iauname": [f"J{i}" for i in range(n)][::-1],
                           "rare-features_ring_fraction": rng.random(n) ** 3,
                           "rare-features_total-votes": np.full(n, 40)})
    return ids, catalogue, ellipse, predicted, labels


def test_experiment_table_cuts_labels_and_prevalence():
    ids, catalogue, ellipse, predicted, labels = make_inputs()
    spec = ExperimentSpec(name="merger", survey="decals", fraction="merging_merger_fraction",
                          votes="merging_total-votes", min_votes=30, prevalence=0.05)
    table, summary = build_experiment_table(spec, catalogue, ids[::-1], ellipse, predicted)
    votes = catalogue.set_index("galaxy_id")["merging_total-votes"]
    assert (votes.loc[table["galaxy_id"]] >= 30).all()
    assert not set(table["galaxy_id"]) & set(ids[:7])  # failed ellipse fits are dropped
    assert list(table["galaxy_id"]) == [g for g in ids[::-1] if g in set(table["galaxy_id"])]  # representation order
    assert table["is_anomaly"].mean() == pytest.approx(0.05, abs=0.01)
    assert (table["is_anomaly"] == (table["fraction"] > summary["threshold"])).all()
    assert (table["rating"] == simulated_rating(table["fraction"])).all()
    assert summary["n_galaxies"] == len(table) and summary["ellipse_failed"] >= 1
    assert summary["paper_row"] == "merger"  # compared with the paper's row of its own name


def test_featured_face_on_filter_and_fixed_threshold():
    ids, catalogue, ellipse, predicted, _ = make_inputs()
    spec = ExperimentSpec(name="m", survey="decals", fraction="merging_merger_fraction", threshold=0.3,
                          featured_face_on=True)
    table, summary = build_experiment_table(spec, catalogue, ids, ellipse, predicted)
    pred = predicted.set_index("galaxy_id").loc[table["galaxy_id"]]
    assert (pred["smooth-or-featured_featured-or-disk_fraction"] > 0.6).all()
    assert (pred["disk-edge-on_no_fraction"] > 0.75).all()
    assert 0 < len(table) < 0.2 * len(ids) and summary["threshold"] == 0.3
    assert (table["is_anomaly"] == (table["fraction"] > 0.3)).all()
    with pytest.raises(ValueError, match="predicted"):
        build_experiment_table(spec, catalogue, ids, ellipse, None)


def test_labels_from_a_separate_table_joined_by_name():
    ids, catalogue, ellipse, predicted, labels = make_inputs()
    spec = ExperimentSpec(name="ring", survey="decals", fraction="rare-features_ring_fraction",
                          labels_table="rare.csv", join_on="iauname", votes="rare-features_total-votes",
                          min_votes=30, prevalence=0.015)
    table, _ = build_experiment_table(spec, catalogue, ids, ellipse, predicted, labels)
    expected = labels.set_index("iauname")["rare-features_ring_fraction"]
    names = catalogue.set_index("galaxy_id").loc[table["galaxy_id"], "iauname"]
    np.testing.assert_allclose(table["fraction"], expected.loc[names].to_numpy())
    with pytest.raises(KeyError, match="no column"):
        build_experiment_table(ExperimentSpec(name="x", survey="decals", fraction="nope"), catalogue, ids, ellipse)


def test_spec_from_config_takes_the_filter_cuts():
    spec = ExperimentSpec.from_config("odd", {"survey": "gz2", "fraction": "Class6.1", "threshold": 0.9,
                                              "methods": ["cnn_gp"]}, {"featured_min": 0.5, "face_on_min": 0.7})
    assert spec.methods == ("cnn_gp",) and spec.featured_min == 0.5 and spec.threshold == 0.9
    # a variant of a paper experiment names the paper's row it is compared with
    ids, catalogue, ellipse, predicted, _ = make_inputs()
    spec = ExperimentSpec.from_config("merger-featured-face-on", {
        "survey": "decals", "fraction": "merging_merger_fraction", "featured_face_on": True,
        "paper_row": "merger", "methods": ["cnn_gp"]})
    assert build_experiment_table(spec, catalogue, ids, ellipse, predicted)[1]["paper_row"] == "merger"
