"""Benchmark: the training views' cost (``pretraining.VoteBatches`` with augmentation),
one worker against several, measured in the same run, at the demo's sizes (stored 86 px,
crop 64) and the paper's (stored 300 px, crop 224).

A training step on a GPU takes milliseconds, so the numpy rotation of every view at
300 px decides how fast a GPU can be fed; on the 2-core CPU the step is ~0.4 s a batch of
32 and the views are not the bottleneck. Checks that the batches are identical for every
number of workers (they must be: the random choices are drawn before the views are
computed). Needs no Keras. Writes benchmarks/results/augment.json:

    .venv/bin/python benchmarks/bench_augment.py [--galaxies 256 --batch 32 --workers 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from morphtools.pretraining import ImageStore, VoteBatches


def synthetic_store(folder: Path, n: int, size: int, seed: int = 0) -> ImageStore:
    """A crops file of ``n`` smooth random (size, size) uint8 images, as the crops rule writes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    images = np.empty((n, size, size), np.uint8)
    for i in range(n):
        cx, cy, width = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.05, 0.2)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * width**2))
        images[i] = np.clip(255 * blob + rng.normal(0, 6, (size, size)), 0, 255).astype(np.uint8)
    path = folder / f"crops_{size}.h5"
    with h5py.File(path, "w") as f:
        f["images"] = images
        f["galaxy_id"] = np.array([f"g{i}" for i in range(n)], dtype="S")
    return ImageStore([path])


def time_views(store: ImageStore, crop: int, batch: int, workers: int, repeats: int = 3):
    """Best of ``repeats`` passes: training views per second, and the views themselves."""
    batches = VoteBatches(store, np.arange(len(store)), np.zeros((len(store), 1), np.float32), crop, batch, True,
                          seed=0, augment_workers=workers)
    best, views = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        views = [batches[i][0] for i in range(len(batches))]
        best = min(best, time.perf_counter() - start)
    return sum(len(v) for v in views) / best, views


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--galaxies", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--out", default="benchmarks/results/augment.json")
    args = parser.parse_args()
    result = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "load_average_1min_before": round(os.getloadavg()[0], 2), "galaxies": args.galaxies,
              "batch": args.batch, "sizes": {}}
    with tempfile.TemporaryDirectory() as folder:
        for stored, crop in ((86, 64), (300, 224)):
            store = synthetic_store(Path(folder), args.galaxies, stored)
            rates, reference, same = {}, None, True
            for workers in args.workers:
                rates[workers], views = time_views(store, crop, args.batch, workers)
                if reference is None:
                    reference = views
                else:
                    same &= all(np.array_equal(a, b) for a, b in zip(reference, views, strict=True))
            one = rates[args.workers[0]]
            result["sizes"][f"{stored}->{crop}"] = {
                "views_per_second": {str(w): round(r, 1) for w, r in rates.items()},
                "speedup_over_first": {str(w): round(r / one, 2) for w, r in rates.items()},
                "same_views_for_every_worker_count": bool(same)}
    result["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
