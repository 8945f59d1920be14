"""Adapter: Kaggle GZ2 solutions table -> the GZ2 catalogue with shards."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from morphtools.catalogue import build_gz2_catalogue  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import write_csv  # noqa: E402

log = log_to(snakemake.log[0], "gz2_catalogue")
cat = build_gz2_catalogue(snakemake.input.solutions, snakemake.params.shards)
write_csv(cat, snakemake.output.catalogue)
log.info("%d GZ2 galaxies; per shard: %s", len(cat), cat["shard"].value_counts().sort_index().to_dict())
