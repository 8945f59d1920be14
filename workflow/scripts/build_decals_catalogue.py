"""Adapter: the DECaLS catalogue with shards, from the source survey.source names: an
NSA-format table + GZ DECaLS votes (simulated or public), or a user's own table."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from morphtools.catalogue import SelectionCuts, build_decals_catalogue, build_user_catalogue  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import write_csv  # noqa: E402

log = log_to(snakemake.log[0], "decals_catalogue")
if snakemake.params.source == "catalogue":
    spec = snakemake.params.catalogue
    cat = build_user_catalogue(snakemake.input.table, spec["columns"], snakemake.params.shards, spec["r90_over_r50"])
    log.info("%d galaxies from %s", len(cat), snakemake.input.table)
else:
    cat = build_decals_catalogue(
        snakemake.input.nsa, snakemake.input.volunteers, SelectionCuts(**snakemake.params.cuts), snakemake.params.shards,
        automated_path=getattr(snakemake.input, "automated", None),
    )
    log.info("%d galaxies pass the selection", len(cat))
write_csv(cat, snakemake.output.catalogue)
log.info("per shard: %s", cat["shard"].value_counts().sort_index().to_dict())
