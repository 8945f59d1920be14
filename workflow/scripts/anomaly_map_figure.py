"""Adapter: 2-D maps of the ellipse and CNN features of one experiment (paper Fig. 4)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402

from morphtools.anomaly.figures import map_figure, project_2d  # noqa: E402
from morphtools.anomaly.io import read_experiment, read_run  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import atomic_path  # noqa: E402

log = log_to(snakemake.log[0], "anomaly_map_figure")
galaxies, features = read_experiment(snakemake.input.galaxies, snakemake.input.features)
is_anomaly = galaxies["is_anomaly"].to_numpy(bool)
p = snakemake.params
panels = []
for method, path in zip(p.methods, snakemake.input.runs, strict=True):
    run = read_run(path).set_index("galaxy_id").loc[galaxies["galaxy_id"]]
    kind = "ellipse" if method == "baseline" else "cnn"
    log.info("projecting the %s features of %d galaxies (%s)", kind, len(galaxies), p.projection)
    xy = project_2d(features[kind], p.projection, p.neighbours, p.seed)
    rated = run["order"].to_numpy() >= 0
    if method == "baseline":
        colour, title, label = run["anomaly_score"].to_numpy(), "ellipse features (Baseline)", "isolation forest score"
    else:
        colour, title, label = run["gp_mean"].to_numpy(), "CNN features (CNN + GP)", "GP mean interest"
    panels.append({"xy": xy, "colour": np.asarray(colour, float), "is_anomaly": is_anomaly, "rated": rated,
                   "title": title, "colour_label": label})
with atomic_path(snakemake.output.figure, suffix=".png") as tmp:
    map_figure(panels, tmp, title=f"{p.experiment}: {p.projection.upper()} maps, repeat 0 "
               f"({is_anomaly.sum()} anomalies red, rated galaxies black)")
