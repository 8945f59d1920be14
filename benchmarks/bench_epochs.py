"""Benchmark: the real training loops, epoch by epoch, beside a bare ``train_on_batch`` loop
over the same number of batches of the same shape, measured in the same run.

``bench_model.py`` and ``bench_finetune.py`` time the training step itself; this times what
a pretraining or fine-tuning job pays per epoch around it: dropout reseeding, the
augmentation thread, the precise-BatchNorm pass, validation and checkpoint writes (each
epoch's ``epoch_seconds`` in the training history), and once per job the first epoch's
tracing of the compiled step. A cost of the real loop that the bare loop does not pay (as
the 8 s per epoch that ``keras.utils.set_random_seed`` once cost) shows as a ratio above 1.

- pretraining: ``pretraining.pretrain`` on a synthetic store (stored 86 px, crop 64) for a
  few epochs; steady epochs (all but the first) against the bare loop;
- fine-tuning: ``finetune.finetune`` at depth 'top' and 'all', the head trained through
  the frozen base on images (``head_from='images'``) so that both stages run the base;
  each stage's steady epochs against a bare loop of that stage's trainable set.

Writes benchmarks/results/epochs_<backend>_<device>.json:

    .venv/bin/python benchmarks/bench_epochs.py [--galaxies 1024 --epochs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from results_file import run_identity, write_result


def bare_epoch_seconds(model, x: np.ndarray, y: np.ndarray, steps: int, warmup: int = 2) -> float:
    """Wall seconds of ``steps`` calls of ``train_on_batch`` on one in-memory batch, after
    ``warmup`` calls (which trace the step)."""
    for _ in range(warmup):
        model.train_on_batch(x, y)
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return time.perf_counter() - t0


def summarise(history, bare_seconds: float) -> dict:
    """First and steady (mean of the later) epochs of a history with ``seconds`` and
    ``epoch_seconds`` columns, and their ratios to the bare loop's epoch."""
    steady = history.iloc[1:]
    out = {
        "epochs": len(history),
        "first_epoch_seconds": float(history["epoch_seconds"].iloc[0]),
        "steady_epoch_seconds": float(steady["epoch_seconds"].mean()),
        "steady_training_seconds": float(steady["seconds"].mean()),
        "bare_loop_epoch_seconds": bare_seconds,
    }
    out["steady_epoch_over_bare"] = out["steady_epoch_seconds"] / bare_seconds
    out["steady_training_over_bare"] = out["steady_training_seconds"] / bare_seconds
    # once per job: tracing and first-call costs of the compiled functions
    out["first_epoch_extra_seconds"] = out["first_epoch_seconds"] - out["steady_epoch_seconds"]
    if "batchnorm_seconds" in history:
        out["steady_batchnorm_seconds"] = float(steady["batchnorm_seconds"].mean())
    return out


def bench_pretraining(tmp: Path, n: int, resize: int, crop: int, batch: int, epochs: int, bn_galaxies: int) -> dict:
    from morphtools.model import ModelSpec, build_model, compile_model
    from morphtools.pretraining import ImageStore, TrainingParams, model_input, pretrain
    from morphtools.storage import write_crops_shard

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, resize, resize), dtype=np.uint8)
    counts = rng.integers(0, 20, (n, 34)).astype(np.float32)
    shard = tmp / "crops.h5"
    write_crops_shard(shard, [f"g{i}" for i in range(n)], images, np.zeros((n, 8, 8, 3), np.uint8),
                      {"resize_to": resize, "crop_to": crop})
    spec = ModelSpec(crop_size=crop)
    params = TrainingParams(epochs=epochs, batch_size=batch, validation_fraction=0.1, seed=3,
                            batchnorm_galaxies=bn_galaxies)
    t0 = time.perf_counter()
    _, history = pretrain(ImageStore([shard]), counts, spec, params, tmp / "pretrain_checkpoint")
    job_seconds = time.perf_counter() - t0
    steps = int(round(history["images_per_second"].iloc[-1] * history["seconds"].iloc[-1])) // batch
    bare = compile_model(build_model(spec, seed=3), spec)
    x = model_input(images[:batch, :crop, :crop])
    bare_seconds = bare_epoch_seconds(bare, x, counts[:batch], steps)
    return {"galaxies": n, "batch_size": batch, "steps_per_epoch": steps, "batchnorm_galaxies": bn_galaxies,
            "job_seconds": job_seconds, **summarise(history, bare_seconds)}


