"""Assemble the simulated surveys as files in the real formats.

DECaLS-like: an NSA-like FITS table, a GZ DECaLS-like volunteer table, hidden rare-feature
votes, forum tags, and the ground-truth table the simulated sky renders from.
GZ2-like: a Kaggle ``training_solutions_rev1.csv`` and 424 x 424 colour JPEGs named by
``GalaxyID``, rendered SDSS-like (coarser, blurrier, shallower).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.table import Table
from astropy.visualization import make_lupton_rgb
from PIL import Image

from ..cutouts import field_grid
from ..storage import atomic_path, write_csv
from .population import sample_population
from .render import SDSS, render, render_digest
from .sky import nsa_like_table, petrosian_radii
from .votes import sample_decals_votes, sample_gz2_solutions, sample_rare_features, sample_talk_tags

SDSS_PIXSCALE = 0.396


def simulate_decals_survey(n_galaxies: int, seed: int, out: dict[str, str]) -> pd.DataFrame:
    """Write the DECaLS-like survey tables to the paths in ``out`` (keys: ``nsa``,
    ``volunteers``, ``rare_features``, ``tags``, ``truth``). Returns the truth table."""
    truth = sample_population(n_galaxies, seed)
    nsa = nsa_like_table(truth, seed + 1)
    truth["petro_th50"] = nsa["PETRO_TH50"].to_numpy()
    truth["petro_th90"] = nsa["PETRO_TH90"].to_numpy()
    votes = sample_decals_votes(truth, seed + 2)
    # GZ DECaLS flags galaxies whose NSA size disagrees with their light profile
    wrong_size_statistic = np.abs(np.log(nsa["PETRO_TH50"].to_numpy() / truth["half_light_radius"].to_numpy()))
    votes.insert(1, "wrong_size_statistic", wrong_size_statistic)
    votes.insert(2, "wrong_size_warning", wrong_size_statistic > 1.6)
    table = Table.from_pandas(nsa.drop(columns=["SERSIC_NMGY"]))
    table["SERSIC_NMGY"] = np.vstack(nsa["SERSIC_NMGY"].to_numpy()).astype(np.float32)
    with atomic_path(out["nsa"]) as tmp:
        table.write(tmp, format="fits", overwrite=True)
    write_csv(votes, out["volunteers"])
    write_csv(sample_rare_features(truth, seed + 3), out["rare_features"])
    write_csv(sample_talk_tags(truth, seed + 4), out["tags"])
    write_csv(truth, out["truth"])
    return truth


# GZ2's main sample (Willett et al. 2013): the brightest quarter of the SDSS Main Galaxy
# Sample, r < 17.0 and petroR90_r > 3 arcsec; the Kaggle set is drawn from it
GZ2_MAG_R_MAX = 17.0
GZ2_PETRO_R90_MIN = 3.0
GZ2_MAG_R_MIN = 13.0  # the bright end of the drawn population (no GZ2 cut; few are this bright)
MAX_DRAW_FACTOR = 50  # cuts that pass fewer than 1 in 50 drawn galaxies are refused


def simulate_gz2_tables(n_galaxies: int, seed: int, out: dict[str, str], mag_r_max: float = GZ2_MAG_R_MAX,
                        petro_r90_min: float = GZ2_PETRO_R90_MIN) -> pd.DataFrame:
    """Write the GZ2-like Kaggle table and the truth table (keys ``solutions``, ``truth``).

    The galaxies are GZ2's main-sample selection: ``mag_r`` < ``mag_r_max`` and petroR90
    (arcsec, SDSS-measured) >= ``petro_r90_min``, so exactly ``n_galaxies`` pass. Its images
    are 424 px at 0.02 x petroR90 arcsec per pixel (:func:`render_gz2_jpeg`)."""
    truth = gz2_main_sample(n_galaxies, seed, mag_r_max, petro_r90_min)
    rng = np.random.default_rng(seed + 1)
    ids = np.sort(rng.choice(np.arange(100000, 1000000), size=n_galaxies, replace=False))
    truth.insert(0, "gz2_id", ids)
    truth["no_coverage"] = False  # the Kaggle set only holds galaxies with images
    write_csv(sample_gz2_solutions(truth, seed + 2), out["solutions"])
    write_csv(truth, out["truth"])
    return truth


def gz2_main_sample(n_galaxies: int, seed: int, mag_r_max: float = GZ2_MAG_R_MAX,
                    petro_r90_min: float = GZ2_PETRO_R90_MIN) -> pd.DataFrame:
    """``n_galaxies`` simulated galaxies that pass GZ2's main-sample cuts, with their
    measured ``petro_r90`` (arcsec; the profile's, with 5% measurement scatter). Deterministic
    for a given ``seed``: the population is drawn larger than needed (more if too few pass)
    and the first ``n_galaxies`` that pass are kept, renumbered 0..n-1 in ``galaxy_index``."""
    if not GZ2_MAG_R_MIN < mag_r_max:
        raise ValueError(f"GZ2 selection: mag_r_max {mag_r_max} must be fainter than {GZ2_MAG_R_MIN}")
    n_draw = int(n_galaxies * 1.15) + 20
    while True:
        population = sample_population(n_draw, seed, sky_patch=(0.0, 360.0, -10.0, 60.0),
                                       mag_range=(GZ2_MAG_R_MIN, mag_r_max))
        scatter = np.exp(np.random.default_rng(seed + 3).normal(0, 0.05, n_draw))
        population["petro_r90"] = np.array([petrosian_radii(row)[2] for _, row in population.iterrows()]) * scatter
        passed = population[population["petro_r90"] >= petro_r90_min]
        if len(passed) >= n_galaxies:
            break
        if n_draw >= MAX_DRAW_FACTOR * n_galaxies:
            raise ValueError(f"GZ2 selection: only {len(passed)} of {n_draw} simulated galaxies pass mag_r < "
                             f"{mag_r_max} and petroR90 >= {petro_r90_min} arcsec, {n_galaxies} wanted; loosen the cuts")
        n_draw = min(MAX_DRAW_FACTOR * n_galaxies, int(n_draw * 1.2 * n_galaxies / max(len(passed), 1)) + 20)
    truth = passed.head(n_galaxies).reset_index(drop=True)
    truth["galaxy_index"] = np.arange(n_galaxies)
    return truth


def gz2_jpeg_digest(row, quality: int = 80, max_render_size: int = 512) -> str:
    """The rendering digest a GZ2-like JPEG of ``row`` carries in its comment
    (:func:`~morphtools.simulation.render.render_digest`)."""
    return render_digest(row, SDSS, image="gz2_jpeg", quality=quality, max_render_size=max_render_size,
                         field_pixscale=SDSS_PIXSCALE)


def jpeg_comment(path: str | os.PathLike) -> str | None:
    """A JPEG's comment as text, None when it has none or cannot be read (reads the
    header only)."""
    try:
        with Image.open(path) as img:
            comment = img.info.get("comment")
    except Exception:  # unreadable: the caller renders it again
        return None
    return comment.decode("ascii", "replace") if isinstance(comment, bytes) else comment


def render_gz2_jpeg(row, path: str | os.PathLike, quality: int = 80, max_render_size: int = 512) -> None:
    """Render one GZ2-like image: SDSS gri at native 0.396"/px over 424 x 0.02 x petroR90
    arcsec, Lupton et al. (2004) asinh colour (as the SDSS colour images were made),
    resampled to 424 x 424 and saved as JPEG, atomically, with :func:`gz2_jpeg_digest` as
    its comment. A field wider than ``max_render_size`` native pixels is rendered at that
    many coarser pixels: the JPEG cannot show finer detail, and rendering memory grows
    with the square of the size (about 1.5 GB at 512 px; a petroR90 of 100 arcsec would
    need 2,300 px and ~28 GB)."""
    size, pixscale = field_grid(424 * 0.02 * float(row["petro_r90"]), SDSS_PIXSCALE, max_render_size)
    cube = render(row, SDSS, max(32, size), pixscale)
    g, r, i = cube
    rgb = make_lupton_rgb(i * 1.0, r * 1.25, g * 1.9, minimum=-0.02, stretch=0.35, Q=9)
    img = Image.fromarray(rgb[::-1]).resize((424, 424), Image.Resampling.BICUBIC)
    with atomic_path(path) as tmp:
        img.save(tmp, format="JPEG", quality=quality,
                 comment=gz2_jpeg_digest(row, quality, max_render_size).encode("ascii"))


def render_gz2_shard(rows: pd.DataFrame, truth: pd.DataFrame, image_dir, progress=None, log=None) -> pd.DataFrame:
    """Render the shard's GZ2-like JPEGs into the Kaggle-style ``image_dir``
    (``{GalaxyID}.jpg``); returns the manifest ``galaxy_id, path, status, reason``.

    An existing image is kept (``cached``) only when its comment holds the digest this
    galaxy's image would get now; one made from other truth or by other rendering code
    (``RENDER_VERSION``) is rendered again (``fetched``), so a rerun after a change to the
    simulation cannot mix old images with new ones. ``log`` (a logger) hears how many."""
    image_dir = Path(image_dir)
    by_id = truth.set_index(truth["gz2_id"].astype(str))
    records = []
    replaced = 0
    iterator = rows["galaxy_id"].astype(str)
    if progress is not None:
        iterator = progress(iterator, total=len(rows))
    for gid in iterator:
        path = image_dir / f"{gid}.jpg"
        if gid not in by_id.index:
            records.append((gid, "", "rejected", f"{gid}: not in the simulated GZ2 survey"))
            continue
        row = by_id.loc[gid]
        if path.exists():
            if jpeg_comment(path) == gz2_jpeg_digest(row):
                records.append((gid, str(path), "cached", ""))
                continue
            replaced += 1
        render_gz2_jpeg(row, path)
        records.append((gid, str(path), "fetched", ""))
    if log is not None and replaced:
        log.info("%d existing images were rendered from other parameters or code (render version or truth "
                 "changed): rendered again", replaced)
    return pd.DataFrame.from_records(records, columns=["galaxy_id", "path", "status", "reason"])
