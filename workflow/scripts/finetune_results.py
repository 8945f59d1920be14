"""Adapter: every fine-tuning job's result in one table, and the summary over repeats."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import json  # noqa: E402

import pandas as pd  # noqa: E402

from morphtools.finetune import margins_over_others, summarise  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import write_csv  # noqa: E402

log = log_to(snakemake.log[0], "finetune_results")
results = pd.DataFrame([json.loads(Path(p).read_text()) for p in snakemake.input.runs])
summary = summarise(results)
rings = json.loads(Path(snakemake.input.rings_summary).read_text())
summary["rings_available"] = rings["rings"]
summary["note"] = ""
left_out = pd.DataFrame({"initialisation": list(snakemake.params.left_out),
                         "note": [f"not run: {why}" for why in snakemake.params.left_out.values()]})
summary = pd.concat([summary, left_out], ignore_index=True) if len(left_out) else summary
summary = summary.astype({"train_size": "Int64", "repeats": "Int64", "rings_available": "Int64"})
write_csv(results, snakemake.output.results)
write_csv(summary, snakemake.output.summary)
margins = margins_over_others(results, reference="multi")
write_csv(margins, snakemake.output.margins)
log.info("\n%s", summary.to_string(index=False))
log.info("multi's paired margins:\n%s", margins.to_string(index=False))
