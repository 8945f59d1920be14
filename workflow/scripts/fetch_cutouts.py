"""Adapter: fetch one shard's FITS cutouts from the (simulated) sky into the cache."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))

import pandas as pd  # noqa: E402

from morphtools.catalogue import read_catalogue  # noqa: E402
from morphtools.cutouts import fetch_shard  # noqa: E402
from morphtools.progress import progress_bar  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.simulation.render import DECALS  # noqa: E402
from morphtools.simulation.sky import SimulatedSky  # noqa: E402
from morphtools.storage import write_csv  # noqa: E402

shard = int(snakemake.wildcards.shard)
log = log_to(snakemake.log[0], f"decals_cutouts.shard_{shard}")
cat = read_catalogue(snakemake.input.catalogue)
rows = cat[cat["shard"] == shard]
sky = SimulatedSky(pd.read_csv(snakemake.input.sky), DECALS)
opts = snakemake.params.cutouts
manifest = fetch_shard(
    rows, sky, snakemake.params.cache_dir, max_blank_fraction=opts["max_blank_fraction"],
    native_pixscale=opts["native_pixscale"], max_size=opts["max_size"],
    progress=progress_bar(f"cutouts shard {shard}"), log=log,
)
write_csv(manifest, snakemake.output.manifest)
log.info("shard %d: %s", shard, manifest["status"].value_counts().to_dict())
