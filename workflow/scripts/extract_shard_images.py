"""Adapter: one shard's images from an indexed archive (the Kaggle GZ2 JPEGs, or the GZ
DECaLS PNG zips), extracting only this shard's members."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from morphtools.archives import extract_shard_images, read_index  # noqa: E402
from morphtools.catalogue import read_catalogue  # noqa: E402
from morphtools.progress import progress_bar  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import write_csv  # noqa: E402

shard = int(snakemake.wildcards.shard)
log = log_to(snakemake.log[0], f"{snakemake.rule}.shard_{shard}")
cat = read_catalogue(snakemake.input.catalogue)
ids = cat.loc[cat["shard"] == shard, "galaxy_id"]
index = read_index(snakemake.input.index)
suffix = Path(index["member"].iloc[0]).suffix if len(index) else ".img"
manifest = extract_shard_images(ids, index, snakemake.params.image_dir, suffix, snakemake.params.missing_reason,
                                progress=progress_bar(f"{snakemake.rule} shard {shard}"), log=log)
write_csv(manifest, snakemake.output.manifest)
log.info("shard %d: %s", shard, manifest["status"].value_counts().to_dict())
