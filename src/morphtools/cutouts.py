"""Survey cutouts: the request geometry GZ DECaLS used, FITS files in the Legacy Survey
format, validation, and the sources that provide them.

A cutout is a float32 cube (bands, H, W) in nanomaggies, as the Legacy Survey
``fits-cutout`` service returns. Every source implements :class:`CutoutSource`; the
simulated sky is the embedded default, the Legacy Survey HTTP client is the real one.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from astropy.io import fits

from .downloads import DownloadError
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


def field_grid(field_arcsec: float, native_pixscale: float, max_size: int) -> tuple[int, float]:
    """(pixels, arcsec per pixel) covering a square field: native pixels when fewer than
    ``max_size`` of them cover it, else ``max_size`` coarser ones (the image is resampled to
    424 px later either way, and larger requests cost memory as the square of the size)."""
    native_size = math.ceil(field_arcsec / native_pixscale)
    if native_size <= max_size:
        return native_size, native_pixscale
    return max_size, field_arcsec / max_size


def cutout_request(galaxy_id, ra, dec, petro_th50, petro_th90,
                   native_pixscale=NATIVE_PIXSCALE, max_size=MAX_REQUEST_SIZE) -> CutoutRequest:
    """The request GZ DECaLS made: native pixels when the field of view needs fewer than
    ``max_size`` of them, else ``max_size`` pixels at a coarser scale (resampled to 424
    later either way)."""
    if not (math.isfinite(petro_th50) and math.isfinite(petro_th90)):
        raise CutoutError(f"{galaxy_id}: no usable Petrosian radii (petro_th50={petro_th50}, "
                          f"petro_th90={petro_th90}) to set the field of view")
    size, pixscale = field_grid(GZ_IMAGE_SIZE * gz_decals_pixscale(petro_th50, petro_th90), native_pixscale, max_size)
    return CutoutRequest(str(galaxy_id), float(ra), float(dec), size, pixscale)


class CutoutError(Exception):
    """A cutout that cannot be used; the message names the galaxy/file and the reason."""


class CutoutSource(Protocol):
    """Anything that turns a request into a (bands, size, size) float32 cube.

    Optional: ``provenance`` (header cards written into every cutout) and
    ``content_key(request)`` (header cards a cached cutout must carry, equal, to answer the
    request, e.g. the data release or the simulation's rendering digest; a cutout without
    them is fetched again)."""

    bands: str

    def fetch(self, request: CutoutRequest) -> np.ndarray: ...


def write_fits_atomic(path: str | os.PathLike, cube: np.ndarray, request: CutoutRequest | None = None,
                      bands: str = "grz", extra_header: dict | None = None) -> None:
    """Write ``cube`` as a Legacy-Survey-style FITS primary HDU, atomically (temp + rename),
    so an interrupted run never leaves a truncated file under the final name. The request
    (centre, pixel scale, galaxy) goes in the header, which is what the cache compares."""
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
    for key, value in (extra_header or {}).items():
        hdu.header[key] = value
    with atomic_path(path) as tmp:
        hdu.writeto(tmp, overwrite=True)


def validate_cube(cube: np.ndarray, expected_bands: int = 3, max_blank_fraction: float = 0.2,
                  name: str = "cutout", expected_size: int | None = None) -> np.ndarray:
    """Check a cutout as GZ DECaLS did; returns it as float32 or raises :class:`CutoutError`.

    Rejects: wrong dimensionality or band count, non-square images (or not ``expected_size``
    pixels across, when given), and any band where more than ``max_blank_fraction`` of
    pixels are zero or non-finite (no coverage comes back as blank data, not as an HTTP
    error).
    """
    cube = np.asarray(cube)
    if cube.ndim != 3:
        raise CutoutError(f"{name}: expected a (bands, H, W) cube, got shape {cube.shape}")
    if cube.shape[0] != expected_bands:
        raise CutoutError(f"{name}: expected {expected_bands} bands, got {cube.shape[0]}")
    if cube.shape[1] != cube.shape[2] or cube.shape[1] < 8:
        raise CutoutError(f"{name}: expected a square image, got {cube.shape[1]}x{cube.shape[2]}")
    if expected_size is not None and cube.shape[1] != expected_size:
        raise CutoutError(f"{name}: expected {expected_size}x{expected_size} pixels, got "
                          f"{cube.shape[1]}x{cube.shape[2]}")
    blank = (~np.isfinite(cube)) | (cube == 0)
    blank_fraction = blank.reshape(cube.shape[0], -1).mean(axis=1)
    if (blank_fraction > max_blank_fraction).any():
        worst = int(np.argmax(blank_fraction))
        raise CutoutError(
            f"{name}: band {worst} is {blank_fraction[worst]:.0%} blank (no coverage), "
            f"limit {max_blank_fraction:.0%}"
        )
    return np.nan_to_num(cube.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def cube_from_fits_bytes(body: bytes, name: str = "cutout") -> np.ndarray:
    """The image cube of a FITS file held in memory (primary HDU, else the first image
    extension); raises :class:`CutoutError` naming ``name`` when it is not readable FITS."""
    try:
        with fits.open(io.BytesIO(body), memmap=False) as hdul:
            data = next((h.data for h in hdul if getattr(h, "data", None) is not None and h.is_image), None)
            if data is None:
                raise CutoutError(f"{name}: FITS file holds no image data")
            return np.array(data)
    except CutoutError:
        raise
    except Exception as err:  # astropy raises several types for truncated or garbage files
        raise CutoutError(f"{name}: unreadable FITS ({type(err).__name__}: {err})") from err


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


# -- the cutout cache ---------------------------------------------------------------------------------------------

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-]{0,127}$")


def check_galaxy_id(galaxy_id: str) -> str:
    """Ids name files: letters, digits and ``. _ + -`` only (IAU names and integers pass;
    ``/``, ``..`` or spaces could escape or break the cache)."""
    if not SAFE_ID.match(galaxy_id) or ".." in galaxy_id:
        raise ValueError(f"galaxy id {galaxy_id!r} cannot name a file: use letters, digits and . _ + - only")
    return galaxy_id


def cutout_path(cache_dir, galaxy_id: str) -> Path:
    """``cache_dir/<bucket>/<id>.fits``; the 256 buckets (two hex digits of a hash of the
    id) keep directories small for catalogues of 10^5 to 10^6 galaxies."""
    bucket = hashlib.blake2b(galaxy_id.encode(), digest_size=1).hexdigest()
    return Path(cache_dir) / bucket / f"{check_galaxy_id(galaxy_id)}.fits"


def rejection_path(fits_path: Path) -> Path:
    """Where a permanent rejection (no coverage, wrong bands) of a request is remembered."""
    return fits_path.with_name(fits_path.name[: -len(".fits")] + ".rejected.json")


def _fits_size(header) -> int:
    """Bytes a single-HDU FITS file with this header occupies (header and data padded to
    2880-byte blocks)."""
    block = 2880
    header_bytes = len(header.tostring())  # padded to whole blocks
    data_bytes = abs(int(header["BITPIX"])) // 8 * math.prod(int(header[f"NAXIS{i}"])
                                                           for i in range(1, int(header["NAXIS"]) + 1))
    return header_bytes + -(-data_bytes // block) * block


def cached_cutout_problem(path: Path, request: CutoutRequest, bands: str,
                          content_key: dict[str, str] | None = None) -> str | None:
    """None when the cached file answers ``request`` (same bands, size, centre and pixel
    scale, the header cards in ``content_key`` equal, complete on disk); else why not.
    Reads only the header: files are written atomically and checked in full when fetched
    and when preprocessed."""
    try:
        header = fits.getheader(path, 0)
    except Exception as err:  # any unreadable header means: fetch again
        return f"unreadable header ({type(err).__name__})"
    try:
        if (int(header["NAXIS"]), int(header["NAXIS3"])) != (3, len(bands)) or str(header.get("BANDS")) != bands:
            return f"holds bands {header.get('BANDS')!r}, want {bands!r}"
        if int(header["NAXIS1"]) != request.size or int(header["NAXIS2"]) != request.size:
            return f"is {header['NAXIS1']}x{header['NAXIS2']} px, want {request.size}x{request.size}"
        if abs(float(header["RA"]) - request.ra) > 1e-6 or abs(float(header["DEC"]) - request.dec) > 1e-6:
            return "is centred elsewhere (catalogue position changed)"
        if not math.isclose(float(header["PIXSCALE"]), request.pixscale, rel_tol=1e-6):
            return f"has pixscale {header['PIXSCALE']}, want {request.pixscale:.6g} (radius changed)"
        for key, value in (content_key or {}).items():
            if str(header.get(key)) != str(value):
                return f"was made from other data or code ({key} {header.get(key)!r}, want {value!r})"
        if path.stat().st_size != _fits_size(header):
            return f"is {path.stat().st_size} bytes, header implies {_fits_size(header)} (truncated)"
    except (KeyError, ValueError, TypeError) as err:
        return f"header lacks the request ({err})"
    return None


def _request_record(request: CutoutRequest, bands: str, max_blank_fraction: float,
                    content_key: dict[str, str] | None = None) -> dict:
    return {"galaxy_id": request.galaxy_id, "ra": request.ra, "dec": request.dec, "size": request.size,
            "pixscale": request.pixscale, "bands": bands, "max_blank_fraction": max_blank_fraction,
            "content_key": dict(content_key or {})}


def cached_rejection(path: Path, request: CutoutRequest, bands: str, max_blank_fraction: float,
                     content_key: dict[str, str] | None = None) -> str | None:
    """The remembered reason this exact request was rejected, or None. The source's
    ``content_key`` must match too: a new rendering or data release may answer what an
    older one could not (a record from before content keys has none)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    wanted = _request_record(request, bands, max_blank_fraction, content_key)
    same = all(
        math.isclose(record.get(k, math.nan), v, rel_tol=1e-9, abs_tol=1e-9) if isinstance(v, float)
        else record.get(k, {} if k == "content_key" else None) == v
        for k, v in wanted.items()
    )
    return record.get("reason") if same else None


