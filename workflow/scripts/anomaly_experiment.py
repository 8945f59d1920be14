"""Adapter: one anomaly experiment's galaxies (ratings, labels) and features."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import pandas as pd  # noqa: E402

from morphtools.anomaly.experiment import ExperimentSpec, build_experiment_table  # noqa: E402
from morphtools.anomaly.io import read_ellipse_tables, write_experiment  # noqa: E402
from morphtools.embedding import read_embeddings  # noqa: E402
from morphtools.reduction import read_projection  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402

name = snakemake.wildcards.experiment
log = log_to(snakemake.log[0], f"anomaly_experiment.{name}")
spec = ExperimentSpec.from_config(name, snakemake.params.spec, snakemake.params.filter)
emb = read_embeddings(snakemake.input.representation, ("galaxy_id", "predicted_fractions"))
ids, cnn = read_projection(snakemake.input.pca, snakemake.params.pca_components)
if list(ids) != list(emb["galaxy_id"]):
    raise ValueError(f"{snakemake.input.pca} and {snakemake.input.representation} list different galaxies")
predicted = pd.DataFrame(emb["predicted_fractions"], columns=[str(a) for a in emb["attrs"]["answers"]])
predicted.insert(0, "galaxy_id", list(ids))
catalogue = pd.read_csv(snakemake.input.catalogue, dtype={"galaxy_id": str}, low_memory=False)
labels = pd.read_csv(snakemake.input.labels) if "labels" in snakemake.input.keys() else None
ellipse = read_ellipse_tables(snakemake.input.ellipse)
galaxies, summary = build_experiment_table(spec, catalogue, ids, ellipse, predicted, labels,
                                           snakemake.params.rating_scale)
row = pd.Series(range(len(ids)), index=list(ids))
cnn_rows = cnn[row.loc[galaxies["galaxy_id"]].to_numpy()]
ell_rows = ellipse.set_index("galaxy_id").loc[galaxies["galaxy_id"]].to_numpy(float)
summary["pca_components"] = int(cnn.shape[1])
write_experiment(galaxies, cnn_rows, ell_rows, summary, snakemake.output.galaxies, snakemake.output.features,
                 snakemake.output.summary)
log.info("%s", summary)
