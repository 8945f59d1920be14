"""Adapter: one shard's images -> greyscale crops (HDF5) and its QA table."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import pandas as pd  # noqa: E402

from morphtools.preprocessing import PreprocessingParams, preprocess_shard  # noqa: E402
from morphtools.progress import progress_bar  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import write_crops_shard, write_csv  # noqa: E402

survey, shard = snakemake.wildcards.survey, int(snakemake.wildcards.shard)
log = log_to(snakemake.log[0], f"preprocess.{survey}.shard_{shard}")
params = PreprocessingParams(**snakemake.params.preprocessing)
manifest = pd.read_csv(snakemake.input.manifest, dtype={"galaxy_id": str}, keep_default_na=False)
ids, crops, thumbs, qa = preprocess_shard(
    manifest, params, snakemake.params.image_format, snakemake.params.bands,
    snakemake.params.max_blank_fraction, progress=progress_bar(f"preprocess {survey} shard {shard}"), log=log,
)
attrs = params.as_attrs() | {"survey": survey, "shard": shard, "image_format": snakemake.params.image_format}
write_crops_shard(snakemake.output.crops, ids, crops, thumbs, attrs)
write_csv(qa, snakemake.output.qa)
log.info("%s shard %d: %d crops, %d rejected", survey, shard, len(ids), (qa["status"] != "ok").sum())
