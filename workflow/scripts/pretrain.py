"""Adapter: pretrain one model variant on the DECaLS crops and vote counts."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import pandas as pd  # noqa: E402

from morphtools.model import ModelSpec, limit_cpu_threads, use_mixed_precision_if_gpu  # noqa: E402
from morphtools.pretraining import ImageStore, TrainingParams, pretrain, vote_counts  # noqa: E402
from morphtools.progress import progress_counter  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import atomic_path, write_csv  # noqa: E402

variant = snakemake.wildcards.variant
log = log_to(snakemake.log[0], f"pretrain.{variant}")
cfg = snakemake.params.training
limit_cpu_threads(snakemake.threads)
device = use_mixed_precision_if_gpu()
log.info("variant %s answers %s; device %s", variant, snakemake.params.questions, device)
spec = ModelSpec(crop_size=snakemake.params.crop_to, questions=tuple(snakemake.params.questions),
                 dropout=cfg["dropout"])
params = TrainingParams(epochs=cfg["epochs"], batch_size=cfg["batch_size"], learning_rate=cfg["learning_rate"],
                        patience=cfg["patience"], validation_fraction=cfg["validation_fraction"],
                        seed=snakemake.params.seed, batchnorm_galaxies=cfg["batchnorm_galaxies"])
store = ImageStore(snakemake.input.crops, max_memory_bytes=int(cfg["max_memory_gb"] * 2**30))
catalogue = pd.read_csv(snakemake.input.catalogue, dtype={"galaxy_id": str})
counts = vote_counts(catalogue, store.galaxy_ids, spec)
# On a GPU the job's CPU threads are free to compute the augmented views (the same views
# for any number of workers); on a CPU the training step already uses them all.
augment_workers = snakemake.threads if device == "gpu" else 1
# pretraining.initial_weights: start from another model's weights (e.g. one trained at a smaller crop)
initial_weights = snakemake.input.get("initial_weights") or None
model, history = pretrain(store, counts, spec, params, snakemake.params.checkpoint_dir,
                          progress=progress_counter, logger=log, augment_workers=augment_workers,
                          initial_weights=initial_weights)
with atomic_path(snakemake.output.weights, suffix=".part.weights.h5") as tmp:
    model.save_weights(tmp)
write_csv(history, snakemake.output.history)
log.info("wrote %s (best validation loss %.4f)", snakemake.output.weights, history["val_loss"].min())
