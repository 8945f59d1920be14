"""Benchmark: fine-tuning throughput, and whether the frozen-base head may be trained from
cached representations.

1. Throughput (synthetic images, this machine): training images per second of the head on
   cached 1280-d representations, of the head through the frozen base on augmented images,
   and of the base unfrozen to 'all'; ratios against the frozen-base-through-images stage
   measured in the same run.
2. Cached vs images (needs a workflow results folder with the ring data set, the cached
   'multi' representations, the crops and the multi weights): the frozen-base model trained
   both ways on the same splits; test accuracy and loss of each, and their paired
   difference.

Writes benchmarks/results/finetune_<backend>_<device>.json:

    .venv/bin/python benchmarks/bench_finetune.py [--results results --sizes 58 159 438 --repeats 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from results_file import run_identity, write_result


def throughput(crop: int, resize: int, n: int, batch: int) -> dict:
    from morphtools.finetune import build_base, build_finetune_model, build_head, set_unfrozen_depth
    from morphtools.model import compile_with_adam
    from morphtools.pretraining import augment, model_input

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, resize, resize), dtype=np.uint8)
    y = rng.integers(0, 2, (n, 1)).astype(np.float32)
    features = rng.normal(size=(n, 1280)).astype(np.float32)
    base, head = build_base("scratch", crop), build_head()
    model = build_finetune_model(base, head)

    def epoch_images():
        aug = np.random.default_rng(1)
        for s in range(0, n, batch):
            x = model_input(np.stack([augment(im, crop, aug) for im in images[s:s + batch]]))
            model.train_on_batch(x, y[s:s + batch])

    def epoch_features():
        for s in range(0, n, batch):
            head.train_on_batch(features[s:s + batch], y[s:s + batch])

    out = {}
    for name, depth, fn, target in (("head_from_features", None, epoch_features, head),
                                    ("head_through_frozen_base", "frozen", epoch_images, model),
                                    ("unfrozen_all", "all", epoch_images, model)):
        if depth:
            set_unfrozen_depth(base, depth)
        compile_with_adam(target, 1e-4, "binary_crossentropy")  # as finetune() compiles
        fn()  # warm-up: traces the step
        t0 = time.perf_counter()
        fn()
        out[name] = {"images_per_s": n / (time.perf_counter() - t0)}
    baseline = out["head_through_frozen_base"]["images_per_s"]
    for v in out.values():
        v["ratio_to_frozen_base_through_images"] = v["images_per_s"] / baseline
    return out


def cached_vs_images(results: Path, sizes, repeats: int, epochs_cap: int, batch: int, crop: int, seed: int) -> dict:
    import pandas as pd

    from morphtools.finetune import (
        FinetuneData,
        FinetuneParams,
        build_base,
        finetune,
        make_split,
        read_features,
        read_images,
        split_seed,
    )

    rings = pd.read_csv(results / "finetune/rings.csv", dtype={"galaxy_id": str})
    crops = sorted((results / "decals/crops").glob("shard_*.h5"))
    weights = results / "models/multi/model.weights.h5"
    # the same epoch limit and patience for both routes, so that only the route differs
    params = FinetuneParams(epochs_cap=epochs_cap, head_epochs_cap=epochs_cap, batch_size=batch)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            for repeat in range(repeats):
                split = make_split(rings, size, split_seed(seed, size, repeat))
                ids = split["galaxy_id"].tolist()
                data = FinetuneData(split, read_features(results / "finetune/features/multi.h5", ids),
                                    read_images(crops, ids))
                row = {"train_size": size, "repeat": repeat}
                for route in ("features", "images"):
                    base = build_base("multi", crop, weights, seed=seed, questions=_all_questions())
                    t0 = time.perf_counter()
                    metrics, _ = finetune(data, base, "frozen", params, crop, seed % 2**31 + repeat,
                                          Path(tmp) / f"{size}_{repeat}_{route}", head_from=route)
                    row[f"{route}_test_accuracy"] = metrics["test_accuracy"]
                    row[f"{route}_test_loss"] = metrics["test_loss"]
                    row[f"{route}_seconds"] = time.perf_counter() - t0
                rows.append(row)
                print(row, flush=True)
    table = pd.DataFrame(rows)
    diff = table["features_test_accuracy"] - table["images_test_accuracy"]
    return {"runs": rows, "mean_accuracy_difference_features_minus_images": float(diff.mean()),
            "std_accuracy_difference": float(diff.std(ddof=1)) if len(diff) > 1 else None,
            "speedup_features_over_images": float(table["images_seconds"].sum() / table["features_seconds"].sum()),
            "test_set_galaxies": int(split.query("split == 'test'").shape[0])}


def _all_questions():
    from morphtools.decision_tree import DECALS_DR5

    return tuple(q.name for q in DECALS_DR5)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--resize", type=int, default=86)
    parser.add_argument("--galaxies", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--results", default="results", help="workflow results folder for part 2")
    parser.add_argument("--sizes", type=int, nargs="+", default=[58, 159, 438])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs-cap", type=int, default=30)
    parser.add_argument("--seed", type=int, default=20220301)
    parser.add_argument("--out-dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()

    result = {**run_identity(), "crop_px": args.crop, "stored_px": args.resize, "batch_size": args.batch,
              "throughput": throughput(args.crop, args.resize, args.galaxies, args.batch)}
    print(json.dumps(result["throughput"], indent=1), flush=True)
    results = Path(args.results)
    if (results / "finetune/features/multi.h5").exists():
        result["cached_vs_images"] = cached_vs_images(results, args.sizes, args.repeats, args.epochs_cap,
                                                      args.batch, args.crop, args.seed)
    else:
        result["cached_vs_images"] = f"skipped: no {results}/finetune/features/multi.h5 (run the workflow first)"
    write_result(result, args.out_dir, "finetune", quiet_keys=("cached_vs_images",))


if __name__ == "__main__":
    main()
