"""Adapter: fetch one shard's FITS cutouts into the cache, from the simulated sky or the
Legacy Survey cutout service (survey.images)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import pandas as pd  # noqa: E402

from morphtools.catalogue import read_catalogue  # noqa: E402
from morphtools.cutouts import fetch_shard  # noqa: E402
from morphtools.downloads import RetryPolicy  # noqa: E402
from morphtools.legacy_survey import LegacySurveyClient  # noqa: E402
from morphtools.progress import progress_counter  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import write_csv  # noqa: E402

shard = int(snakemake.wildcards.shard)
log = log_to(snakemake.log[0], f"decals_cutouts.shard_{shard}")
cat = read_catalogue(snakemake.input.catalogue)
rows = cat[cat["shard"] == shard]
opts = snakemake.params.cutouts
if snakemake.params.images == "simulated":
    from morphtools.simulation.render import DECALS
    from morphtools.simulation.sky import SimulatedSky

    source, concurrency = SimulatedSky(pd.read_csv(snakemake.input.sky), DECALS), 1  # CPU-bound: one at a time
else:
    service = opts["legacy_survey"]
    source = LegacySurveyClient(service["url"], service["layer"], opts["bands"],
                                RetryPolicy.from_config(snakemake.params.retry), log=log)
    concurrency = service["concurrency"]
    log.info("Legacy Survey %s, layer %s, bands %s, %d requests at once", service["url"], service["layer"],
             opts["bands"], concurrency)
manifest = fetch_shard(
    rows, source, snakemake.params.cache_dir, max_blank_fraction=opts["max_blank_fraction"],
    native_pixscale=opts["native_pixscale"], max_size=opts["max_size"], concurrency=concurrency,
    progress=lambda total: progress_counter(total, f"cutouts shard {shard}"), log=log,
)
counts = manifest["status"].value_counts().to_dict()
log.info("shard %d: %s", shard, counts)
failed = manifest[manifest["status"] == "failed"]
if snakemake.params.images == "legacy_survey" and len(rows):
    limit = opts["legacy_survey"]["max_failed_fraction"]
    if len(failed) > limit * len(rows):
        # no manifest: Snakemake marks the job failed and a rerun asks again for what is missing
        raise RuntimeError(
            f"shard {shard}: {len(failed)} of {len(rows)} galaxies got no answer from the service (limit "
            f"{limit:.0%}, cutouts.legacy_survey.max_failed_fraction); what arrived is cached. First failure: "
            f"{failed['reason'].iloc[0]}")
write_csv(manifest, snakemake.output.manifest)
