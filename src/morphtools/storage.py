"""Atomic file writing and the per-shard HDF5 layout.

A crops shard holds ``galaxy_id`` (n,) strings, ``images`` (n, crop, crop) uint8 greyscale
and ``thumbnails`` (n, t, t, 3) uint8 colour, with the preprocessing parameters as
attributes. Files are written under a temporary name and renamed, so a reader never sees
half a file and an interrupted job leaves nothing under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".part"):
    """Yield a temporary path beside ``path``; rename it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=suffix)
    os.close(fd)
    # mkstemp makes the file private (0600); give it the permissions a plain open() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(df: pd.DataFrame, path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def decode_ids(values) -> np.ndarray:
    """HDF5 string ids (bytes or str) -> object array of str, shape (n,)."""
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object)


def write_crops_shard(path, galaxy_ids, images: np.ndarray, thumbnails: np.ndarray, attrs: dict) -> None:
    galaxy_ids = np.asarray([str(g) for g in galaxy_ids], dtype=object)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("galaxy_id", data=galaxy_ids, dtype=h5py.string_dtype())
        crop = images.shape[1] if len(images) else int(attrs.get("resize_to", 300))
        f.create_dataset(
            "images", data=images.reshape(-1, crop, crop).astype(np.uint8),
            chunks=(1, crop, crop) if len(images) else None, compression="gzip", compression_opts=4,
        )
        t = thumbnails.shape[1] if len(thumbnails) else int(attrs.get("thumbnail_size", 128))
        f.create_dataset("thumbnails", data=thumbnails.reshape(-1, t, t, 3).astype(np.uint8), compression="gzip")
        for k, v in attrs.items():
            f.attrs[k] = v


def read_crops_shard(path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(galaxy_ids (n,), images (n, c, c) uint8, thumbnails (n, t, t, 3) uint8, attrs)."""
    with h5py.File(path, "r") as f:
        ids = decode_ids(f["galaxy_id"][:])
        return ids, f["images"][:], f["thumbnails"][:], dict(f.attrs)


def read_thumbnails(path, galaxy_ids) -> np.ndarray:
    """(len(galaxy_ids), t, t, 3) uint8 colour thumbnails of the named galaxies of one crops
    shard, in the order asked, reading only their rows."""
    with h5py.File(path, "r") as f:
        stored = {g: i for i, g in enumerate(decode_ids(f["galaxy_id"][:]))}
        missing = [g for g in galaxy_ids if str(g) not in stored]
        if missing:
            raise KeyError(f"{path}: no thumbnails for {missing[:5]}")
        rows = np.array([stored[str(g)] for g in galaxy_ids], np.int64)
        unique, inverse = np.unique(rows, return_inverse=True)  # h5py reads increasing rows only
        thumbs = f["thumbnails"]
        if not len(unique):
            return np.zeros((0, *thumbs.shape[1:]), np.uint8)
        return thumbs[unique][inverse]
