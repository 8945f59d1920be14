"""Adapter: Astronomaly's 24 ellipse-fit features for every image of one shard."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import pandas as pd  # noqa: E402

from morphtools.anomaly.ellipse import EllipseParams  # noqa: E402
from morphtools.anomaly.io import ellipse_features_for_manifest  # noqa: E402
from morphtools.progress import progress_bar  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import write_csv  # noqa: E402

survey, shard = snakemake.wildcards.survey, int(snakemake.wildcards.shard)
log = log_to(snakemake.log[0], f"ellipse.{survey}.shard_{shard}")
cfg = snakemake.params.ellipse
params = EllipseParams(percentiles=tuple(cfg["percentiles"]), sigma_clip=cfg["sigma_clip"], channel=cfg["channel"])
manifest = pd.read_csv(snakemake.input.manifest, dtype={"galaxy_id": str}, keep_default_na=False)
table = ellipse_features_for_manifest(
    manifest, snakemake.params.image_format, params, snakemake.params.bands, snakemake.params.image_size,
    snakemake.params.max_blank_fraction, progress=progress_bar(f"ellipse {survey} shard {shard}"), log=log,
)
write_csv(table, snakemake.output.features)
log.info("%s shard %d: %d galaxies, %d ellipse fits failed", survey, shard, len(table), (table["reason"] != "").sum())
