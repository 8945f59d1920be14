"""Adapter: pick example galaxies of each hidden class from both surveys and draw them."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from morphtools.cutouts import read_fits_cutout  # noqa: E402
from morphtools.plots import sample_galaxies_figure  # noqa: E402
from morphtools.preprocessing import fits_to_colour_image, load_jpeg_rgb  # noqa: E402
from morphtools.pretraining import centre_crop  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.simulation.population import truth_class_label  # noqa: E402
from morphtools.storage import atomic_path, read_crops_shard  # noqa: E402

log = log_to(snakemake.log[0], "sample_galaxies_figure")
rng = np.random.default_rng(snakemake.params.seed)
CLASSES = ["elliptical", "lenticular", "spiral", "barred_spiral", "edge_on", "ring", "disturbed",
           "merger", "irregular", "artifact"]


def load_survey(crop_paths, manifest_paths, truth_path, id_column):
    crops = {}
    for p in crop_paths:
        ids, images, _, _ = read_crops_shard(p)
        # the network's view: the centre crop of the stored image
        crops.update(zip(ids, centre_crop(images, snakemake.params.crop_to), strict=True))
    manifest = pd.concat([pd.read_csv(p, dtype={"galaxy_id": str}, keep_default_na=False) for p in manifest_paths])
    paths = dict(zip(manifest["galaxy_id"], manifest["path"], strict=True))
    truth = pd.read_csv(truth_path)
    truth["galaxy_id"] = truth[id_column].astype(str)
    truth["label"] = truth_class_label(truth)
    return crops, paths, truth[truth["galaxy_id"].isin(crops.keys())]


surveys = {
    "decals": load_survey(snakemake.input.decals_crops, snakemake.input.decals_manifests, snakemake.input.decals_truth, "iauname"),
    "gz2": load_survey(snakemake.input.gz2_crops, snakemake.input.gz2_manifests, snakemake.input.gz2_truth, "gz2_id"),
}
examples = {}
for cls in CLASSES:
    examples[cls] = {}
    for survey, (crops, paths, truth) in surveys.items():
        members = truth.loc[truth["label"] == cls, "galaxy_id"].to_numpy()
        chosen = rng.choice(members, size=min(len(members), snakemake.params.examples_per_class), replace=False)
        pairs = []
        for gid in chosen:
            if survey == "decals":
                colour = fits_to_colour_image(read_fits_cutout(paths[gid]), snakemake.params.bands)
            else:
                colour = load_jpeg_rgb(paths[gid])
            pairs.append((colour, crops[gid]))
        examples[cls][survey] = pairs
        log.info("%s / %s: %d of %d shown", cls, survey, len(pairs), len(members))

with atomic_path(snakemake.output.figure, suffix=".png") as tmp:
    sample_galaxies_figure(examples, ("decals", "gz2"), tmp, {"decals": "DECaLS-like", "gz2": "GZ2-like"})
