"""Representations: the pretrained network's 1280-d pooled features and predicted vote
fractions for every galaxy of a crops shard, into HDF5; then one merged file per survey.

Per-shard file (and the merged file) layout:
  ``galaxy_id``            (n,) str
  ``representation``       (n, 1280) float32, EfficientNetB0 global-average-pooled features
  ``predicted_fractions``  (n, n_answers) float32, expected vote fraction per answer
  attrs: ``model_sha256``, ``model_variant``, ``answers`` (column names), ``crop_size``,
  ``backend``, ``device``, and the preprocessing parameters of the crops.
The merged file adds ``shard`` (n,) int16 and is chunked by rows so readers can stream it.
"""

from __future__ import annotations

import time

import h5py
import numpy as np

from .model import REPRESENTATION_DIM, ModelSpec, expected_vote_fractions
from .pretraining import predict_centre_crops
from .storage import atomic_path, decode_ids

EMBEDDING_DATASETS = ("galaxy_id", "representation", "predicted_fractions")


def embed_images(embedder, images: np.ndarray, spec: ModelSpec, batch_size: int = 128, progress=None):
    """(n, r, r) uint8 images -> (representation (n, 1280) float32, fractions (n, n_answers)
    float32), centre-cropped to ``spec.crop_size`` in batches."""
    reps, concentrations = predict_centre_crops(embedder, images, spec.crop_size, batch_size, progress, "embedding")
    return reps, expected_vote_fractions(concentrations, spec)


def write_embeddings(path, galaxy_ids, representation, fractions, attrs: dict, shard=None,
                     chunk_rows: int = 1024) -> None:
    """Atomic write of one embeddings file (see the module docstring for the layout)."""
    n = len(galaxy_ids)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("galaxy_id", data=np.asarray([str(g) for g in galaxy_ids], dtype=object),
                         dtype=h5py.string_dtype())
        for name, data in (("representation", representation), ("predicted_fractions", fractions)):
            data = np.asarray(data, np.float32)
            if data.ndim != 2 or len(data) != n:
                raise ValueError(f"{path}: {name} has shape {data.shape}, expected ({n}, d)")
            chunks = (max(1, min(n, chunk_rows)), data.shape[1]) if n else None
            f.create_dataset(name, data=data, chunks=chunks)
        if shard is not None:
            f.create_dataset("shard", data=np.asarray(shard, np.int16))
        for k, v in attrs.items():
            f.attrs[k] = v


def read_embeddings(path, datasets=EMBEDDING_DATASETS) -> dict:
    """All of the named datasets (ids decoded to str) plus ``attrs``."""
    out = {}
    with h5py.File(path, "r") as f:
        for name in datasets:
            if name not in f:
                raise KeyError(f"{path}: no dataset {name!r} (has {list(f)})")
            data = f[name][:]
            if name == "galaxy_id":
                data = decode_ids(data)
            out[name] = data
        out["attrs"] = dict(f.attrs)
    return out


def embed_shard(crops_path, embedder, spec: ModelSpec, out_path, identity: dict, batch_size: int = 128,
                progress=None, logger=None) -> int:
    """Embed every galaxy of one crops shard into ``out_path``. ``embedder`` is
    :func:`~morphtools.model.embedding_model` of the trained network, built once by the
    caller (building it again per shard would compile it again). ``identity``
    (model_sha256, model_variant, ...) is stored as attributes. Returns the number of
    galaxies."""
    import keras

    from .model import accelerator, machine_description

    with h5py.File(crops_path, "r") as f:
        ids = decode_ids(f["galaxy_id"][:])
        images = f["images"][:]
        crop_attrs = {f"preprocessing_{k}": v for k, v in f.attrs.items()}
    t0 = time.perf_counter()
    if len(ids):
        reps, fractions = embed_images(embedder, images, spec, batch_size, progress)
    else:
        reps = np.zeros((0, REPRESENTATION_DIM), np.float32)
        fractions = np.zeros((0, spec.n_answers), np.float32)
    bad = ~np.isfinite(reps).all(axis=1)
    if bad.any():
        raise FloatingPointError(f"{crops_path}: non-finite representation for galaxies {list(ids[bad][:5])}")
    # the machine too: on some CPUs the thread count and instruction set move the numbers
    attrs = {**identity, **crop_attrs, "answers": [c + "_fraction" for c in spec.answer_columns],
             "crop_size": spec.crop_size, "backend": keras.config.backend(), "device": accelerator(),
             "machine": machine_description()}
    write_embeddings(out_path, ids, reps, fractions, attrs)
    if logger:
        seconds = time.perf_counter() - t0
        logger.info("%s: %d galaxies embedded in %.1f s (%.1f galaxies/s)", crops_path, len(ids), seconds,
                    len(ids) / max(seconds, 1e-9))
    return len(ids)


