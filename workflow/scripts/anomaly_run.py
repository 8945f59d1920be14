"""Adapter: one {experiment} x {method} x {repeat} run of an anomaly-finding method."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import time  # noqa: E402

from threadpoolctl import threadpool_limits  # noqa: E402

from morphtools.anomaly.io import read_experiment, write_run  # noqa: E402
from morphtools.anomaly.methods import METHOD_FEATURES, ActiveParams, run_method  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402

w = snakemake.wildcards
log = log_to(snakemake.log[0], f"anomaly_run.{w.experiment}.{w.method}.{w.repeat}")
cfg = snakemake.params.anomaly
params = ActiveParams(n_ratings=cfg["ratings"], first_batch=cfg["first_batch"], batch_size=cfg["batch_size"],
                      tradeoff=cfg["tradeoff"], normalize_y=cfg["normalize_y"], isolation_trees=cfg["isolation_trees"],
                      forest_trees=cfg["forest_trees"], neighbour_alpha=cfg["neighbour_alpha"],
                      rating_scale=cfg["rating_scale"], rated_ranking=cfg["rated_ranking"])
galaxies, features = read_experiment(snakemake.input.galaxies, snakemake.input.features)
kind = METHOD_FEATURES[w.method]
start = time.perf_counter()
# BLAS at the job's threads: a 200 x 200 GP refit is ~10x slower with threads fighting for
# a busy machine's cores than on one
with threadpool_limits(limits=snakemake.threads):
    result = run_method(w.method, features[kind] if kind else None, galaxies["rating"].to_numpy(), params,
                        snakemake.params.seed, log=log, is_anomaly=galaxies["is_anomaly"].to_numpy(bool))
info = {"experiment": w.experiment, "method": w.method, "repeat": int(w.repeat), "seed": snakemake.params.seed,
        "features": kind, "seconds": round(time.perf_counter() - start, 3), "params": params.__dict__}
write_run(galaxies["galaxy_id"].to_numpy(), result, snakemake.output.run, info, snakemake.output.info)
log.info("%s %s repeat %s: %d rated (%d rated 5) in %.1f s", w.experiment, w.method, w.repeat, len(result.acquired),
         (result.ratings == params.rating_scale).sum(), info["seconds"])
