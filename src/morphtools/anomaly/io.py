"""Files of the anomaly experiments.

- ``{survey}/ellipse/shard_N.csv``: ``galaxy_id``, the 24 ellipse features (NaN when the
  fit failed) and ``reason``, for every usable image of the shard.
- ``anomaly/{experiment}/galaxies.csv``: ``galaxy_id, fraction, rating, is_anomaly``.
- ``anomaly/{experiment}/features.h5``: ``galaxy_id``, ``cnn`` (n, d) PCA projection and
  ``ellipse`` (n, 24), in the order of galaxies.csv.
- ``anomaly/{experiment}/runs/{method}/repeat_R.csv``: one row per galaxy: ``galaxy_id``,
  ``score`` (the final ranking score), ``order`` (0-based position in the rating sequence,
  -1 if never rated), ``batch``, ``rating`` (-1 if never rated) and the method's
  diagnostics (``gp_mean``, ``gp_std``, ``anomaly_score`` ...). Written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np
import pandas as pd

from ..storage import atomic_path, decode_ids, write_csv

if TYPE_CHECKING:  # imported where used: run jobs need neither OpenCV nor astropy
    from .ellipse import EllipseParams
    from .methods import RunResult


def ellipse_features_for_manifest(manifest: pd.DataFrame, fmt: str, params: EllipseParams, bands: str = "grz",
                                  image_size: int = 424, max_blank_fraction: float = 0.2, progress=None,
                                  log=None) -> pd.DataFrame:
    """Ellipse features of every fetched image of a shard manifest, from the colour image
    the volunteers saw (GZ2 JPEG; DECaLS FITS -> dr2 colour at ``image_size``)."""
    from ..cutouts import CutoutError, read_fits_cutout
    from ..preprocessing import fits_to_colour_image, load_jpeg_rgb
    from .ellipse import image_features

    names = params.feature_names()
    rows = []
    iterator = manifest.itertuples(index=False)
    if progress is not None:
        iterator = progress(iterator, total=len(manifest))
    for row in iterator:
        if row.status == "rejected":
            continue
        gid = str(row.galaxy_id)
        try:
            if fmt == "fits":
                rgb = fits_to_colour_image(read_fits_cutout(row.path, len(bands), max_blank_fraction), bands,
                                           image_size)
            elif fmt == "jpeg":
                rgb = load_jpeg_rgb(row.path)
            else:
                raise ValueError(f"unknown image format {fmt!r}")
        except (CutoutError, OSError) as err:
            if log:
                log.warning("galaxy %s: no image (%s)", gid, err)
            continue
        feats = image_features(rgb, params)
        rows.append([gid, *feats, "" if np.isfinite(feats).all() else "ellipse fit failed"])
    return pd.DataFrame(rows, columns=["galaxy_id", *names, "reason"])


def read_ellipse_tables(paths) -> pd.DataFrame:
    tables = [pd.read_csv(p, dtype={"galaxy_id": str, "reason": str}, keep_default_na=False, na_values=[""])
              for p in paths]
    table = pd.concat(tables, ignore_index=True)
    return table.drop(columns=["reason"], errors="ignore")


def write_experiment(galaxies: pd.DataFrame, cnn: np.ndarray, ellipse: np.ndarray, summary: dict,
                     galaxies_path, features_path, summary_path) -> None:
    if not (len(galaxies) == len(cnn) == len(ellipse)):
        raise ValueError(f"{len(galaxies)} galaxies, {len(cnn)} CNN rows, {len(ellipse)} ellipse rows")
    write_csv(galaxies, galaxies_path)
    with atomic_path(features_path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("galaxy_id", data=galaxies["galaxy_id"].astype(str).to_numpy(dtype=object),
                         dtype=h5py.string_dtype())
        f.create_dataset("cnn", data=np.asarray(cnn, np.float32))
        f.create_dataset("ellipse", data=np.asarray(ellipse, np.float64))
    with atomic_path(summary_path) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=1))


def read_galaxies(path) -> pd.DataFrame:
    """An experiment's galaxy table (ids as strings)."""
    return pd.read_csv(path, dtype={"galaxy_id": str})


def read_experiment(galaxies_path, features_path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    galaxies = read_galaxies(galaxies_path)
    with h5py.File(features_path, "r") as f:
        ids = decode_ids(f["galaxy_id"][:])
        features = {"cnn": f["cnn"][:], "ellipse": f["ellipse"][:]}
    if list(ids) != list(galaxies["galaxy_id"]):
        raise ValueError(f"{features_path} and {galaxies_path} list different galaxies")
    return galaxies, features


def run_table(galaxy_ids, result: RunResult) -> pd.DataFrame:
    n = len(galaxy_ids)
    order = np.full(n, -1)
    order[result.acquired] = np.arange(len(result.acquired))
    batch = np.full(n, -1)
    batch[result.acquired] = result.batches
    rating = np.full(n, -1)
    rating[result.acquired] = result.ratings
    table = pd.DataFrame({"galaxy_id": list(galaxy_ids), "score": result.scores, "order": order, "batch": batch,
                          "rating": rating})
    for name, values in result.extra.items():
        table[name] = values
    return table


def write_run(galaxy_ids, result: RunResult, path, info: dict, info_path) -> None:
    write_csv(run_table(galaxy_ids, result), path)
    info = {**info, "n_galaxies": len(galaxy_ids), "n_rated": int(len(result.acquired)),
            "step_seconds": [round(s, 4) for s in result.step_seconds]}
    if result.interest_fits:
        info["interest_fits"] = result.interest_fits
    with atomic_path(info_path) as tmp:
        Path(tmp).write_text(json.dumps(info, indent=1))


def read_run(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"galaxy_id": str})


def acquired_in_order(run: pd.DataFrame) -> pd.DataFrame:
    """The rated galaxies of a run, in the order they were rated."""
    return run[run["order"] >= 0].sort_values("order")[["galaxy_id", "order", "batch", "rating"]]
