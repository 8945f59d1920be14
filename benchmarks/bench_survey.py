"""Benchmark: simulated-survey render speed and preprocessing throughput per core.

Writes benchmarks/results/survey.json. Single process (one core); figures are galaxies per
second, and the preprocessing figure is also given as a ratio to rendering measured in the
same run, since this machine's speed varies.

    .venv/bin/python benchmarks/bench_survey.py [--galaxies 300]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from morphtools.cutouts import cutout_request, write_fits_atomic
from morphtools.preprocessing import PreprocessingParams, image_to_crop
from morphtools.simulation.population import sample_population
from morphtools.simulation.render import DECALS, render
from morphtools.simulation.sky import petrosian_radii
from morphtools.simulation.survey import render_gz2_jpeg


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--galaxies", type=int, default=300)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "survey.json"))
    args = parser.parse_args()

    pop = sample_population(args.galaxies * 2, seed=99)
    usable = (pop["mag_r"] > 14) & (pop["mag_r"] < 17.77) & ~pop["no_coverage"]
    pop = pop[usable].head(args.galaxies).reset_index(drop=True)
    radii = np.array([petrosian_radii(r) for _, r in pop.iterrows()])
    requests = [cutout_request(r.iauname, r.ra, r.dec, radii[i, 1], radii[i, 2]) for i, r in pop.iterrows()]
    params = PreprocessingParams()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        by_class: dict[str, list[float]] = {}
        for (_, row), req in zip(pop.iterrows(), requests, strict=True):
            t = time.perf_counter()
            cube = render(row, DECALS, req.size, req.pixscale)
            by_class.setdefault(row["morph_class"], []).append(time.perf_counter() - t)
            write_fits_atomic(tmp / f"{row.iauname}.fits", cube, req)
        render_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        for row in pop.itertuples():
            image_to_crop(str(tmp / f"{row.iauname}.fits"), "fits", params)
        preprocess_s = time.perf_counter() - t0

        gz2 = pop.head(max(20, args.galaxies // 3)).copy()
        gz2["petro_r90"] = radii[: len(gz2), 2]
        t0 = time.perf_counter()
        for i, row in gz2.iterrows():
            render_gz2_jpeg(row, tmp / f"gz2_{i}.jpg")
        gz2_render_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in gz2.index:
            image_to_crop(str(tmp / f"gz2_{i}.jpg"), "jpeg", params)
        gz2_preprocess_s = time.perf_counter() - t0

    n = len(pop)
    result = {
        "machine": {"processor": platform.processor() or platform.machine(), "python": platform.python_version()},
        "galaxies": n,
        "median_cutout_pixels": int(np.median([r.size for r in requests])),
        "decals_render_galaxies_per_s": n / render_s,
        "decals_render_ms_by_class": {k: 1000 * float(np.mean(v)) for k, v in sorted(by_class.items())},
        "decals_preprocess_galaxies_per_s_per_core": n / preprocess_s,
        "preprocess_to_render_speed_ratio": render_s / preprocess_s,
        "gz2_render_galaxies_per_s": len(gz2) / gz2_render_s,
        "gz2_preprocess_galaxies_per_s_per_core": len(gz2) / gz2_preprocess_s,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
