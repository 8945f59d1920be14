"""Adapter: RWS and accuracy against N for one survey's experiments (paper Figs 3 and 5)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import pandas as pd  # noqa: E402

from morphtools.anomaly.figures import curves_figure  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import atomic_path  # noqa: E402

log = log_to(snakemake.log[0], "anomaly_curves_figure")
experiments = snakemake.params.experiments
curves = pd.read_csv(snakemake.input.curves)
curves = curves[curves["experiment"].isin(experiments)]
metrics = pd.read_csv(snakemake.input.metrics)
prevalence = metrics.groupby("experiment")["prevalence"].first().to_dict()
survey = {"gz2": "GZ2-like", "decals": "DECaLS-like"}.get(snakemake.wildcards.survey, snakemake.wildcards.survey)
with atomic_path(snakemake.output.figure, suffix=".png") as tmp:
    curves_figure(curves, prevalence, tmp, title=f"{survey} survey: after {int(metrics['n_rated'].max())} ratings")
