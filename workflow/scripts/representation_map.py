"""Adapter: UMAP map of one galaxy subset with thumbnails at their positions (Figs 1, A1, A2)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from morphtools.maps import (  # noqa: E402
    MIN_GALAXIES,
    grid_representatives,
    read_predicted_fractions,
    subset_mask,
    umap_2d,
)
from morphtools.plots import thumbnail_map_figure  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.similarity import SimilarityIndex, thumbnails  # noqa: E402
from morphtools.storage import atomic_path, write_csv  # noqa: E402

subset = snakemake.wildcards.subset
params = snakemake.params
log = log_to(snakemake.log[0], f"representation_map.{subset}")
index = SimilarityIndex.from_files(snakemake.input.space, snakemake.input.catalogue, params.space)
fraction_ids, fractions, answers = read_predicted_fractions(snakemake.input.representation)
if list(fraction_ids) != list(index.galaxy_ids):
    raise ValueError(f"{snakemake.input.representation} and {snakemake.input.space} list different galaxies")
rows = np.flatnonzero(subset_mask(fractions, answers, params.thresholds))
conditions = ", ".join(f"{name} > {value:g}" for name, value in params.thresholds.items()) or "every galaxy"
log.info("%s: %d of %d galaxies (%s)", subset, len(rows), len(index), conditions)
title = f"{subset}: {len(rows)} galaxies, UMAP of {params.space}" + (f"\n{conditions}" if params.thresholds else "")

coordinates = pd.DataFrame({"galaxy_id": pd.Series(dtype=str), "x": pd.Series(dtype=np.float32),
                            "y": pd.Series(dtype=np.float32), "shown": pd.Series(dtype=bool)})
with atomic_path(snakemake.output.figure, suffix=".png") as tmp:
    if len(rows) >= MIN_GALAXIES:
        xy = umap_2d(index.vectors[rows], params.seed, **params.umap)
        shown, centres, cell_size = grid_representatives(xy, params.cells)
        crops = dict(zip(params.shards, snakemake.input.crops, strict=True))
        thumbnail_map_figure(xy, centres, thumbnails(index, rows[shown], crops), cell_size, tmp, title)
        is_shown = np.zeros(len(rows), bool)
        is_shown[shown] = True
        coordinates = pd.DataFrame({"galaxy_id": index.galaxy_ids[rows], "x": xy[:, 0], "y": xy[:, 1],
                                    "shown": is_shown})
        log.info("%d thumbnails on a %d x %d grid", len(shown), params.cells, params.cells)
    else:
        note = f"{len(rows)} galaxies pass the cuts: too few (< {MIN_GALAXIES}) for a map"
        log.info(note)
        thumbnail_map_figure(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 1, 1, 3), np.uint8), 1.0, tmp,
                             title, note)
write_csv(coordinates, snakemake.output.coordinates)
