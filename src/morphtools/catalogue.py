"""Build the galaxy catalogues the workflow runs on.

DECaLS: NSA-format table -> the paper's cuts -> joined with the GZ DECaLS volunteer votes.
GZ2: the Kaggle solutions table. Both gain a ``shard`` column and a common ``galaxy_id``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from astropy.table import Table

from .sharding import assign_shards


@dataclass(frozen=True)
class SelectionCuts:
    """The paper's sample selection (sec. 2.1). Radii in arcsec, magnitudes AB."""

    petro_theta_min: float = 3.0
    mag_r_min: float = 14.0
    mag_r_max: float = 17.77
    bad_petro_theta: float = 27.653702
    bad_petro_theta_tolerance: float = 1e-3


class CatalogueError(ValueError):
    """A catalogue that cannot be used; the message names the file and what is wrong."""


NSA_REQUIRED = ("IAUNAME", "RA", "DEC", "PETRO_THETA", "PETRO_TH50", "PETRO_TH90", "SERSIC_NMGY")


def read_nsa(path) -> pd.DataFrame:
    """Read the NSA columns the selection needs; ``mag_r`` from the r-band Sersic flux
    (index 4 of F, N, u, g, r, i, z)."""
    table = Table.read(path, format="fits")
    missing = [c for c in NSA_REQUIRED if c not in table.colnames]
    if missing:
        raise CatalogueError(f"{path}: missing NSA columns {missing}")
    sersic = np.asarray(table["SERSIC_NMGY"])
    if sersic.ndim != 2 or sersic.shape[1] < 5:
        raise CatalogueError(f"{path}: SERSIC_NMGY must hold 7 bands per row, got shape {sersic.shape}")
    flux_r = sersic[:, 4].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag_r = np.where(flux_r > 0, 22.5 - 2.5 * np.log10(flux_r), np.nan)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in table["IAUNAME"]]
    return pd.DataFrame(
        {
            "iauname": [n.strip() for n in names],
            "ra": np.asarray(table["RA"], float),
            "dec": np.asarray(table["DEC"], float),
            "petro_theta": np.asarray(table["PETRO_THETA"], float),
            "petro_th50": np.asarray(table["PETRO_TH50"], float),
            "petro_th90": np.asarray(table["PETRO_TH90"], float),
            "mag_r": mag_r,
        }
    )


def apply_cuts(nsa: pd.DataFrame, cuts: SelectionCuts, wrong_size_warning: pd.Series | None = None) -> pd.DataFrame:
    """Keep resolved (Petrosian radius > 3"), bright (14 < r < 17.77) galaxies with
    trustworthy sizes."""
    keep = (
        (nsa["petro_theta"] > cuts.petro_theta_min)
        & (nsa["mag_r"] > cuts.mag_r_min)
        & (nsa["mag_r"] < cuts.mag_r_max)
        & ((nsa["petro_theta"] - cuts.bad_petro_theta).abs() > cuts.bad_petro_theta_tolerance)
    )
    if wrong_size_warning is not None:
        flagged = nsa["iauname"].map(wrong_size_warning).fillna(False).astype(bool)
        keep &= ~flagged
    return nsa[keep.to_numpy()].reset_index(drop=True)


def build_decals_catalogue(nsa_path, volunteers_path, cuts: SelectionCuts, n_shards: int) -> pd.DataFrame:
    """The DECaLS sample: NSA with the paper's cuts, left-joined with the volunteer votes
    (galaxies without votes stay: they are still embedded and searched)."""
    nsa = read_nsa(nsa_path)
    if nsa["iauname"].duplicated().any():
        dup = nsa.loc[nsa["iauname"].duplicated(), "iauname"].iloc[0]
        raise CatalogueError(f"{nsa_path}: duplicate IAUNAME {dup}")
    votes = pd.read_csv(volunteers_path)
    if "iauname" not in votes.columns:
        raise CatalogueError(f"{volunteers_path}: no 'iauname' column")
    warning = votes.set_index("iauname")["wrong_size_warning"] if "wrong_size_warning" in votes else None
    sample = apply_cuts(nsa, cuts, warning)
    sample = sample.merge(votes.drop(columns=["wrong_size_warning", "wrong_size_statistic"], errors="ignore"),
                          on="iauname", how="left")
    sample.insert(0, "galaxy_id", sample["iauname"])
    sample.insert(1, "shard", assign_shards(sample["galaxy_id"], n_shards))
    return sample


def build_gz2_catalogue(solutions_path, n_shards: int) -> pd.DataFrame:
    """The GZ2 (Kaggle) sample: one row per ``GalaxyID`` with its 37 weighted fractions."""
    sol = pd.read_csv(solutions_path)
    if "GalaxyID" not in sol.columns:
        raise CatalogueError(f"{solutions_path}: no 'GalaxyID' column")
    if sol["GalaxyID"].duplicated().any():
        raise CatalogueError(f"{solutions_path}: duplicate GalaxyID {sol.loc[sol['GalaxyID'].duplicated(), 'GalaxyID'].iloc[0]}")
    sol.insert(0, "galaxy_id", sol["GalaxyID"].astype(str))
    sol.insert(1, "shard", assign_shards(sol["galaxy_id"], n_shards))
    return sol


def read_catalogue(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"galaxy_id": str})
