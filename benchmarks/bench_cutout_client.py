"""Benchmark: cutouts per second through the Legacy Survey client (request, FITS parse,
validation, atomic write) against the local stand-in, at several concurrency caps.

The stand-in answers after a fixed service latency (default 0.6 s per cutout: an assumed
figure for the real service, which documents none; set it with --latency) with cubes
rendered once beforehand, so the figures measure the client and the network wait, not
the renderer. Request sizes follow the GZ DECaLS field of view of simulated galaxies
that pass the paper's cuts. Writes benchmarks/results/cutout_client.json.

    .venv/bin/python benchmarks/bench_cutout_client.py [--galaxies 48] [--latency 0.6]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from morphtools.cutouts import cutout_request, fetch_shard
from morphtools.downloads import RetryPolicy
from morphtools.legacy_survey import LegacySurveyClient
from morphtools.simulation.population import sample_population
from morphtools.simulation.render import DECALS
from morphtools.simulation.sky import SimulatedSky, petrosian_radii
from morphtools.standins import StandinServer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--galaxies", type=int, default=48)
    parser.add_argument("--latency", type=float, default=0.6, help="the service's own seconds per cutout")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cutout_client.json"))
    args = parser.parse_args()

    pop = sample_population(args.galaxies * 3, seed=5)
    pop = pop[(pop["mag_r"] > 14) & (pop["mag_r"] < 17.77) & ~pop["no_coverage"]].head(args.galaxies)
    pop = pop.reset_index(drop=True)
    radii = np.array([petrosian_radii(row) for _, row in pop.iterrows()])
    pop["petro_th50"], pop["petro_th90"] = radii[:, 1], radii[:, 2]
    rows = pd.DataFrame({"galaxy_id": pop["iauname"], "ra": pop["ra"], "dec": pop["dec"],
                         "petro_th50": pop["petro_th50"], "petro_th90": pop["petro_th90"]})
    sizes = [cutout_request(*r).size for r in rows.itertuples(index=False)]

    results = []
    with StandinServer(SimulatedSky(pop, DECALS), latency_s=0.0, cache_cubes=True) as server, \
            tempfile.TemporaryDirectory() as tmp:
        client = LegacySurveyClient(server.cutout_url, "ls-dr10", "grz", RetryPolicy(timeout_s=30))
        fetch_shard(rows, client, Path(tmp) / "warm", concurrency=4)  # renders every cube once, untimed
        server.latency_s = args.latency
        for cap in args.concurrency:
            server.reset_log()
            cache = Path(tmp) / f"c{cap}"
            t0 = time.perf_counter()
            manifest = fetch_shard(rows, client, cache, concurrency=cap)
            seconds = time.perf_counter() - t0
            assert set(manifest["status"]) == {"fetched"}, manifest["status"].value_counts()
            results.append({"concurrency": cap, "seconds": round(seconds, 2),
                            "cutouts_per_s": round(len(rows) / seconds, 2),
                            "ideal_cutouts_per_s": round(cap / args.latency, 2),
                            "max_in_flight_at_server": server.max_in_flight})
            print(results[-1], flush=True)

    result = {
        "machine": {"processor": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
        "galaxies": len(rows),
        "service_latency_s": args.latency,
        "median_cutout_pixels": int(np.median(sizes)),
        "median_fits_megabytes": round(3 * int(np.median(sizes)) ** 2 * 4 / 1e6, 2),
        "results": results,
        "note": "ideal = concurrency / latency; below it, the client's own work (FITS parse, validation, "
                "write) and the stand-in's serialisation share this machine's cores",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
