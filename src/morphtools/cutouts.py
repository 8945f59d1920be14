"""Survey cutouts: the request geometry GZ DECaLS used, FITS files in the Legacy Survey
format, validation, and the sources that provide them.

A cutout is a float32 cube (bands, H, W) in nanomaggies, as the Legacy Survey
``fits-cutout`` service returns. Every source implements :class:`CutoutSource`; the
simulated sky is the embedded default, the Legacy Survey HTTP client is the real one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from astropy.io import fits

from .storage import atomic_path

NATIVE_PIXSCALE = 0.262  # DECam, arcsec per pixel
GZ_IMAGE_SIZE = 424  # GZ DECaLS image side, pixels
MAX_REQUEST_SIZE = 512


@dataclass(frozen=True)
class CutoutRequest:
    """What to ask a cutout service for. ``pixscale`` in arcsec/pixel, ``size`` in pixels."""

    galaxy_id: str
    ra: float
    dec: float
    size: int
    pixscale: float


def gz_decals_pixscale(petro_th50: float, petro_th90: float) -> float:
    """Arcsec per pixel of the 424-pixel GZ DECaLS image for radii in arcsec."""
    return max(min(petro_th50 * 0.04, petro_th90 * 0.02), 0.1)


def cutout_request(galaxy_id, ra, dec, petro_th50, petro_th90,
                   native_pixscale=NATIVE_PIXSCALE, max_size=MAX_REQUEST_SIZE) -> CutoutRequest:
    """The request GZ DECaLS made: native pixels when the field of view needs fewer than
    ``max_size`` of them, else ``max_size`` pixels at a coarser scale (resampled to 424
    later either way)."""
    field_arcsec = GZ_IMAGE_SIZE * gz_decals_pixscale(petro_th50, petro_th90)
    native_size = math.ceil(field_arcsec / native_pixscale)
    if native_size <= max_size:
        return CutoutRequest(str(galaxy_id), float(ra), float(dec), native_size, native_pixscale)
    return CutoutRequest(str(galaxy_id), float(ra), float(dec), max_size, field_arcsec / max_size)


class CutoutError(Exception):
    """A cutout that cannot be used; the message names the galaxy/file and the reason."""


class CutoutSource(Protocol):
    """Anything that turns a request into a (bands, size, size) float32 cube."""

    bands: str

    def fetch(self, request: CutoutRequest) -> np.ndarray: ...


def write_fits_atomic(path: str | os.PathLike, cube: np.ndarray, request: CutoutRequest | None = None,
                      bands: str = "grz") -> None:
    """Write ``cube`` as a Legacy-Survey-style FITS primary HDU, atomically (temp + rename),
    so an interrupted run never leaves a truncated file under the final name."""
    hdu = fits.PrimaryHDU(np.asarray(cube, dtype=np.float32))
    hdu.header["BANDS"] = bands
    for i, b in enumerate(bands):
        hdu.header[f"BAND{i}"] = b
    hdu.header["BUNIT"] = "nanomaggy"
    if request is not None:
        hdu.header["RA"] = request.ra
        hdu.header["DEC"] = request.dec
        hdu.header["PIXSCALE"] = request.pixscale
        hdu.header["OBJECT"] = request.galaxy_id
    with atomic_path(path) as tmp:
        hdu.writeto(tmp, overwrite=True)


def validate_cube(cube: np.ndarray, expected_bands: int = 3, max_blank_fraction: float = 0.2,
                  name: str = "cutout") -> np.ndarray:
    """Check a cutout as GZ DECaLS did; returns it as float32 or raises :class:`CutoutError`.

    Rejects: wrong dimensionality or band count, non-square images, and any band where
    more than ``max_blank_fraction`` of pixels are zero or non-finite (no coverage comes
    back as blank data, not as an HTTP error).
    """
    cube = np.asarray(cube)
    if cube.ndim != 3:
        raise CutoutError(f"{name}: expected a (bands, H, W) cube, got shape {cube.shape}")
    if cube.shape[0] != expected_bands:
        raise CutoutError(f"{name}: expected {expected_bands} bands, got {cube.shape[0]}")
    if cube.shape[1] != cube.shape[2] or cube.shape[1] < 8:
        raise CutoutError(f"{name}: expected a square image, got {cube.shape[1]}x{cube.shape[2]}")
    blank = (~np.isfinite(cube)) | (cube == 0)
    blank_fraction = blank.reshape(cube.shape[0], -1).mean(axis=1)
    if (blank_fraction > max_blank_fraction).any():
        worst = int(np.argmax(blank_fraction))
        raise CutoutError(
            f"{name}: band {worst} is {blank_fraction[worst]:.0%} blank (no coverage), "
            f"limit {max_blank_fraction:.0%}"
        )
    return np.nan_to_num(cube.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def read_fits_cutout(path: str | os.PathLike, expected_bands: int = 3,
                     max_blank_fraction: float = 0.2) -> np.ndarray:
    """Read and validate a FITS cutout; raises :class:`CutoutError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise CutoutError(f"{path}: missing")
    try:
        with fits.open(path, memmap=False) as hdul:
            data = hdul[0].data
            if data is None and len(hdul) > 1:
                data = hdul[1].data
            if data is None:
                raise CutoutError(f"{path}: no image data")
            data = np.array(data)
    except CutoutError:
        raise
    except Exception as err:  # astropy raises several types for truncated or garbage files
        raise CutoutError(f"{path}: unreadable FITS ({type(err).__name__}: {err})") from err
    return validate_cube(data, expected_bands, max_blank_fraction, name=str(path))


MANIFEST_COLUMNS = ["galaxy_id", "path", "status", "reason"]


def fetch_shard(rows, source: CutoutSource, cache_dir, id_column: str = "galaxy_id",
                max_blank_fraction: float = 0.2, native_pixscale: float = NATIVE_PIXSCALE,
                max_size: int = MAX_REQUEST_SIZE, progress=None, log=None):
    """Fetch (or find in ``cache_dir``) the FITS cutout of every galaxy in ``rows``.

    Returns a manifest DataFrame with ``galaxy_id, path, status, reason``: status is
    ``cached``, ``fetched`` or ``rejected``; a rejected galaxy (blank, wrong bands, service
    error) is recorded with its reason and the shard carries on. Nothing already in the
    cache is fetched again; files are written atomically.
    """
    import pandas as pd

    cache_dir = Path(cache_dir)
    records = []
    iterator = rows.itertuples(index=False)
    if progress is not None:
        iterator = progress(iterator, total=len(rows))
    for row in iterator:
        gid = str(getattr(row, id_column))
        path = cache_dir / f"{gid}.fits"
        if path.exists():
            try:
                read_fits_cutout(path, len(source.bands), max_blank_fraction)
                records.append((gid, str(path), "cached", ""))
                continue
            except CutoutError as err:
                if log:
                    log.warning("%s: cached cutout unusable, fetching again (%s)", gid, err)
                path.unlink(missing_ok=True)
        request = cutout_request(gid, row.ra, row.dec, row.petro_th50, row.petro_th90, native_pixscale, max_size)
        try:
            cube = validate_cube(source.fetch(request), len(source.bands), max_blank_fraction, name=gid)
            write_fits_atomic(path, cube, request, source.bands)
            records.append((gid, str(path), "fetched", ""))
        except CutoutError as err:
            if log:
                log.warning("galaxy %s rejected: %s", gid, err)
            records.append((gid, "", "rejected", str(err)))
        except Exception as err:  # a service failure for one galaxy must not sink the shard
            if log:
                log.warning("galaxy %s failed: %s: %s", gid, type(err).__name__, err)
            records.append((gid, "", "rejected", f"{gid}: {type(err).__name__}: {err}"))
    return pd.DataFrame.from_records(records, columns=MANIFEST_COLUMNS)
