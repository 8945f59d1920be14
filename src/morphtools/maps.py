"""Representation maps (paper Figs 1, A1, A2): PCA-15 compressed to 2-D with UMAP, and
galaxy thumbnails placed at their 2-D positions.

A1 and A2 repeat the map for featured-only and spiral-only galaxies, chosen by the
model's own predicted vote fractions (as the paper used the W+22 automated fractions).
With thousands of galaxies the thumbnails would hide each other, so the map is cut into
a square grid and each occupied cell shows the galaxy nearest its centre, drawn at the
cell centre (within half a cell of the galaxy's own position).
"""

from __future__ import annotations

import h5py
import numpy as np

from .storage import decode_ids

MIN_GALAXIES = 10  # fewer than this make no meaningful map


def read_predicted_fractions(path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(galaxy_ids (n,), predicted vote fractions (n, a) float32, answer names (a,)) from a
    representation.h5 (layout in morphtools.embedding; read with h5py alone so map jobs
    need no deep-learning framework)."""
    with h5py.File(path, "r") as f:
        return (decode_ids(f["galaxy_id"][:]), np.asarray(f["predicted_fractions"][:], np.float32),
                [str(a) for a in f.attrs["answers"]])


def subset_mask(fractions: np.ndarray, answers, thresholds: dict[str, float]) -> np.ndarray:
    """(n,) bool: galaxies whose predicted fraction exceeds every threshold.
    ``fractions`` (n, a); ``answers`` (a,) their column names (e.g.
    ``smooth-or-featured_featured-or-disk_fraction``); ``thresholds`` name -> minimum
    (exclusive). No thresholds selects every galaxy."""
    answers = [str(a) for a in answers]
    keep = np.ones(len(fractions), bool)
    for name, minimum in thresholds.items():
        if name not in answers:
            raise KeyError(f"no predicted fraction {name!r}; the model answers {answers}")
        keep &= fractions[:, answers.index(name)] > minimum
    return keep


def umap_2d(vectors: np.ndarray, seed: int, n_neighbors: int = 15, min_dist: float = 0.1) -> np.ndarray:
    """(n, 2) float32 UMAP embedding of ``vectors`` (n, d), Euclidean, deterministic for a
    seed (UMAP then runs single-threaded). Needs n > 2."""
    import umap  # imported here: numba compiles on import, seconds other callers need not pay

    n = len(vectors)
    if n < 3:
        raise ValueError(f"{n} galaxies are too few for a map")
    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, n - 1), min_dist=min_dist,
                        random_state=seed, init="spectral" if n > n_neighbors + 1 else "random")
    return reducer.fit_transform(np.asarray(vectors, np.float32)).astype(np.float32)


def grid_representatives(xy: np.ndarray, cells: int) -> tuple[np.ndarray, np.ndarray, float]:
    """One galaxy per occupied cell of a ``cells`` x ``cells`` grid over the map's square
    bounding box: the galaxy nearest the cell centre. Returns (rows (m,), cell centres
    (m, 2) in map units, cell size in map units)."""
    xy = np.asarray(xy, np.float64)
    if not len(xy):
        return np.zeros(0, np.int64), np.zeros((0, 2)), 1.0
    low = xy.min(axis=0)
    span = max(float((xy.max(axis=0) - low).max()), 1e-9)
    size = span / cells
    cell = np.minimum(((xy - low) / size).astype(np.int64), cells - 1)
    centres = low + (cell + 0.5) * size
    offset = np.linalg.norm(xy - centres, axis=1)
    key = cell[:, 0] * cells + cell[:, 1]
    order = np.lexsort((np.arange(len(xy)), offset, key))  # per cell, nearest its centre first
    first = order[np.r_[True, key[order][1:] != key[order][:-1]]]
    return first, centres[first], size
