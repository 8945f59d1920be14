"""Adapter: metrics of every anomaly run, curves for Figs 3 and 5, and Table 1."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))

import json  # noqa: E402

import pandas as pd  # noqa: E402

from morphtools.anomaly.io import read_run  # noqa: E402
from morphtools.anomaly.summary import numeric_summary, run_curves, run_metrics, table_1  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import write_csv  # noqa: E402

log = log_to(snakemake.log[0], "anomaly_metrics")
results = snakemake.params.results
top_n = tuple(snakemake.params.top_n)
metrics, curves, summaries = [], [], {}
for experiment in snakemake.params.experiments:
    galaxies = pd.read_csv(f"{results}/anomaly/{experiment}/galaxies.csv", dtype={"galaxy_id": str})
    summaries[experiment] = json.loads(Path(f"{results}/anomaly/{experiment}/summary.json").read_text())
    for method in snakemake.params.methods[experiment]:
        for repeat in snakemake.params.repeats:
            run = read_run(f"{results}/anomaly/{experiment}/runs/{method}/repeat_{repeat}.csv")
            key = {"experiment": experiment, "method": method, "repeat": repeat}
            metrics.append(key | run_metrics(galaxies, run, top_n))
            curves.append(run_curves(galaxies, run, snakemake.params.curve_max_n).assign(**key))
metrics = pd.DataFrame(metrics)
table = table_1(metrics, summaries, top_n)
write_csv(metrics, snakemake.output.metrics)
write_csv(numeric_summary(metrics), snakemake.output.summary)
write_csv(pd.concat(curves, ignore_index=True), snakemake.output.curves)
write_csv(table, snakemake.output.table)
log.info("\n%s", table.to_string(index=False))
