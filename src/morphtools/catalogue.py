"""Build the galaxy catalogues the workflow runs on.

DECaLS: NSA-format table -> the paper's cuts -> joined with the GZ DECaLS volunteer votes.
GZ2: the Kaggle solutions table. Both gain a ``shard`` column and a common ``galaxy_id``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from astropy.io import fits
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
    (index 4 of F, N, u, g, r, i, z).

    Only these columns are read, through a memory map: the real ``nsa_v1_0_1.fits``
    (641,409 rows, a few GB, hundreds of columns) never has to fit in memory."""
    try:
        hdul = fits.open(path, memmap=True)
    except (OSError, ValueError) as err:
        raise CatalogueError(f"{path}: not a readable FITS table ({err})") from err
    with hdul:
        table_hdu = next((h for h in hdul if isinstance(h, fits.BinTableHDU)), None)
        if table_hdu is None:
            raise CatalogueError(f"{path}: no binary table extension")
        names = [n.upper() for n in table_hdu.columns.names]
        missing = [c for c in NSA_REQUIRED if c not in names]
        if missing:
            raise CatalogueError(f"{path}: missing NSA columns {missing}")
        data = table_hdu.data

        def column(name):
            return np.array(data.field(name))

        sersic = column("SERSIC_NMGY")
        if sersic.ndim != 2 or sersic.shape[1] < 5:
            raise CatalogueError(f"{path}: SERSIC_NMGY must hold 7 bands per row, got shape {sersic.shape}")
        flux_r = sersic[:, 4].astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            mag_r = np.where(flux_r > 0, 22.5 - 2.5 * np.log10(flux_r), np.nan)
        iaunames = [n.decode() if isinstance(n, bytes) else str(n) for n in column("IAUNAME")]
        return pd.DataFrame(
            {
                "iauname": [n.strip() for n in iaunames],
                "ra": column("RA").astype(float),
                "dec": column("DEC").astype(float),
                "petro_theta": column("PETRO_THETA").astype(float),
                "petro_th50": column("PETRO_TH50").astype(float),
                "petro_th90": column("PETRO_TH90").astype(float),
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


def _read_vote_table(path, kind: str) -> pd.DataFrame:
    """A GZ DECaLS table (volunteer votes or automated posteriors) keyed by unique iauname."""
    table = pd.read_csv(path)
    if "iauname" not in table.columns:
        raise CatalogueError(f"{path}: no 'iauname' column in the {kind} table")
    duplicated = table["iauname"].duplicated()
    if duplicated.any():
        raise CatalogueError(f"{path}: duplicate iauname {table.loc[duplicated, 'iauname'].iloc[0]} "
                             f"(row {int(np.flatnonzero(duplicated)[0]) + 2} of the file)")
    return table


def build_decals_catalogue(nsa_path, volunteers_path, cuts: SelectionCuts, n_shards: int,
                           automated_path=None) -> pd.DataFrame:
    """The DECaLS sample: NSA with the paper's cuts, left-joined with the volunteer votes
    (galaxies without votes stay: they are still embedded and searched).

    ``automated_path``: optionally the GZ DECaLS automated posteriors
    (``gz_decals_auto_posteriors.csv``), whose ``{question}_{answer}_fraction`` columns
    join as ``auto_{question}_{answer}_fraction`` (the paper's ring candidates and
    featured-galaxy filters use them). A galaxy flagged ``wrong_size_warning`` in either
    table is removed."""
    nsa = read_nsa(nsa_path)
    if nsa["iauname"].duplicated().any():
        dup = nsa.loc[nsa["iauname"].duplicated(), "iauname"].iloc[0]
        raise CatalogueError(f"{nsa_path}: duplicate IAUNAME {dup}")
    votes = _read_vote_table(volunteers_path, "volunteer")
    tables = [votes]
    automated = None
    if automated_path is not None:
        automated = _read_vote_table(automated_path, "automated posterior")
        tables.append(automated)
    flags = [table.set_index("iauname")["wrong_size_warning"].astype(str).str.lower().isin(["true", "1", "1.0"])
             for table in tables if "wrong_size_warning" in table]
    warning = pd.concat(flags).groupby(level=0).any() if flags else None
    sample = apply_cuts(nsa, cuts, warning)
    sample = sample.merge(votes.drop(columns=["wrong_size_warning", "wrong_size_statistic"] + NSA_METADATA,
                                     errors="ignore"),
                          on="iauname", how="left")
    if automated is not None:
        fractions = [c for c in automated.columns if c.endswith("_fraction")]
        if not fractions:
            raise CatalogueError(f"{automated_path}: no '*_fraction' columns in the automated posterior table")
        auto = automated[["iauname", *fractions]].rename(columns={c: f"auto_{c}" for c in fractions})
        sample = sample.merge(auto, on="iauname", how="left")
    sample.insert(0, "galaxy_id", sample["iauname"])
    sample.insert(1, "shard", assign_shards(sample["galaxy_id"], n_shards))
    return sample


# GZ DECaLS tables repeat NSA metadata; the NSA's own values are kept
NSA_METADATA = ["ra", "dec", "petro_theta", "petro_th50", "petro_th90"]


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


# -- a user's own catalogue ------------------------------------------------------------------------------------------

# r90/r50 of a Petrosian profile: ~2.3 for an exponential disc, ~3 for a de Vaucouleurs
# bulge; 2.6 is the usual early/late dividing line (Strateva et al. 2001). Used only when
# a catalogue gives one of the two radii.
DEFAULT_R90_OVER_R50 = 2.6
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2")


def read_table(path, text_columns=()) -> pd.DataFrame:
    """A CSV or FITS table (chosen by the file name's ending) as a DataFrame. FITS columns
    with more than one value per row are left out (a DataFrame cell holds one value); CSV
    columns are numbers where every value is one, except ``text_columns`` (ids stay text:
    "007" is not 7)."""
    name = str(path).lower()
    if name.endswith(FITS_SUFFIXES):
        try:
            table = Table.read(path)
        except Exception as err:  # astropy raises many types for unreadable files
            raise CatalogueError(f"{path}: not a readable FITS table ({type(err).__name__}: {err})") from err
        scalar = [c for c in table.colnames if table[c].ndim <= 1]
        frame = table[scalar].to_pandas()
        for column in frame.columns:
            if frame[column].dtype == object:
                frame[column] = [v.decode().strip() if isinstance(v, bytes) else v for v in frame[column]]
        return frame
    if name.endswith(CSV_SUFFIXES):
        try:
            return _numeric_where_possible(pd.read_csv(path, dtype=str, keep_default_na=False), set(text_columns))
        except (OSError, ValueError, pd.errors.ParserError) as err:
            raise CatalogueError(f"{path}: not a readable CSV table ({err})") from err
    raise CatalogueError(f"{path}: unknown table format; name the file *.csv or *.fits")


def table_columns(path) -> list[str]:
    """The column names of a CSV or FITS table, reading only its header."""
    name = str(path).lower()
    if name.endswith(FITS_SUFFIXES):
        with fits.open(path, memmap=True) as hdul:
            table_hdu = next((h for h in hdul if isinstance(h, fits.BinTableHDU | fits.TableHDU)), None)
            if table_hdu is None:
                raise CatalogueError(f"{path}: no table extension")
            return list(table_hdu.columns.names)
    if name.endswith(CSV_SUFFIXES):
        return list(pd.read_csv(path, nrows=0).columns)
    raise CatalogueError(f"{path}: unknown table format; name the file *.csv or *.fits")


def _numeric_where_possible(frame: pd.DataFrame, text_columns: set) -> pd.DataFrame:
    for column in frame.columns:
        if column in text_columns:
            continue
        converted = pd.to_numeric(frame[column].replace("", np.nan), errors="coerce")
        if converted.notna().sum() == (frame[column] != "").sum():
            frame[column] = converted
    return frame


def _row_name(path, i: int) -> str:
    line = f", line {i + 2}" if str(path).lower().endswith(CSV_SUFFIXES) else ""
    return f"{path}: row {i + 1}{line}"


def build_user_catalogue(path, columns: dict, n_shards: int,
                         r90_over_r50: float = DEFAULT_R90_OVER_R50) -> pd.DataFrame:
    """A user's own table (CSV or FITS) as the DECaLS-side catalogue.

    ``columns`` maps ``id``, ``ra``, ``dec`` (degrees, ICRS) and ``petro_th50`` and/or
    ``petro_th90`` (Petrosian 50%/90% light radii, arcsec; ``None`` when absent) to the
    table's column names. A missing radius is derived from the other with
    ``r90_over_r50``. Other columns are kept. Any bad value raises
    :class:`CatalogueError` naming the file, row and column.
    """
    from .cutouts import check_galaxy_id

    wanted = {k: columns.get(k) for k in ("id", "ra", "dec", "petro_th50", "petro_th90")}
    table = read_table(path, text_columns={wanted["id"]})
    if not wanted["petro_th50"] and not wanted["petro_th90"]:
        raise CatalogueError(f"{path}: give a radius column (petro_th50 and/or petro_th90) in the configuration")
    missing = [f"{k} -> {v!r}" for k, v in wanted.items() if v and v not in table.columns]
    if missing:
        raise CatalogueError(f"{path}: columns not found: {', '.join(missing)}; the table has {list(table.columns)}")
    if not len(table):
        raise CatalogueError(f"{path}: the table has no rows")

    ids = table[wanted["id"]].astype(str).str.strip()
    for i, gid in enumerate(ids):
        try:
            check_galaxy_id(gid)
        except ValueError as err:
            raise CatalogueError(f"{_row_name(path, i)}, column {wanted['id']!r}: {err}") from None
    duplicated = ids.duplicated()
    if duplicated.any():
        i = int(np.flatnonzero(duplicated)[0])
        raise CatalogueError(f"{_row_name(path, i)}: duplicate id {ids.iloc[i]!r}")

    def numbers(key, low, high, low_open=False):
        name = wanted[key]
        raw = table[name]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(float)
        bad = ~np.isfinite(values) | (values <= low if low_open else values < low) | (values > high)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
            raise CatalogueError(f"{_row_name(path, i)}, column {name!r}: {raw.iloc[i]!r} is not a number in "
                                 f"{bound} ({int(bad.sum())} such rows)")
        return values

    ra = numbers("ra", 0.0, 360.0)
    dec = numbers("dec", -90.0, 90.0)
    th50 = numbers("petro_th50", 0.0, 3600.0, low_open=True) if wanted["petro_th50"] else None
    th90 = numbers("petro_th90", 0.0, 3600.0, low_open=True) if wanted["petro_th90"] else None
    if th50 is None:
        th50 = th90 / r90_over_r50
    if th90 is None:
        th90 = th50 * r90_over_r50
    core = pd.DataFrame({"galaxy_id": ids.to_numpy(), "ra": ra % 360.0, "dec": dec,
                         "petro_th50": th50, "petro_th90": th90})
    used = {v for v in wanted.values() if v}
    extra = table[[c for c in table.columns if c not in used and c not in core.columns and c != "shard"]]
    out = pd.concat([core, extra.reset_index(drop=True)], axis=1)
    out.insert(1, "shard", assign_shards(out["galaxy_id"], n_shards))
    return out


def read_catalogue(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"galaxy_id": str})