def merge_embeddings(shard_paths, out_path, chunk_rows: int = 1024) -> int:
    """Concatenate per-shard embeddings (streamed shard by shard) into one chunked file.
    All shards must come from the same model; the first shard's attributes are kept, but
    for ``machine``, which lists every distinct machine the shards were embedded on
    (joined by " | "; e.g. a cluster's nodes of two CPU types)."""
    shard_paths = [str(p) for p in shard_paths]
    sizes, attrs, dims, machines = [], None, None, []
    for p in shard_paths:
        with h5py.File(p, "r") as f:
            sizes.append(len(f["galaxy_id"]))
            these = dict(f.attrs)
            this_dims = (f["representation"].shape[1], f["predicted_fractions"].shape[1])
        if "machine" in these and str(these["machine"]) not in machines:
            machines.append(str(these["machine"]))
        if attrs is None:
            attrs, dims = these, this_dims
        elif these.get("model_sha256") != attrs.get("model_sha256"):
            raise ValueError(f"{p}: embedded with model {these.get('model_sha256')}, other shards with "
                             f"{attrs.get('model_sha256')}; re-embed it")
        elif this_dims != dims:
            raise ValueError(f"{p}: dimensions {this_dims} differ from {dims}")
    n = int(sum(sizes))
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as out:
        gid = out.create_dataset("galaxy_id", shape=(n,), dtype=h5py.string_dtype())
        rep = out.create_dataset("representation", shape=(n, dims[0]), dtype=np.float32,
                                 chunks=(max(1, min(n, chunk_rows)), dims[0]) if n else None)
        frac = out.create_dataset("predicted_fractions", shape=(n, dims[1]), dtype=np.float32,
                                  chunks=(max(1, min(n, chunk_rows)), dims[1]) if n else None)
        shard = out.create_dataset("shard", shape=(n,), dtype=np.int16)
        start = 0
        for k, p in enumerate(shard_paths):
            with h5py.File(p, "r") as f:
                m = len(f["galaxy_id"])
                gid[start:start + m] = f["galaxy_id"][:]
                rep[start:start + m] = f["representation"][:]
                frac[start:start + m] = f["predicted_fractions"][:]
                shard[start:start + m] = k
            start += m
        for k, v in (attrs or {}).items():
            out.attrs[k] = v
        if machines:
            out.attrs["machine"] = " | ".join(machines)
        out.attrs["n_shards"] = len(shard_paths)
    return n


def representation_summary(path, pca_variance, survey: str) -> dict:
    """One row describing a merged representation file: size, model identity, how the
    vectors are spread, and the PCA variance kept (from ``pca_variance``, a table from
    :func:`morphtools.reduction.explained_variance_table`)."""
    row = {"survey": survey}
    with h5py.File(path, "r") as f:
        rep = f["representation"]
        n, dim = rep.shape
        row.update(galaxies=int(n), dimensions=int(dim), model_variant=str(f.attrs.get("model_variant", "")),
                   model_sha256=str(f.attrs.get("model_sha256", ""))[:16], backend=str(f.attrs.get("backend", "")),
                   crop_size=int(f.attrs.get("crop_size", 0)))
        sums, sums_sq = np.zeros(dim), np.zeros(dim)
        for start in range(0, n, 4096):  # streamed: memory does not grow with the catalogue
            block = np.asarray(rep[start:start + 4096], np.float64)
            sums += block.sum(0)
            sums_sq += (block ** 2).sum(0)
        mean = sums / max(n, 1)
        variance = np.clip(sums_sq / max(n, 1) - mean ** 2, 0, None)
        row["mean_value"] = float(mean.mean())
        row["rms_value"] = float(np.sqrt(sums_sq.sum() / max(n * dim, 1)))
        # relative threshold: float rounding leaves a tiny variance on constant dimensions
        row["active_dimensions"] = int((variance > 1e-12 * max(float(variance.max()), 1e-30)).sum())
    for r in pca_variance.itertuples(index=False):
        row[f"pca{int(r.n_components)}_explained_variance"] = float(r.explained_variance)
    return row
