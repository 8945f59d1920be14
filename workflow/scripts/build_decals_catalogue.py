"""Adapter: NSA-format table + GZ DECaLS votes -> the DECaLS catalogue with shards."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))

from morphtools.catalogue import SelectionCuts, build_decals_catalogue  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import write_csv  # noqa: E402

log = log_to(snakemake.log[0], "decals_catalogue")
cat = build_decals_catalogue(
    snakemake.input.nsa, snakemake.input.volunteers, SelectionCuts(**snakemake.params.cuts), snakemake.params.shards
)
write_csv(cat, snakemake.output.catalogue)
log.info("%d galaxies pass the selection; per shard: %s", len(cat), cat["shard"].value_counts().sort_index().to_dict())
