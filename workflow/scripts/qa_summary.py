"""Adapter: gather the per-shard QA tables into one summary (counts by status and reason)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import pandas as pd  # noqa: E402

from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import write_csv  # noqa: E402

log = log_to(snakemake.log[0], "qa_summary")
qa = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in snakemake.input.qa], ignore_index=True)
# like failures group together: drop the galaxy/file name before the first colon, and the
# URLs (they carry each galaxy's position) and numbers in the detail
qa["kind"] = (qa["reason"].str.replace(r"^[^:]*: ", "", regex=True)
              .str.replace(r"https?://\S+", "<url>", regex=True)
              .str.replace(r"\d+(\.\d+)?", "N", regex=True))
summary = qa.groupby(["status", "stage", "kind"], dropna=False).size().rename("galaxies").reset_index()
write_csv(summary, snakemake.output.summary)
log.info("\n%s", summary.to_string(index=False))
