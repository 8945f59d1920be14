"""Adapter: one fine-tuning job: split, frozen-base head, unfrozen layers, test metrics."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import json  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402

import pandas as pd  # noqa: E402

from morphtools.finetune import (  # noqa: E402
    FinetuneData,
    FinetuneParams,
    SplitRules,
    build_base,
    finetune,
    make_split,
    read_features,
    read_images,
    split_seed,
)
from morphtools.model import limit_cpu_threads, use_mixed_precision_if_gpu  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import atomic_path, write_csv  # noqa: E402

w = snakemake.wildcards
init, depth, size, repeat = w.init, w.depth, int(w.size), int(w.repeat)
log = log_to(snakemake.log[0], f"finetune.{init}.{depth}.n{size}.repeat_{repeat}")
limit_cpu_threads(snakemake.threads)
device = use_mixed_precision_if_gpu()
started = time.perf_counter()
rings = pd.read_csv(snakemake.input.rings, dtype={"galaxy_id": str})
seed = split_seed(snakemake.params.seed, size, repeat)
split = make_split(rings, size, seed, SplitRules(**snakemake.params.split))
ids = split["galaxy_id"].tolist()
features = read_features(snakemake.input.features, ids)
crop = snakemake.params.crop_to
images, base = None, None
if depth != "frozen":
    images = read_images(snakemake.input.crops, ids)
    weights = snakemake.input.weights[0] if snakemake.input.weights else None
    base = build_base(init, crop, weights, seed=snakemake.params.seed, questions=snakemake.params.questions)
params = FinetuneParams(**snakemake.params.training)
log.info("%s, unfrozen to %s, %d training rows (%d rings), split seed %d, device %s", init, depth, size,
         int(split.query("split == 'train'")["label"].sum()), seed, device)


def progress(epoch, max_epochs, val_loss):
    log.info("epoch %d/%d: validation loss %.4f", epoch, max_epochs, val_loss)


metrics, history = finetune(FinetuneData(split, features, images), base, depth, params, crop, seed % 2**31,
                            snakemake.params.checkpoint_dir, progress=progress, logger=log)
result = {"initialisation": init, "depth": depth, "target_train_size": size, "repeat": repeat,
          "split_seed": seed, "device": device, "seconds": time.perf_counter() - started, **metrics}
write_csv(split, snakemake.output.split)
write_csv(history, snakemake.output.history)
with atomic_path(snakemake.output.result) as tmp:
    Path(tmp).write_text(json.dumps(result, indent=1))
shutil.rmtree(snakemake.params.checkpoint_dir, ignore_errors=True)
log.info("test accuracy %.3f (frozen base %.3f), test loss %.4f", metrics["test_accuracy"],
         metrics["frozen_test_accuracy"], metrics["test_loss"])
