"""Similarity search: the galaxies nearest a query galaxy in a stored representation space.

The search is exact k-nearest neighbours by a full scan (no approximate index): every
stored galaxy's distance to the query is bounded in float32, the few galaxies that could
be among the k nearest are measured again in float64, and ties are broken by row order,
so the answer equals a float64 brute-force sort. Manhattan distance (sum |p_i - q_i|) is
the default, as in the paper; Euclidean is an option. The default space is PCA-10
(``pca_10`` in ``results/{survey}/pca.h5``); ``pca_15``, ``pca_40`` and the full 1280-d
``representation`` (``results/{survey}/representation.h5``) work the same way.

A query is a galaxy of the catalogue, given by id or by sky position (ra, dec in degrees,
matched to the nearest catalogue galaxy with astropy: a warning beyond 20", an error beyond
a chosen radius). Galaxies within 100" of the query on the sky are dropped from its
neighbours by default: there they are the same object catalogued twice (or a piece of it).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import h5py
import numpy as np
import pandas as pd
from astropy.coordinates import SkyCoord
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from .storage import decode_ids, read_thumbnails

METRICS = ("manhattan", "euclidean")
REPRESENTATION_SPACE = "representation"
DEFAULT_SPACE = "pca_10"
MATCH_WARNING_ARCSEC = 20.0     # the public app warned beyond this
MATCH_MAX_ARCSEC = 60.0         # default radius beyond which a position matches no galaxy
DUPLICATE_RADIUS_ARCSEC = 100.0  # neighbours this close on the sky are the query again

_EPS32 = float(np.finfo(np.float32).eps)
# elements of the largest temporary array one scan step makes (16 MB of float32)
_SCAN_ELEMENTS = 4_000_000
# spaces up to this wide are scanned in float64 for many queries at once; wider ones in
# float32, query by query, with error bounds
_NARROW_DIMS = 32
# float32 elements of the wide-space scan's buffer: 1 MB, to stay in a core's cache
_CACHE_ELEMENTS = 262_144


class SimilarityError(Exception):
    """A query that cannot be answered; the message says why and what to do."""


class UnknownGalaxyError(SimilarityError):
    """The galaxy id is not among the searchable galaxies."""


class SkyMatchError(SimilarityError):
    """The position is invalid, or no catalogue galaxy lies within the allowed radius."""


class MissingResultsError(SimilarityError, FileNotFoundError):
    """A file the search needs (embeddings, PCA, catalogue) is not in the results folder."""


class SkyMatchWarning(UserWarning):
    """The matched galaxy is farther from the given position than a typical match."""


@dataclass(frozen=True)
class SkyMatch:
    row: int                  # row of the matched galaxy in the index
    galaxy_id: str
    separation_arcsec: float  # from the given position to the matched galaxy


@dataclass(frozen=True)
class Neighbours:
    """Nearest neighbours of m queries, nearest first. ``rows`` (m, k) int64 index rows,
    -1 where fewer than k galaxies were left to return; ``distances`` (m, k) float64 in
    the space's units (NaN where ``rows`` is -1)."""

    rows: np.ndarray
    distances: np.ndarray


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r}: choose one of {METRICS}")


