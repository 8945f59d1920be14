"""Adapter: metrics of every anomaly run, curves for Figs 3 and 5, and Table 1."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import json  # noqa: E402

import pandas as pd  # noqa: E402

from morphtools.anomaly.io import read_galaxies, read_run  # noqa: E402
from morphtools.anomaly.summary import numeric_summary, run_curves, run_metrics, table_1  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import write_csv  # noqa: E402

log = log_to(snakemake.log[0], "anomaly_metrics")
top_n = tuple(snakemake.params.top_n)
galaxies, summaries = {}, {}
for experiment, galaxies_path, summary_path in zip(snakemake.params.experiments, snakemake.input.galaxies,
                                                   snakemake.input.summaries, strict=True):
    galaxies[experiment] = read_galaxies(galaxies_path)
    summaries[experiment] = json.loads(Path(summary_path).read_text())
metrics, curves = [], []
for (experiment, method, repeat), path, info_path in zip(snakemake.params.run_keys, snakemake.input.runs,
                                                       snakemake.input.infos, strict=True):
    run = read_run(path)
    info = json.loads(Path(info_path).read_text())
    key = {"experiment": experiment, "method": method, "repeat": repeat}
    metrics.append(key | run_metrics(galaxies[experiment], run, top_n, info))
    curves.append(run_curves(galaxies[experiment], run, snakemake.params.curve_max_n).assign(**key))
metrics = pd.DataFrame(metrics)
table = table_1(metrics, summaries, top_n, left_out=snakemake.params.left_out)
write_csv(metrics, snakemake.output.metrics)
write_csv(numeric_summary(metrics), snakemake.output.summary)
write_csv(pd.concat(curves, ignore_index=True), snakemake.output.curves)
write_csv(table, snakemake.output.table)
log.info("\n%s", table.to_string(index=False))
