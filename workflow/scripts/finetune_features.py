"""Adapter: one initialisation's base representations of the labelled galaxies (centre
crops), cached for the frozen-base stage of every fine-tuning job."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import pandas as pd  # noqa: E402

from morphtools.finetune import base_representations, build_base, read_images, write_features  # noqa: E402
from morphtools.model import file_sha256, limit_cpu_threads, use_mixed_precision_if_gpu  # noqa: E402
from morphtools.progress import progress_counter  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402

init = snakemake.wildcards.init
log = log_to(snakemake.log[0], f"finetune_features.{init}")
limit_cpu_threads(snakemake.threads)
device = use_mixed_precision_if_gpu()
weights = snakemake.input.weights[0] if snakemake.input.weights else None
crop = snakemake.params.crop_to
base = build_base(init, crop, weights, seed=snakemake.params.seed, questions=snakemake.params.questions)
ids = pd.read_csv(snakemake.input.rings, dtype={"galaxy_id": str})["galaxy_id"].tolist()
log.info("%d labelled galaxies through the %s base (%s) on %s", len(ids), init, weights or "random weights", device)
features = base_representations(base, read_images(snakemake.input.crops, ids), crop,
                                snakemake.params.batch_size, progress=progress_counter)
write_features(snakemake.output.features, ids, features,
               {"initialisation": init, "weights_sha256": file_sha256(weights) if weights else "",
                "crop": crop, "seed": snakemake.params.seed})
