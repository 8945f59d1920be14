"""Adapter: render one shard's simulated GZ2 JPEGs into the Kaggle-style folder."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import pandas as pd  # noqa: E402

from morphtools.catalogue import read_catalogue  # noqa: E402
from morphtools.progress import progress_bar  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.simulation.survey import render_gz2_shard  # noqa: E402
from morphtools.storage import write_csv  # noqa: E402

shard = int(snakemake.wildcards.shard)
log = log_to(snakemake.log[0], f"gz2_images.shard_{shard}")
cat = read_catalogue(snakemake.input.catalogue)
rows = cat[cat["shard"] == shard]
manifest = render_gz2_shard(rows, pd.read_csv(snakemake.input.sky), snakemake.params.image_dir,
                            progress=progress_bar(f"gz2 images shard {shard}"), log=log)
write_csv(manifest, snakemake.output.manifest)
log.info("shard %d: %s", shard, manifest["status"].value_counts().to_dict())
