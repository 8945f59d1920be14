"""Adapter: one crops shard -> representations and predicted vote fractions (HDF5)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from morphtools.embedding import embed_shard  # noqa: E402
from morphtools.model import (  # noqa: E402
    limit_cpu_threads,
    ModelSpec,
    embedding_model,
    file_sha256,
    load_trained,
    use_mixed_precision_if_gpu,
)
from morphtools.progress import progress_counter  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402

survey, shard = snakemake.wildcards.survey, int(snakemake.wildcards.shard)
log = log_to(snakemake.log[0], f"embed.{survey}.shard_{shard}")
limit_cpu_threads(snakemake.threads)
device = use_mixed_precision_if_gpu()
spec = ModelSpec(crop_size=snakemake.params.crop_to, questions=tuple(snakemake.params.questions),
                 dropout=snakemake.params.dropout)
model = load_trained(snakemake.input.weights, spec)
identity = {"model_variant": snakemake.params.model, "model_sha256": file_sha256(snakemake.input.weights),
            "model_file": str(snakemake.input.weights), "survey": survey, "shard": shard}
log.info("%s shard %d with model %s (%s) on %s", survey, shard, snakemake.params.model,
         identity["model_sha256"][:12], device)
embed_shard(snakemake.input.crops, embedding_model(model), spec, snakemake.output.embeddings, identity,
            batch_size=snakemake.params.batch_size, progress=progress_counter, logger=log)