def _scan_bounds(queries: np.ndarray, block: np.ndarray, metric: str, block_sq_norms: np.ndarray | None):
    """Scan ``block`` (b, d) against ``queries`` (m, d): (lower, upper) (m, b) float64
    bounds on the exact score (Manhattan distance, or squared Euclidean distance).

    Narrow spaces are computed in float64 and both bounds are the score. Wide ones are
    computed in float32 and the bounds are worst-case rounding errors, four times over:
    float32 summation of d non-negative terms errs by at most d * eps/2 relative; the
    Euclidean dot-product form by at most d * eps/2 * (|x|^2 + |q|^2) absolute."""
    m, d = queries.shape
    relative = 2.0 * (d + 2) * _EPS32
    if metric == "euclidean" and block_sq_norms is not None:
        # |x - q|^2 = |x|^2 - 2 x.q + |q|^2: one matrix product, memory-bound, for wide spaces
        q_sq = np.einsum("ij,ij->i", queries, queries, dtype=np.float64)
        approx = (block_sq_norms[None, :] + q_sq[:, None]) - 2.0 * (queries @ block.T).astype(np.float64)
        slack = relative * (block_sq_norms[None, :] + q_sq[:, None])
        return np.maximum(approx - slack, 0.0), approx + slack
    if d <= _NARROW_DIMS:
        # narrow spaces: float64 distances straight away (scipy's C loop; numpy is slow at
        # reducing over a short last axis), so both bounds are the exact score
        exact = cdist(np.asarray(queries, np.float64), np.asarray(block, np.float64),
                      "cityblock" if metric == "manhattan" else "sqeuclidean")
        return exact, exact
    approx = np.empty((m, len(block)), np.float32)
    # wide spaces: one query at a time through a cache-sized buffer, every step in place
    # (three passes over a buffer in cache, not three over memory); differences, never the
    # dot-product form, so there is no cancellation and a relative bound holds
    rows_per_step = max(1, _CACHE_ELEMENTS // d)
    buffer = np.empty((min(len(block), rows_per_step), d), np.float32)
    for j, query in enumerate(queries):
        for start in range(0, len(block), rows_per_step):
            part = block[start:start + rows_per_step]
            work = buffer[:len(part)]
            np.subtract(part, query, out=work)
            if metric == "manhattan":
                np.abs(work, out=work)
            else:
                np.square(work, out=work)
            np.sum(work, axis=1, out=approx[j, start:start + len(part)])
    approx = approx.astype(np.float64)
    return approx * (1.0 - relative), approx * (1.0 + relative)


def exact_nearest(vectors: np.ndarray, queries: np.ndarray, k: int, metric: str = "manhattan",
                  excluded: list[np.ndarray] | None = None, sq_norms: np.ndarray | None = None) -> Neighbours:
    """Exact k nearest rows of ``vectors`` (n, d) to each of ``queries`` (m, d).

    Spaces up to 32-d are scanned in float64 (pass float64 vectors to save a conversion
    per call); wider ones are held as float32. ``excluded[j]``: rows never returned for
    query j (the query itself, its duplicates). ``sq_norms`` (n,) float64, the rows' squared norms, switches Euclidean scans to the
    dot-product form (faster in wide spaces). Ties are broken by row order; the result
    equals a float64 brute-force sort by (distance, row). Memory beyond the inputs: about
    100 MB at most (bounds for one block of queries, 64 MB, and one scan step's temporaries)."""
    _check_metric(metric)
    n, d = np.shape(vectors)
    vectors = np.ascontiguousarray(vectors, np.float64 if d <= _NARROW_DIMS else np.float32)
    queries = np.ascontiguousarray(np.atleast_2d(queries), vectors.dtype)
    if queries.shape[1] != d:
        raise ValueError(f"queries have {queries.shape[1]} dimensions, the vectors {d}")
    if k < 1:
        raise ValueError(f"k = {k}: ask for at least one neighbour")
    m = len(queries)
    excluded = excluded if excluded is not None else [np.zeros(0, np.int64)] * m
    if len(excluded) != m:
        raise ValueError(f"{len(excluded)} exclusion lists for {m} queries")
    rows_out = np.full((m, k), -1, np.int64)
    dist_out = np.full((m, k), np.nan)
    # lower and upper bounds for one block of queries: 2 x 8 bytes x 4M = 64 MB at most
    queries_per_block = max(1, min(32, _SCAN_ELEMENTS // max(n, 1)))
    cdist_metric = "cityblock" if metric == "manhattan" else "sqeuclidean"
    for q0 in range(0, m, queries_per_block):
        q_block = queries[q0:q0 + queries_per_block]
        lower = np.empty((len(q_block), n))
        # a narrow-space scan is exact: its bounds coincide and share one array
        exact_scan = d <= _NARROW_DIMS and not (metric == "euclidean" and sq_norms is not None)
        upper = lower if exact_scan else np.empty((len(q_block), n))
        # a scan step holds about eight (queries, rows) float64 temporaries (scores, bounds,
        # conversions): 32 MB at most
        per_row = 8 * len(q_block)
        block_rows = max(1, _SCAN_ELEMENTS // per_row)
        for start in range(0, n, block_rows):
            stop = min(n, start + block_rows)
            norms = None if sq_norms is None else sq_norms[start:stop]
            low, high = _scan_bounds(q_block, vectors[start:stop], metric, norms)
            lower[:, start:stop] = low
            if upper is not lower:
                upper[:, start:stop] = high
        for j in range(len(q_block)):
            skip = np.asarray(excluded[q0 + j], np.int64)
            lower[j, skip] = np.inf
            upper[j, skip] = np.inf  # the same row again when the scan was exact
            available = n - len(np.unique(skip))
            kk = min(k, available)
            if kk <= 0:
                continue
            # at least kk rows score at most their kk-th smallest upper bound, so every row
            # of the true kk nearest (ties included) has a lower bound at or below it
            threshold = np.partition(upper[j], kk - 1)[kk - 1]
            candidates = np.flatnonzero(lower[j] <= threshold)
            exact = cdist(queries[q0 + j][None].astype(np.float64), vectors[candidates].astype(np.float64),
                          cdist_metric)[0]
            order = np.lexsort((candidates, exact))[:kk]
            rows_out[q0 + j, :kk] = candidates[order]
            dist_out[q0 + j, :kk] = exact[order] if metric == "manhattan" else np.sqrt(exact[order])
    return Neighbours(rows_out, dist_out)


def _sky_coords(ra, dec) -> SkyCoord:
    return SkyCoord(np.asarray(ra, np.float64) * u.deg, np.asarray(dec, np.float64) * u.deg)


class SimilarityIndex:
    """The searchable galaxies of one survey in one space.

    ``galaxy_ids`` (n,) str; ``vectors`` (n, d), stored as float32; ``ra``/``dec`` (n,)
    degrees, or None for a catalogue without sky positions (then queries are by id only
    and duplicates on the sky cannot be dropped). ``unsearchable`` optionally lists
    catalogue galaxies without a representation (rejected in preprocessing) as a table
    with ``galaxy_id``, ``ra``, ``dec``, so a query for one of them is answered with why.
    """

    def __init__(self, galaxy_ids, vectors, ra=None, dec=None, space: str = DEFAULT_SPACE,
                 unsearchable: pd.DataFrame | None = None, shards=None):
        self.galaxy_ids = np.asarray([str(g) for g in galaxy_ids], dtype=object)
        self.vectors = np.ascontiguousarray(vectors, np.float32)
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.galaxy_ids):
            raise ValueError(f"vectors of shape {self.vectors.shape} for {len(self.galaxy_ids)} galaxy ids")
        self.space = space
        self.row_of = {g: i for i, g in enumerate(self.galaxy_ids)}
        if len(self.row_of) != len(self.galaxy_ids):
            raise ValueError("galaxy ids repeat: each galaxy must appear once")
        if (ra is None) != (dec is None):
            raise ValueError("give both ra and dec, or neither")
        self.ra = None if ra is None else np.asarray(ra, np.float64)
        self.dec = None if dec is None else np.asarray(dec, np.float64)
        self.coords = None if ra is None else _sky_coords(self.ra, self.dec)
        self.shards = None if shards is None else np.asarray(shards, np.int64)
        self.unsearchable = unsearchable if unsearchable is not None and len(unsearchable) else None
        self._sq_norms = None
        self._scan_vectors = None
        self._sky_tree = None

    def __len__(self) -> int:
        return len(self.galaxy_ids)

    @property
    def dimensions(self) -> int:
        return self.vectors.shape[1]

    @property
    def has_sky(self) -> bool:
        return self.coords is not None

    @classmethod
    def from_results(cls, results_dir, survey: str = "decals", space: str = DEFAULT_SPACE) -> SimilarityIndex:
        """Load a workflow results folder: ``{survey}/pca.h5`` (or ``representation.h5``
        for ``space="representation"``) and ``{survey}/catalogue.csv`` for positions."""
        survey_dir = Path(results_dir) / survey
        space_file = "representation.h5" if space == REPRESENTATION_SPACE else "pca.h5"
        return cls.from_files(survey_dir / space_file, survey_dir / "catalogue.csv", space)

    @classmethod
    def from_files(cls, space_path, catalogue_path, space: str = DEFAULT_SPACE) -> SimilarityIndex:
        """Load ``space`` from ``space_path`` (a pca.h5, or a representation.h5 for
        ``representation``) and positions and shards from the catalogue CSV."""
        if space == REPRESENTATION_SPACE:
            _require(space_path, "the embeddings (rule merge_embeddings)")
        else:
            _require(space_path, "the PCA projections (rule pca)")
            spaces = available_spaces(space_path)
            if space not in spaces:
                raise SimilarityError(f"space {space!r} is not stored; choose one of {spaces + [REPRESENTATION_SPACE]}")
        ids, vectors = read_stored_space(space_path, space)
        _require(catalogue_path, "the catalogue (rule decals_catalogue or gz2_catalogue)")
        header = pd.read_csv(catalogue_path, nrows=0).columns
        columns = [c for c in ("galaxy_id", "shard", "ra", "dec") if c in header]
        catalogue = pd.read_csv(catalogue_path, usecols=columns, dtype={"galaxy_id": str}).set_index("galaxy_id")
        missing = pd.Index(ids).difference(catalogue.index)
        if len(missing):
            raise SimilarityError(f"{space_path} holds {len(missing)} galaxies not in {catalogue_path} "
                                  f"(e.g. {list(missing[:3])}): the results folder is out of date; rerun the workflow")
        rows = catalogue.loc[list(ids)]
        sky = "ra" in catalogue.columns and "dec" in catalogue.columns
        unsearchable = catalogue.drop(index=list(ids)).reset_index() if sky else None
        return cls(ids, vectors, rows["ra"].to_numpy() if sky else None, rows["dec"].to_numpy() if sky else None,
                   space=space, unsearchable=unsearchable,
                   shards=rows["shard"].to_numpy() if "shard" in rows.columns else None)

    def row(self, galaxy_id: str) -> int:
        """Index row of a galaxy id; UnknownGalaxyError (saying why) when it has none."""
        galaxy_id = str(galaxy_id)
        if galaxy_id in self.row_of:
            return self.row_of[galaxy_id]
        if self.unsearchable is not None and galaxy_id in set(self.unsearchable["galaxy_id"]):
            raise UnknownGalaxyError(f"galaxy {galaxy_id!r} is in the catalogue but has no representation: it was "
                                     f"rejected in preprocessing (see the qa/ tables)")
        example = f" (ids look like {self.galaxy_ids[0]!r})" if len(self) else ""
        raise UnknownGalaxyError(f"galaxy {galaxy_id!r} is not in the catalogue of {len(self)} searchable "
                                 f"galaxies{example}")

    def match_sky(self, ra: float, dec: float, max_arcsec: float = MATCH_MAX_ARCSEC,
                  warn_arcsec: float = MATCH_WARNING_ARCSEC) -> SkyMatch:
        """The searchable galaxy nearest (ra, dec) in degrees (any ra, wrapped to [0, 360)).
        Warns (SkyMatchWarning) beyond ``warn_arcsec``; SkyMatchError beyond ``max_arcsec``."""
        if not self.has_sky:
            raise SkyMatchError("this catalogue has no sky positions (ra, dec): query by galaxy id")
        if not (np.isfinite(ra) and np.isfinite(dec)):
            raise SkyMatchError(f"position ({ra}, {dec}) is not a number")
        if not -90.0 <= dec <= 90.0:
            raise SkyMatchError(f"dec = {dec} deg is outside [-90, 90]")
        target = _sky_coords([ra % 360.0], [dec])
        row, separation, _ = target.match_to_catalog_sky(self.coords)
        row, separation = int(row[0]), float(separation.to_value(u.arcsec)[0])
        if separation > max_arcsec:
            raise SkyMatchError(f"no catalogue galaxy within {max_arcsec:g}\" of ra = {ra}, dec = {dec}: the nearest, "
                                f"{self.galaxy_ids[row]}, is {_describe_arcsec(separation)} away (outside the "
                                f"catalogue's footprint, or a wrong position?)")
        if self.unsearchable is not None:
            rejected = _sky_coords(self.unsearchable["ra"], self.unsearchable["dec"])
            r_row, r_sep, _ = target.match_to_catalog_sky(rejected)
            r_sep = float(r_sep.to_value(u.arcsec)[0])
            if r_sep < separation:
                warnings.warn(f"the catalogue galaxy nearest this position, {self.unsearchable['galaxy_id'].iloc[int(r_row[0])]} "
                              f"({r_sep:.1f}\"), was rejected in preprocessing and has no representation; using "
                              f"{self.galaxy_ids[row]} ({separation:.1f}\")", SkyMatchWarning, stacklevel=2)
        if separation > warn_arcsec:
            warnings.warn(f"nearest galaxy {self.galaxy_ids[row]} is {separation:.1f}\" from the position given "
                          f"(more than {warn_arcsec:g}\"): check it is the galaxy meant", SkyMatchWarning, stacklevel=2)
        return SkyMatch(row, str(self.galaxy_ids[row]), separation)

    def sky_neighbourhood(self, rows, radius_arcsec: float) -> list[np.ndarray]:
        """For each query row: the rows within ``radius_arcsec`` of it on the sky (itself
        included). A KD-tree of unit vectors, built once, answers in microseconds per
        query (a chord of 2 sin(theta / 2) is an angle of theta exactly)."""
        rows = np.atleast_1d(np.asarray(rows, np.int64))
        if not self.has_sky:
            raise SkyMatchError("this catalogue has no sky positions: duplicates cannot be found on the sky")
        if radius_arcsec <= 0 or not len(rows):
            return [np.array([r]) for r in rows]
        if self._sky_tree is None:
            ra, dec = np.radians(self.ra), np.radians(self.dec)
            self._unit = np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
            self._sky_tree = cKDTree(self._unit)
        chord = 2 * np.sin(np.radians(radius_arcsec / 3600) / 2)
        found = self._sky_tree.query_ball_point(self._unit[rows], chord)
        return [np.union1d(f, [r]).astype(np.int64) for f, r in zip(found, rows, strict=True)]

    def neighbours(self, rows, k: int, metric: str = "manhattan",
                   duplicate_radius_arcsec: float | None = DUPLICATE_RADIUS_ARCSEC) -> Neighbours:
        """The k nearest galaxies to each galaxy in ``rows`` (index rows), never itself and,
        unless ``duplicate_radius_arcsec`` is None or 0, none within that radius of it on
        the sky. An index without sky positions needs ``duplicate_radius_arcsec=None``."""
        _check_metric(metric)
        rows = np.atleast_1d(np.asarray(rows, np.int64))
        if duplicate_radius_arcsec:
            excluded = self.sky_neighbourhood(rows, duplicate_radius_arcsec)
        else:
            excluded = [np.array([r]) for r in rows]
        sq_norms = None
        if metric == "euclidean" and self.dimensions > 64:
            if self._sq_norms is None:
                self._sq_norms = np.einsum("ij,ij->i", self.vectors, self.vectors, dtype=np.float64)
            sq_norms = self._sq_norms
        if self._scan_vectors is None:
            # narrow spaces are scanned in float64: convert once, not per query
            narrow = self.dimensions <= _NARROW_DIMS
            self._scan_vectors = self.vectors.astype(np.float64) if narrow else self.vectors
        return exact_nearest(self._scan_vectors, self.vectors[rows], k, metric, excluded, sq_norms)

    def table(self, query_row: int, neighbours: Neighbours, which: int = 0) -> pd.DataFrame:
        """Rank 0 (the query) then ranks 1..k: galaxy_id, ra, dec (degrees; NaN without sky
        positions), distance (in the space's units), sky separation from the query (arcsec)."""
        found = neighbours.rows[which]
        found = found[found >= 0]
        rows = np.concatenate([[query_row], found])
        table = pd.DataFrame({
            "rank": np.arange(len(rows)),
            "galaxy_id": self.galaxy_ids[rows],
            "ra": self.ra[rows] if self.has_sky else np.nan,
            "dec": self.dec[rows] if self.has_sky else np.nan,
            "distance": np.concatenate([[0.0], neighbours.distances[which][:len(found)]]),
        })
        if self.has_sky:
            table["separation_arcsec"] = self.coords[rows].separation(self.coords[query_row]).to_value(u.arcsec)
        return table


def read_stored_space(path, space: str) -> tuple[np.ndarray, np.ndarray]:
    """(galaxy_ids (n,) str, vectors (n, d) float32) of one space: ``representation`` from
    a representation.h5 or ``pca_{d}`` from a pca.h5 (layouts in morphtools.embedding and
    morphtools.reduction). Read here with h5py alone: importing morphtools.embedding
    would load the deep-learning framework, seconds the command line should not wait."""
    with h5py.File(path, "r") as f:
        if space not in f:
            raise SimilarityError(f"{path} has no {space!r} (has {sorted(f)})")
        return decode_ids(f["galaxy_id"][:]), np.asarray(f[space][:], np.float32)


def available_spaces(pca_path) -> list[str]:
    """Names of the PCA spaces stored in a pca.h5 file, by dimension (``pca_10``, ...)."""
    with h5py.File(pca_path, "r") as f:
        return sorted((name for name in f if name.startswith("pca_")), key=lambda s: int(s.removeprefix("pca_")))


def thumbnails(index: SimilarityIndex, rows, crops_paths: dict[int, os.PathLike]) -> np.ndarray:
    """(len(rows), t, t, 3) uint8 colour thumbnails of index rows, read from the crops
    shards (``crops_paths``: shard number -> crops file)."""
    if index.shards is None:
        raise SimilarityError("the catalogue has no shard column: cannot find the galaxies' crops")
    rows = np.asarray(rows, np.int64)
    images = None
    for shard in np.unique(index.shards[rows]):
        path = crops_paths.get(int(shard))
        if path is None:
            raise SimilarityError(f"no crops file given for shard {shard}")
        _require(path, "the crops (rule preprocess)")
        chosen = np.flatnonzero(index.shards[rows] == shard)
        found = read_thumbnails(path, index.galaxy_ids[rows[chosen]])
        if images is None:
            images = np.zeros((len(rows), *found.shape[1:]), np.uint8)
        images[chosen] = found
    return images if images is not None else np.zeros((0, 1, 1, 3), np.uint8)


def _require(path: os.PathLike, what: str) -> None:
    if not Path(path).is_file():
        raise MissingResultsError(f"{path} not found: it holds {what}. Run the workflow first "
                                  f"(snakemake --cores all), or point --results at its results folder")


def _describe_arcsec(arcsec: float) -> str:
    if arcsec < 60:
        return f"{arcsec:.1f}\""
    if arcsec < 3600:
        return f"{arcsec / 60:.1f}'"
    return f"{arcsec / 3600:.2f} deg"
