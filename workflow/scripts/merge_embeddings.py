"""Adapter: per-shard embeddings -> one chunked HDF5 per survey."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from morphtools.embedding import merge_embeddings  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402

log = log_to(snakemake.log[0], f"merge_embeddings.{snakemake.wildcards.survey}")
n = merge_embeddings(snakemake.input.shards, snakemake.output.merged)
log.info("merged %d galaxies from %d shards into %s", n, len(snakemake.input.shards), snakemake.output.merged)
