"""Adapter: incremental PCA of a survey's representation, projections and variance table."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from morphtools.reduction import explained_variance_table, fit_incremental_pca, write_projections  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import write_csv  # noqa: E402

log = log_to(snakemake.log[0], f"pca.{snakemake.wildcards.survey}")
dims = list(snakemake.params.components)
ipca = fit_incremental_pca(snakemake.input.representation, max(dims), snakemake.params.batch_size)
write_projections(snakemake.input.representation, snakemake.output.projections, ipca, dims,
                  snakemake.params.batch_size)
table = explained_variance_table(ipca, dims)
write_csv(table, snakemake.output.variance)
log.info("explained variance: %s", dict(zip(table["n_components"], table["explained_variance"].round(4), strict=True)))
