"""Benchmark: embedding and pretraining throughput, each beside its bare-model baseline
measured in the same run (this machine's speed varies, ratios travel better).

- embedding: ``embed_shard`` (read the HDF5 crops shard, centre crop, predict, vote
  fractions, write HDF5) against ``predict_on_batch`` on the same images already cropped
  in memory; the overhead of the pipeline is the ratio of the two.
- pretraining: ``train_one_epoch`` (HDF5 store, numpy augmentation in a prefetch thread,
  ``train_on_batch``) against ``train_on_batch`` on in-memory arrays.

Writes benchmarks/results/model_<backend>_<device>.json. Runs on whichever Keras backend
``KERAS_BACKEND`` selects (TensorFlow by default; JAX or torch on a GPU machine):

    .venv/bin/python benchmarks/bench_model.py [--galaxies 512 --crop 64 --resize 86]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from results_file import run_identity, write_result


def timed(fn, repeats=3):
    """Best wall time of ``repeats`` calls, in seconds (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--galaxies", type=int, default=512)
    parser.add_argument("--resize", type=int, default=86)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128, help="embedding batch size")
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--out-dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()


    from morphtools.embedding import embed_shard
    from morphtools.model import ModelSpec, build_model, compile_model, embedding_model
    from morphtools.pretraining import ImageStore, VoteBatches, centre_crop, model_input, train_one_epoch
    from morphtools.storage import write_crops_shard

    identity = run_identity()
    rng = np.random.default_rng(0)
    n = args.galaxies
    images = rng.integers(0, 256, (n, args.resize, args.resize), dtype=np.uint8)
    counts = rng.integers(0, 20, (n, 34)).astype(np.float32)
    spec = ModelSpec(crop_size=args.crop)
    model = compile_model(build_model(spec, seed=0), spec)
    embedder = embedding_model(model)

    with tempfile.TemporaryDirectory() as tmp:
        crops = Path(tmp) / "crops.h5"
        write_crops_shard(crops, [f"g{i}" for i in range(n)], images, np.zeros((n, 8, 8, 3), np.uint8),
                          {"resize_to": args.resize, "crop_to": args.crop})
        cropped = model_input(centre_crop(images, args.crop))

        def bare_embed():
            for s in range(0, n, args.batch):
                embedder.predict_on_batch(cropped[s:s + args.batch])

        def pipeline_embed():
            embed_shard(crops, embedder, spec, Path(tmp) / "emb.h5", {"model_sha256": "bench"}, args.batch)

        t_bare, t_pipe = timed(bare_embed), timed(pipeline_embed)

        store = ImageStore([crops], max_memory_bytes=0)  # streamed from HDF5, as at paper scale
        batches = VoteBatches(store, np.arange(n), counts, args.crop, args.train_batch, True, seed=0)
        arrays = [(model_input(centre_crop(images[s:s + args.train_batch], args.crop)), counts[s:s + args.train_batch])
                  for s in range(0, n, args.train_batch)]

        def bare_train():
            for x, y in arrays:
                model.train_on_batch(x, y)

        def pipeline_train():
            train_one_epoch(model, batches)

        t_bare_train, t_pipe_train = timed(bare_train, 2), timed(pipeline_train, 2)

    result = {
        **identity, "galaxies": n, "stored_px": args.resize, "crop_px": args.crop,
        "embedding": {
            "bare_model_galaxies_per_s": n / t_bare, "pipeline_galaxies_per_s": n / t_pipe,
            "pipeline_overhead_ratio": t_pipe / t_bare - 1.0, "batch_size": args.batch,
        },
        "pretraining": {
            "bare_train_on_batch_images_per_s": n / t_bare_train, "pipeline_images_per_s": n / t_pipe_train,
            "pipeline_overhead_ratio": t_pipe_train / t_bare_train - 1.0, "batch_size": args.train_batch,
        },
    }
    write_result(result, args.out_dir, "model")


if __name__ == "__main__":
    main()
