"""Adapter: the forum-tag test of the similarity search, its tables and figure (Fig. 2)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import pandas as pd  # noqa: E402

from morphtools.plots import galaxy_rows_figure  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.similarity import SimilarityIndex, thumbnails  # noqa: E402
from morphtools.storage import atomic_path, write_csv  # noqa: E402
from morphtools.tags import TagSearchParams, evaluate_tags, read_tag_counts, summarise  # noqa: E402

log = log_to(snakemake.log[0], "similarity_tags")
search, tag_config = snakemake.params.search, snakemake.params.tags
params = TagSearchParams(k=search["k"], metric=search["metric"],
                         duplicate_radius_arcsec=search["duplicate_radius_arcsec"] or None,
                         min_count=tag_config["min_count"], excluded=tuple(tag_config["excluded"]),
                         max_queries_per_tag=tag_config["max_queries_per_tag"], seed=snakemake.params.seed)
index = SimilarityIndex.from_files(snakemake.input.space, snakemake.input.catalogue, snakemake.params.space)
catalogue = pd.read_csv(snakemake.input.catalogue, usecols=["galaxy_id", "iauname"], dtype=str).set_index("galaxy_id")
counts = read_tag_counts(snakemake.input.tags, catalogue.loc[list(index.galaxy_ids), "iauname"].to_numpy())
log.info("%d galaxies in %s (%d-d); %d tags", len(index), snakemake.params.space, index.dimensions, counts.shape[1])

table, top_neighbours = evaluate_tags(index, counts, params)
summary = summarise(table, params.k)
log.info("\n%s\n%s", table.to_string(index=False), summary.T.to_string())
write_csv(table, snakemake.output.table)
write_csv(summary, snakemake.output.summary)

# every tag's top query and its neighbours, ranked, with whether each carries the tag
listed = []
for tag, (query, rows) in top_neighbours.items():
    ranked = [query] + [r for r in rows if r >= 0]
    listed.append(pd.DataFrame({"tag": tag, "rank": range(len(ranked)), "galaxy_id": index.galaxy_ids[ranked],
                                "tag_uses": counts[tag].to_numpy()[ranked]}))
neighbours = pd.concat(listed, ignore_index=True) if listed else pd.DataFrame(columns=["tag", "rank", "galaxy_id",
                                                                                       "tag_uses"])
neighbours["carries_tag"] = neighbours["tag_uses"] >= params.min_count
write_csv(neighbours, snakemake.output.neighbours)

shown = table[~table["excluded"] & (table["tagged_galaxies"] > 0)].head(tag_config["figure_tags"])
crops = dict(zip(snakemake.params.shards, snakemake.input.crops, strict=True))
per_row = tag_config["figure_neighbours"] + 1
rows, labels, captions, marked = [], [], [], []
for r in shown.itertuples(index=False):
    ranked = neighbours[neighbours["tag"] == r.tag].head(per_row)
    rows.append(list(thumbnails(index, [index.row(g) for g in ranked["galaxy_id"]], crops)))
    labels.append(f"#{r.tag}\n{params.k} nearest: {r.top_query_precision:.0%}\nprevalence {r.prevalence:.1%}")
    captions.append([f"query ({r.query_uses} uses)"] + [str(k) for k in ranked["rank"].iloc[1:]])
    marked.append([False] + list(ranked["carries_tag"].iloc[1:]))  # the query carries it by choice
with atomic_path(snakemake.output.figure, suffix=".png") as tmp:
    if rows:
        galaxy_rows_figure(rows, tmp, labels, captions, marked,
                           title=f"Query galaxy (green) and its nearest neighbours ({params.metric}, "
                                 f"{snakemake.params.space}); orange square: also carries the tag")
    else:
        galaxy_rows_figure([[]], tmp, title="no galaxy carries any of the tags")
