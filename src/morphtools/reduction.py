"""Incremental PCA of the representation, streamed from HDF5 in row batches so memory
depends on the batch size, not on the catalogue size.

One IncrementalPCA with the largest requested number of components is fitted; the 10-, 15-
and 40-component projections are its leading columns (principal components are nested, so
this equals separate fits up to the incremental approximation, at a third of the cost).
"""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
from sklearn.decomposition import IncrementalPCA

from .storage import atomic_path, decode_ids


def batch_bounds(n_rows: int, batch_size: int, min_rows: int) -> list[tuple[int, int]]:
    """Row ranges of about ``batch_size`` covering ``n_rows``; the last range is merged
    into the previous one when shorter than ``min_rows`` (IncrementalPCA needs at least
    n_components rows per partial fit)."""
    if n_rows < min_rows:
        raise ValueError(f"{n_rows} galaxies are fewer than the {min_rows} PCA components asked for")
    bounds = [(s, min(s + batch_size, n_rows)) for s in range(0, n_rows, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < min_rows:
        last = bounds.pop()
        bounds[-1] = (bounds[-1][0], last[1])
    return bounds


def fit_incremental_pca(path, n_components: int = 40, batch_size: int = 20000,
                        dataset: str = "representation") -> IncrementalPCA:
    """Fit on ``dataset`` of the HDF5 file at ``path``, reading one batch at a time."""
    ipca = IncrementalPCA(n_components=n_components)
    with h5py.File(path, "r") as f:
        data = f[dataset]
        for start, stop in batch_bounds(data.shape[0], batch_size, n_components):
            ipca.partial_fit(np.asarray(data[start:stop], np.float64))
    return ipca


def write_projections(path_in, path_out, ipca: IncrementalPCA, dims=(10, 15, 40), batch_size: int = 20000,
                      dataset: str = "representation") -> None:
    """Write ``galaxy_id`` and ``pca_{d}`` (n, d) float32 for each d in ``dims`` (atomic),
    plus the PCA's mean and components so new galaxies can be projected the same way."""
    if max(dims) > ipca.n_components_:
        raise ValueError(f"asked for {max(dims)} components from a {ipca.n_components_}-component PCA")
    with h5py.File(path_in, "r") as f_in, atomic_path(path_out) as tmp, h5py.File(tmp, "w") as f_out:
        n = f_in[dataset].shape[0]
        f_out.create_dataset("galaxy_id", data=f_in["galaxy_id"][:], dtype=h5py.string_dtype())
        outs = {d: f_out.create_dataset(f"pca_{d}", shape=(n, d), dtype=np.float32) for d in dims}
        for start, stop in batch_bounds(n, batch_size, 1):
            projected = ipca.transform(np.asarray(f_in[dataset][start:stop], np.float64))
            for d, out in outs.items():
                out[start:stop] = projected[:, :d]
        f_out.create_dataset("mean", data=ipca.mean_)
        f_out.create_dataset("components", data=ipca.components_)
        f_out.create_dataset("explained_variance_ratio", data=ipca.explained_variance_ratio_)
        for k, v in f_in.attrs.items():
            f_out.attrs[k] = v
        f_out.attrs["pca_dims"] = list(dims)


def explained_variance_table(ipca: IncrementalPCA, dims=(10, 15, 40)) -> pd.DataFrame:
    """Per requested dimension: the fraction of the representation's variance kept
    (cumulative explained variance ratio)."""
    cumulative = np.cumsum(ipca.explained_variance_ratio_)
    return pd.DataFrame({
        "n_components": list(dims),
        "explained_variance": [float(cumulative[d - 1]) for d in dims],
        "last_component_variance": [float(ipca.explained_variance_ratio_[d - 1]) for d in dims],
    })


def read_projection(path, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """(galaxy_ids, (n, dims) float32) from a PCA file."""
    with h5py.File(path, "r") as f:
        ids = decode_ids(f["galaxy_id"][:])
        return ids, f[f"pca_{dims}"][:]
