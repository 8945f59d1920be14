"""Adapter: random picks from the CNN + GP top of each experiment (paper Fig. 6)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402

from morphtools.anomaly.figures import top_figure  # noqa: E402
from morphtools.anomaly.io import read_galaxies, read_run  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import atomic_path, read_crops_shard  # noqa: E402

log = log_to(snakemake.log[0], "anomaly_top_figure")
p = snakemake.params
thumbs = {}
for path in snakemake.input.crops:
    survey = Path(path).parent.parent.name
    ids, _, thumbnails, _ = read_crops_shard(path)
    for gid, t in zip(ids, thumbnails, strict=True):
        thumbs[(survey, str(gid))] = t
rng = np.random.default_rng(p.seed)
rows = []
for experiment, galaxies_path, run_path in zip(p.experiments, snakemake.input.galaxies, snakemake.input.runs,
                                               strict=True):
    galaxies = read_galaxies(galaxies_path).set_index("galaxy_id")
    run = read_run(run_path).sort_values("score", ascending=False, kind="stable")
    top = run["galaxy_id"].to_numpy()[: p.top_pool]
    picks = rng.choice(top, size=min(p.examples, len(top)), replace=False)
    survey = p.surveys[experiment]
    rows.append({
        "name": experiment,
        "thumbnails": [thumbs[(survey, g)] for g in picks],
        "captions": [f"f={galaxies.loc[g, 'fraction']:.2f}" for g in picks],
        "is_anomaly": [bool(galaxies.loc[g, "is_anomaly"]) for g in picks],
    })
    log.info("%s: %d of the %d picks are anomalies", experiment, sum(rows[-1]["is_anomaly"]), len(picks))
with atomic_path(snakemake.output.figure, suffix=".png") as tmp:
    top_figure(rows, tmp, title=f"Random picks from the CNN + GP top {p.top_pool} (repeat 0); green frame: "
               "anomaly; f: vote fraction")