def bench_finetuning(tmp: Path, n: int, train_size: int, resize: int, crop: int, batch: int, epochs: int) -> dict:
    import pandas as pd

    from morphtools.finetune import (
        FinetuneData,
        FinetuneParams,
        SplitRules,
        build_base,
        build_finetune_model,
        build_head,
        finetune,
        make_split,
        set_unfrozen_depth,
    )
    from morphtools.model import REPRESENTATION_DIM, compile_with_adam
    from morphtools.pretraining import model_input

    rng = np.random.default_rng(1)
    n_rings = n // 10
    labelled = pd.DataFrame({"galaxy_id": [f"R{i}" for i in range(n_rings)] + [f"N{i}" for i in range(n - n_rings)],
                             "label": [1] * n_rings + [0] * (n - n_rings)})
    split = make_split(labelled, train_size, seed=1, rules=SplitRules())
    images = rng.integers(0, 256, (len(split), resize, resize), dtype=np.uint8)
    features = rng.normal(size=(len(split), REPRESENTATION_DIM)).astype(np.float32)
    params = FinetuneParams(epochs_cap=epochs, head_epochs_cap=epochs, batch_size=batch)
    x = model_input(images[:batch, :crop, :crop])
    y = rng.integers(0, 2, (batch, 1)).astype(np.float32)
    out = {"train_size": int((split["split"] == "train").sum()), "batch_size": batch}
    for depth in ("top", "all"):
        t0 = time.perf_counter()
        metrics, history = finetune(FinetuneData(split, features, images), build_base("scratch", crop, seed=2), depth,
                                    params, crop, seed=5, checkpoint_dir=tmp / f"finetune_{depth}",
                                    head_from="images")
        job_seconds = time.perf_counter() - t0
        steps = -(-metrics["train_size"] // batch)
        stages = {}
        for stage, stage_depth in (("head", "frozen"), ("finetune", depth)):
            base = build_base("scratch", crop, seed=2)
            model = build_finetune_model(base, build_head(5, params.dropout))
            set_unfrozen_depth(base, stage_depth)
            compile_with_adam(model, 1e-3, "binary_crossentropy")
            stage_history = history[history["stage"] == stage].reset_index(drop=True)
            stages[stage] = summarise(stage_history, bare_epoch_seconds(model, x, y, steps))
        out[depth] = {"job_seconds": job_seconds, "steps_per_epoch": steps, **stages}
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--galaxies", type=int, default=1024, help="pretraining galaxies (10%% validate)")
    parser.add_argument("--ring-pool", type=int, default=800, help="fine-tuning: labelled galaxies, a tenth rings")
    parser.add_argument("--train-size", type=int, default=159, help="fine-tuning: training galaxies (the demo's)")
    parser.add_argument("--resize", type=int, default=86)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32, help="pretraining batch")
    parser.add_argument("--finetune-batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batchnorm-galaxies", type=int, default=1024)
    parser.add_argument("--out-dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()

    identity = run_identity()
    with tempfile.TemporaryDirectory() as tmp:
        pretraining = bench_pretraining(Path(tmp), args.galaxies, args.resize, args.crop, args.batch, args.epochs,
                                        args.batchnorm_galaxies)
        finetuning = bench_finetuning(Path(tmp), args.ring_pool, args.train_size, args.resize, args.crop,
                                      args.finetune_batch, args.epochs)
    result = {**identity, "stored_px": args.resize, "crop_px": args.crop, "pretraining": pretraining,
              "finetuning": finetuning}
    write_result(result, args.out_dir, "epochs")


if __name__ == "__main__":
    main()