def remember_rejection(path: Path, request: CutoutRequest, bands: str, max_blank_fraction: float,
                       reason: str, content_key: dict[str, str] | None = None) -> None:
    record = _request_record(request, bands, max_blank_fraction, content_key) | {"reason": reason}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record))


def remove_stale_parts(cache_dir, galaxy_ids, log=None) -> int:
    """Delete temporary files a killed job left for these galaxies (``<id>.fits.*.part``).
    Only this shard's galaxies: another shard's job may be writing in the same folders."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return 0
    ids = set(galaxy_ids)
    removed = 0
    for bucket in os.scandir(cache_dir):
        if not bucket.is_dir():
            continue
        for entry in os.scandir(bucket.path):
            name = entry.name
            if name.endswith(".part") and ".fits." in name and name.split(".fits.", 1)[0] in ids:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
    if removed and log:
        log.info("removed %d unfinished files left by an interrupted run", removed)
    return removed


MANIFEST_COLUMNS = ["galaxy_id", "path", "status", "reason"]
FETCH_FAILURE_STATUSES = ("rejected", "failed")


def fetch_shard(rows, source: CutoutSource, cache_dir, id_column: str = "galaxy_id",
                max_blank_fraction: float = 0.2, native_pixscale: float = NATIVE_PIXSCALE,
                max_size: int = MAX_REQUEST_SIZE, concurrency: int = 1, progress=None, log=None):
    """Fetch (or find in ``cache_dir``) the FITS cutout of every galaxy in ``rows``.

    ``rows`` needs ``galaxy_id`` (or ``id_column``), ``ra``, ``dec`` (degrees) and
    ``petro_th50``, ``petro_th90`` (arcsec), which set each request's field of view.
    Up to ``concurrency`` requests run at once (threads; the source must be thread-safe
    when it is above 1). ``progress`` is a factory ``total -> bar`` (``update``/``close``)
    over the galaxies to fetch.

    Returns a manifest DataFrame ``galaxy_id, path, status, reason`` in row order, status:

    - ``cached``: a file answering this request (same centre, size, pixel scale, bands,
      and the source's ``content_key`` cards) was already on disk; nothing is fetched
      twice;
    - ``fetched``: downloaded, validated, written atomically;
    - ``rejected``: the data cannot be used (no coverage, wrong band count or shape); the
      verdict is remembered beside the cache so a re-run does not ask again;
    - ``failed``: the service did not deliver (errors after every retry); asked again on
      the next run.
    """
    import pandas as pd

    cache_dir = Path(cache_dir)
    bands = source.bands
    ids = [check_galaxy_id(str(g)) for g in rows[id_column]]
    remove_stale_parts(cache_dir, ids, log)
    provenance = dict(getattr(source, "provenance", {}) or {})
    records: list[tuple | None] = [None] * len(ids)
    content_key = getattr(source, "content_key", None)
    requests_: list[CutoutRequest | None] = []
    for i, (gid, ra, dec, th50, th90) in enumerate(zip(ids, rows["ra"], rows["dec"], rows["petro_th50"],
                                                       rows["petro_th90"], strict=True)):
        try:
            requests_.append(cutout_request(gid, ra, dec, float(th50), float(th90), native_pixscale, max_size))
        except CutoutError as err:  # e.g. a catalogue row without radii: recorded, not fatal
            requests_.append(None)
            records[i] = (gid, "", "rejected", str(err))
    todo = []
    keys: dict[int, dict[str, str]] = {}
    for i, (gid, request) in enumerate(zip(ids, requests_, strict=True)):
        if request is None:
            continue
        keys[i] = dict(content_key(request)) if content_key is not None else {}
        path = cutout_path(cache_dir, gid)
        if path.exists():
            problem = cached_cutout_problem(path, request, bands, keys[i])
            if problem is None:
                records[i] = (gid, str(path), "cached", "")
                continue
            if log:
                log.info("%s: cached cutout %s; fetching again", gid, problem)
        else:
            reason = cached_rejection(rejection_path(path), request, bands, max_blank_fraction, keys[i])
            if reason is not None:
                records[i] = (gid, "", "rejected", reason)
                continue
        todo.append(i)
    if log:
        log.info("%d galaxies: %d already answered by the cache, %d to fetch (%d at a time)",
                 len(ids), len(ids) - len(todo), len(todo), concurrency)

    def fetch_one(i: int) -> tuple:
        gid, request = ids[i], requests_[i]
        path = cutout_path(cache_dir, gid)
        try:
            cube = source.fetch(request)
            cube = validate_cube(cube, len(bands), max_blank_fraction, name=gid, expected_size=request.size)
        except CutoutError as err:  # the data itself is unusable: remember the verdict
            remember_rejection(rejection_path(path), request, bands, max_blank_fraction, str(err), keys[i])
            return (gid, "", "rejected", str(err))
        except Exception as err:  # a service failure for one galaxy must not sink the shard
            detail = str(err) if isinstance(err, DownloadError) else f"{type(err).__name__}: {err}"
            return (gid, "", "failed", f"{gid}: {detail}")
        write_fits_atomic(path, cube, request, bands, {**provenance, **keys[i]})
        rejection_path(path).unlink(missing_ok=True)
        return (gid, str(path), "fetched", "")

    bar = progress(len(todo)) if (progress is not None and todo) else None
    pool = ThreadPoolExecutor(max_workers=max(1, int(concurrency)), thread_name_prefix="cutout")
    try:
        futures = {pool.submit(fetch_one, i): i for i in todo}
        for future in as_completed(futures):
            record = future.result()
            records[futures[future]] = record
            if record[2] != "fetched" and log:
                log.warning("galaxy %s %s: %s", record[0], record[2], record[3])
            if bar is not None:
                bar.update(1)
    finally:
        # on an interrupt, drop what has not started; running requests finish or time out
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    return pd.DataFrame.from_records(records, columns=MANIFEST_COLUMNS)
