"""Adapter: k-NN class recovery and linear ring probe against the simulated hidden truth."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import json  # noqa: E402

import pandas as pd  # noqa: E402

from morphtools.embedding import read_embeddings  # noqa: E402
from morphtools.plots import representation_check_figure  # noqa: E402
from morphtools.reduction import read_projection  # noqa: E402
from morphtools.representation_check import (  # noqa: E402
    CheckParams,
    knn_majority_vote,
    ring_linear_probe,
    summary_table,
)
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import atomic_path, write_csv  # noqa: E402

log = log_to(snakemake.log[0], "representation_check")
params = CheckParams(**snakemake.params.check, seed=snakemake.params.seed)
emb = read_embeddings(snakemake.input.representation, ("galaxy_id", "representation"))
ids, pca10 = read_projection(snakemake.input.pca, 10)
if list(ids) != list(emb["galaxy_id"]):
    raise ValueError(f"{snakemake.input.pca} and {snakemake.input.representation} list different galaxies")
catalogue = pd.read_csv(snakemake.input.catalogue, dtype={"galaxy_id": str}).set_index("galaxy_id")
names = catalogue.loc[list(ids), "iauname"].to_numpy()
truth = pd.read_csv(snakemake.input.truth).set_index("iauname")
rare = pd.read_csv(snakemake.input.rare_features).set_index("iauname")
knn = knn_majority_vote(pca10, truth.loc[names, "morph_class"].to_numpy(), params)
probe = ring_linear_probe(emb["representation"], rare.loc[names, "rare-features_ring_fraction"].to_numpy(), params)
table = summary_table(knn, probe)
log.info("\n%s", table.to_string(index=False))
write_csv(table, snakemake.output.table)
with atomic_path(snakemake.output.details) as tmp:
    Path(tmp).write_text(json.dumps({"knn": knn, "ring_probe": probe, "params": params.__dict__}, indent=1))
with atomic_path(snakemake.output.figure, suffix=".png") as tmp:
    representation_check_figure(knn, probe, tmp)
