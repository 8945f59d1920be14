"""Adapter: one table describing each survey's representation (size, model, PCA)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import pandas as pd  # noqa: E402

from morphtools.embedding import representation_summary  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import write_csv  # noqa: E402

log = log_to(snakemake.log[0], "representation_summary")
rows = [representation_summary(path, pd.read_csv(var), survey) for survey, path, var in
        zip(snakemake.params.surveys, snakemake.input.representations, snakemake.input.variances, strict=True)]
write_csv(pd.DataFrame(rows), snakemake.output.summary)
