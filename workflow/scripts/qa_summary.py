"""Adapter: gather the per-shard QA tables into one summary (counts by status and reason)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))

import pandas as pd  # noqa: E402

from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import write_csv  # noqa: E402

log = log_to(snakemake.log[0], "qa_summary")
qa = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in snakemake.input.qa], ignore_index=True)
# the reason's first clause (before the file/galaxy name's detail) groups like failures
qa["kind"] = qa["reason"].str.replace(r"^[^:]*: ", "", regex=True).str.replace(r"\d+%", "N%", regex=True)
summary = qa.groupby(["status", "stage", "kind"], dropna=False).size().rename("galaxies").reset_index()
write_csv(summary, snakemake.output.summary)
log.info("\n%s", summary.to_string(index=False))
