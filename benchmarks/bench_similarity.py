"""Benchmark: exact similarity search at the paper's catalogue size (305,657 galaxies).

Random float32 vectors stand in for the representation (the search's cost does not depend
on the values), with random sky positions so that dropping duplicates within 100" is paid
for as in real use. Measures, for k = 50 neighbours (the paper's anchor: about an hour for
50 neighbours in 1280-d on a laptop, seconds in 10-d):

- one query by galaxy, in 10-d (PCA-10) and 1280-d (the full representation), Manhattan
  and Euclidean: median of several queries after one warm-up;
- 1,000 queries in one batched call in 10-d, and in 1280-d for Euclidean (matrix products);
  Manhattan in 1280-d has no such shortcut, so a smaller batch is timed and the per-query
  time given;
- wall and CPU time: on a shared machine the wall time includes waiting for a core (the
  load average is recorded); the process's CPU time (summed over threads: the matrix
  products may use several) is not inflated by waiting;
- peak memory: Python-traced allocations during the search (numpy reports to tracemalloc)
  beside the stored vectors, and the process's peak resident memory;
- a check that the 1280-d answer equals a float64 brute-force sort.

Writes benchmarks/results/similarity.json.

    .venv/bin/python benchmarks/bench_similarity.py [--galaxies 305657] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy.spatial.distance import cdist

from morphtools.similarity import SimilarityIndex

K = 50


def timed_search(index: SimilarityIndex, rows, metric: str) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of this process, peak traced MB) of one neighbours() call.
    On a shared machine the wall time includes waiting for a core; the CPU time does not."""
    tracemalloc.reset_peak()
    start_traced = tracemalloc.get_traced_memory()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    index.neighbours(rows, K, metric)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return seconds, cpu, (tracemalloc.get_traced_memory()[1] - start_traced) / 1e6


def single_queries(index, rng, metric, repeats) -> dict:
    index.neighbours([0], K, metric)  # warm-up: builds the sky tree and, for Euclidean, the norms
    runs = [timed_search(index, [int(rng.integers(len(index)))], metric) for _ in range(repeats)]
    seconds = [s for s, _, _ in runs]
    return {"median_s": float(np.median(seconds)), "min_s": float(min(seconds)), "max_s": float(max(seconds)),
            "median_cpu_s": float(np.median([c for _, c, _ in runs])), "repeats": repeats,
            "peak_search_memory_mb": max(m for _, _, m in runs)}


def batch_queries(index, rng, metric, n_queries) -> dict:
    rows = rng.choice(len(index), n_queries, replace=False)
    seconds, cpu, memory = timed_search(index, rows, metric)
    return {"queries": n_queries, "total_s": seconds, "per_query_ms": 1000 * seconds / n_queries,
            "total_cpu_s": cpu, "per_query_cpu_ms": 1000 * cpu / n_queries, "peak_search_memory_mb": memory}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--galaxies", type=int, default=305_657)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--manhattan-wide-batch", type=int, default=20,
                        help="queries in the 1280-d Manhattan batch (each scans 1.6 GB)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "similarity.json"))
    args = parser.parse_args()

    rng = np.random.default_rng(2022)
    n = args.galaxies
    ids = np.array([f"g{i:06d}" for i in range(n)], dtype=object)
    # the DECaLS DR5 footprint's rough extent; uniform on the sphere within it
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-20)), np.sin(np.radians(35)), n)))
    load_before = os.getloadavg()
    tracemalloc.start()
    result = {
        "galaxies": n, "k": K, "exact": True,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                    "processor": platform.processor() or platform.machine(),
                    "load_average_1_5_15_min_at_start": [round(x, 2) for x in load_before]},
        "paper_anchor": "about 1 h for 50 neighbours in 1280-d on a laptop; seconds in 10-d (W+22 sec. 2.4)",
    }
    for dims in (10, 1280):
        t0 = time.perf_counter()
        vectors = rng.standard_normal((n, dims), dtype=np.float32)
        index = SimilarityIndex(ids, vectors, ra, dec, space=f"random_{dims}d")
        entry = {"stored_vectors_mb": vectors.nbytes / 1e6, "setup_s": time.perf_counter() - t0}
        for metric in ("manhattan", "euclidean"):
            entry[f"single_{metric}"] = single_queries(index, rng, metric, args.repeats)
            batch = args.manhattan_wide_batch if (dims > 64 and metric == "manhattan") else args.batch
            entry[f"batch_{metric}"] = batch_queries(index, rng, metric, batch)
            print(dims, metric, entry[f"single_{metric}"]["median_s"], entry[f"batch_{metric}"]["total_s"], flush=True)
        if dims == 1280:
            # the answer equals a float64 brute-force sort (duplicates within 100" removed)
            query = int(rng.integers(n))
            found = index.neighbours([query], K, "manhattan").rows[0]
            distances = np.concatenate([  # in blocks: a float64 copy of everything would be 3 GB
                cdist(vectors[query][None].astype(np.float64), vectors[s:s + 20000].astype(np.float64), "cityblock")[0]
                for s in range(0, n, 20000)])
            distances[index.sky_neighbourhood([query], 100.0)[0]] = np.inf
            reference = np.lexsort((np.arange(n), distances))[:K]
            entry["matches_brute_force"] = bool(np.array_equal(found, reference))
        result[f"{dims}d"] = entry
        del index, vectors
    result["peak_process_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["load_average_1_5_15_min_at_end"] = [round(x, 2) for x in os.getloadavg()]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
