"""Forum tags as an independent test of the similarity search (paper sec. 2.4, Fig. 2).

Galaxy Zoo Talk volunteers tag galaxies with free-text hashtags (#ring, #dustlane, ...);
the network never saw them. For each common tag, the galaxy given that tag most often is
the query, and the question is how many of its k nearest neighbours in the representation
carry the same tag, against the tag's prevalence (the precision of picking galaxies at
random). Tags that repeat a decision-tree question (#spiral, #bar, ...) are reported but
excluded from the headline numbers, as the paper excludes them from Fig. 2.

The tag table (``talk_tags.csv``) has ``iauname`` and one ``tag_<name>`` column of counts
(how many times volunteers used the tag on that galaxy) per tag.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .similarity import DUPLICATE_RADIUS_ARCSEC, SimilarityIndex

TAG_PREFIX = "tag_"


@dataclass(frozen=True)
class TagSearchParams:
    k: int = 10                         # neighbours per query (precision@k)
    metric: str = "manhattan"
    duplicate_radius_arcsec: float | None = DUPLICATE_RADIUS_ARCSEC
    min_count: int = 1                  # a galaxy carries a tag used on it at least this often
    excluded: tuple[str, ...] = ()      # tags equivalent to a decision-tree question
    max_queries_per_tag: int = 500      # query galaxies per tag for the averaged precision
    seed: int = 0


def read_tag_counts(path, names) -> pd.DataFrame:
    """Tag counts for the galaxies ``names`` (iaunames, in index order): a (len(names),
    n_tags) int DataFrame whose columns are the tag names without the prefix. Galaxies
    nobody discussed (no row in the table) have zero counts."""
    table = pd.read_csv(path)
    columns = [c for c in table.columns if c.startswith(TAG_PREFIX)]
    if "iauname" not in table.columns or not columns:
        raise ValueError(f"{path}: expected an iauname column and {TAG_PREFIX}* count columns, got {list(table.columns)}")
    counts = table.set_index("iauname")[columns].groupby(level=0).sum()
    counts = counts.reindex(pd.Index(names, name="iauname"), fill_value=0).astype(np.int64)
    counts.columns = [c.removeprefix(TAG_PREFIX) for c in columns]
    return counts


def top_query(counts: pd.DataFrame, tag: str) -> int:
    """Row (position) of the galaxy given ``tag`` most often. Ties go to the galaxy whose
    tags are most concentrated on this one (fewest uses of other tags), then to the first."""
    uses = counts[tag].to_numpy()
    other = counts.to_numpy().sum(axis=1) - uses
    order = np.lexsort((np.arange(len(uses)), other, -uses))
    return int(order[0])


def precision_at_k(neighbour_rows: np.ndarray, carries: np.ndarray) -> np.ndarray:
    """(m,) fraction of each query's neighbours that carry the tag. ``neighbour_rows``
    (m, k) int, -1 for missing neighbours (not counted); ``carries`` (n,) bool. NaN for a
    query with no neighbours."""
    neighbour_rows = np.atleast_2d(neighbour_rows)
    valid = neighbour_rows >= 0
    hits = np.where(valid, carries[np.clip(neighbour_rows, 0, None)], False).sum(axis=1)
    found = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(found > 0, hits / found, np.nan)


def evaluate_tags(index: SimilarityIndex, counts: pd.DataFrame, params: TagSearchParams):
    """Per tag (most galaxies first): prevalence, the top query's precision@k and the
    precision@k averaged over up to ``max_queries_per_tag`` tagged galaxies as queries.

    Returns (table, top_neighbours) where ``top_neighbours[tag]`` = (query row, (k,) rows
    of its neighbours) for the figure."""
    if len(counts) != len(index):
        raise ValueError(f"{len(counts)} rows of tag counts for {len(index)} galaxies")
    rng = np.random.default_rng(params.seed)
    carried = counts.to_numpy() >= params.min_count
    order = np.argsort(-carried.sum(axis=0), kind="stable")
    rows, top_neighbours = [], {}
    for t in order:
        tag = counts.columns[t]
        carries = carried[:, t]
        tagged = np.flatnonzero(carries)
        row = {"tag": tag, "excluded": tag in params.excluded, "tagged_galaxies": len(tagged),
               "prevalence": len(tagged) / len(index), "query_galaxy": "", "query_uses": 0,
               "top_query_precision": np.nan, "queries": 0, "mean_precision": np.nan,
               "mean_precision_stderr": np.nan, "lift": np.nan}
        if len(tagged):
            query = top_query(counts, tag)
            top = index.neighbours([query], params.k, params.metric, params.duplicate_radius_arcsec)
            top_neighbours[tag] = (query, top.rows[0])
            queries = tagged if len(tagged) <= params.max_queries_per_tag else \
                np.sort(rng.choice(tagged, params.max_queries_per_tag, replace=False))
            found = index.neighbours(queries, params.k, params.metric, params.duplicate_radius_arcsec)
            precision = precision_at_k(found.rows, carries)
            precision = precision[np.isfinite(precision)]
            row.update(query_galaxy=index.galaxy_ids[query], query_uses=int(counts[tag].iloc[query]),
                       top_query_precision=float(precision_at_k(top.rows, carries)[0]), queries=len(precision),
                       mean_precision=float(precision.mean()) if len(precision) else np.nan,
                       mean_precision_stderr=float(precision.std(ddof=1) / np.sqrt(len(precision)))
                       if len(precision) > 1 else np.nan)
            row["lift"] = row["mean_precision"] / row["prevalence"]
        rows.append(row)
    return pd.DataFrame(rows), top_neighbours


def summarise(table: pd.DataFrame, k: int) -> pd.DataFrame:
    """One row: over the tags not excluded (and used at least once), the median precision@k
    of the top query and of the averaged queries, next to the median prevalence."""
    kept = table[~table["excluded"] & (table["tagged_galaxies"] > 0)]
    return pd.DataFrame([{
        "k": k,
        "tags": len(kept),
        "median_top_query_precision": float(kept["top_query_precision"].median()),
        "median_mean_precision": float(kept["mean_precision"].median()),
        "median_prevalence": float(kept["prevalence"].median()),
        "median_lift": float(kept["lift"].median()),
        "tags_not_above_prevalence": " ".join(
            kept.loc[kept["mean_precision"] - 2 * kept["mean_precision_stderr"].fillna(0) <= kept["prevalence"],
                     "tag"]),
    }])
