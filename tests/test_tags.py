"""The forum-tag evaluation of the similarity search, against hand-worked examples."""

import numpy as np
import pandas as pd
import pytest

from morphtools.similarity import SimilarityIndex
from morphtools.tags import (
    TagSearchParams,
    evaluate_tags,
    precision_at_k,
    read_tag_counts,
    summarise,
    top_query,
)


def test_read_tag_counts_aligns_rows_and_fills_undiscussed(tmp_path):
    path = tmp_path / "tags.csv"
    pd.DataFrame({"iauname": ["b", "a", "zzz"], "tag_ring": [2, 0, 5], "tag_dustlane": [0, 1, 1]}).to_csv(path, index=False)
    counts = read_tag_counts(path, ["a", "c", "b"])
    assert list(counts.columns) == ["ring", "dustlane"]
    assert counts.to_numpy().tolist() == [[0, 1], [0, 0], [2, 0]]  # c was never discussed
    pd.DataFrame({"name": ["a"], "ring": [1]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="iauname"):
        read_tag_counts(path, ["a"])


def test_top_query_is_the_most_tagged_galaxy_ties_to_the_most_specific():
    counts = pd.DataFrame({"ring": [1, 3, 3, 0], "bar": [0, 2, 0, 5]})
    assert top_query(counts, "ring") == 2  # 3 uses each; galaxy 2 has no other tags
    assert top_query(counts, "bar") == 3


def test_precision_at_k_by_hand():
    carries = np.array([True, False, True, False, True])
    rows = np.array([[0, 1, 2, 3], [4, 2, -1, -1], [-1, -1, -1, -1]])
    precision = precision_at_k(rows, carries)
    assert precision[0] == 0.5 and precision[1] == 1.0 and np.isnan(precision[2])


def test_evaluate_tags_on_a_hand_worked_line():
    """Twelve galaxies on a line (1-d space). #ring on the cluster at 0 (galaxies 0, 1, 2;
    galaxy 1 tagged most); #dustlane on two isolated galaxies (5 and 11); #spiral is
    excluded. With k = 2 the ring query's neighbours are both rings; the dustlane query's
    are not dustlanes."""
    positions = np.array([0.0, 0.1, 0.2, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 20.0])
    index = SimilarityIndex([f"g{i}" for i in range(12)], positions[:, None])
    counts = pd.DataFrame(0, index=range(12), columns=["ring", "dustlane", "spiral"])
    counts.loc[[0, 1, 2], "ring"] = [1, 3, 1]
    counts.loc[[5, 11], "dustlane"] = [4, 2]
    counts.loc[[3, 4], "spiral"] = [1, 1]
    params = TagSearchParams(k=2, duplicate_radius_arcsec=None, excluded=("spiral",))
    table, top = evaluate_tags(index, counts, params)
    table = table.set_index("tag")
    assert list(table.index) == ["ring", "dustlane", "spiral"]  # most tagged galaxies first
    ring = table.loc["ring"]
    assert ring["query_galaxy"] == "g1" and ring["query_uses"] == 3
    assert ring["prevalence"] == pytest.approx(3 / 12) and ring["top_query_precision"] == 1.0
    # every ring as a query: g0 -> g1, g2; g1 -> g0, g2; g2 -> g1, g0: all rings
    assert ring["queries"] == 3 and ring["mean_precision"] == 1.0 and ring["lift"] == pytest.approx(4.0)
    assert list(top["ring"][1]) == [0, 2]
    dust = table.loc["dustlane"]
    # g5 -> g4, g6; g11 -> g10, g9: no dustlane among them
    assert dust["query_galaxy"] == "g5" and dust["top_query_precision"] == 0.0 and dust["mean_precision"] == 0.0
    assert table.loc["spiral", "excluded"] and not ring["excluded"]
    summary = summarise(table.reset_index(), k=2).iloc[0]
    assert summary["tags"] == 2  # spiral left out
    assert summary["median_top_query_precision"] == pytest.approx(0.5)
    assert summary["median_prevalence"] == pytest.approx((3 / 12 + 2 / 12) / 2)
    assert summary["tags_not_above_prevalence"] == "dustlane"


def test_many_queries_are_capped_and_seeded():
    rng = np.random.default_rng(0)
    index = SimilarityIndex([f"g{i}" for i in range(200)], rng.normal(size=(200, 3)))
    counts = pd.DataFrame({"diffuse": (rng.random(200) < 0.5).astype(int)})
    params = TagSearchParams(k=5, duplicate_radius_arcsec=None, max_queries_per_tag=20, seed=1)
    first, _ = evaluate_tags(index, counts, params)
    again, _ = evaluate_tags(index, counts, params)
    assert first["queries"].iloc[0] == 20
    pd.testing.assert_frame_equal(first, again)
    # random vectors: precision near prevalence
    assert abs(first["mean_precision"].iloc[0] - first["prevalence"].iloc[0]) < 0.2
