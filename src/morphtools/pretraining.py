"""Pretraining the vote-answering EfficientNetB0: data, augmentation, resumable training.

Images come from the per-shard crops files (uint8, (n, r, r) at the resized size ``r``);
labels are the catalogue's vote counts. Augmentation happens in numpy per galaxy (random
rotation with reflected edges, random flips, random crop ``r -> crop``), so it is identical
on every Keras backend; inference takes the centre crop.

Training resumes after a kill: every epoch the full model (weights and optimiser state) and
the early-stopping state are written atomically to a checkpoint folder, tagged with a
fingerprint of the data and settings so a stale checkpoint is never resumed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from scipy import ndimage

from .model import (
    ModelSpec,
    build_model,
    compile_model,
    file_sha256,
    keras_classes,
    machine_description,
    training_forward,
)
from .storage import atomic_path, decode_ids

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingParams:
    """Epochs are passes over the training split; ``patience`` in epochs of no improvement
    in validation loss; ``validation_fraction`` of galaxies (chosen by id hash) is held out
    for early stopping and never trained on; ``batchnorm_galaxies`` training galaxies
    (centre crops) set the BatchNorm statistics after every epoch (0: keep the moving
    averages)."""

    epochs: int = 100
    batch_size: int = 128
    learning_rate: float = 1e-3
    patience: int = 8
    validation_fraction: float = 0.1
    seed: int = 0
    batchnorm_galaxies: int = 1024


# --- images ----------------------------------------------------------------------------------

class ImageStore:
    """Greyscale images of many crops shards addressed by one global row index.

    Loaded into memory when they fit in ``max_memory_bytes`` (the demo); otherwise read from
    the HDF5 files batch by batch, so memory does not grow with the catalogue.
    """

    def __init__(self, paths, max_memory_bytes: int = 4 << 30):
        self.paths = [str(p) for p in paths]
        ids, offsets, shapes = [], [0], set()
        for p in self.paths:
            with h5py.File(p, "r") as f:
                ids.extend(decode_ids(f["galaxy_id"][:]))
                offsets.append(offsets[-1] + len(f["galaxy_id"]))
                if len(f["images"]):
                    shapes.add(f["images"].shape[1:])
        if len(shapes) > 1:
            raise ValueError(f"crops shards disagree on image size: {sorted(shapes)} ({self.paths})")
        self.galaxy_ids = np.asarray(ids, dtype=object)
        self.offsets = np.asarray(offsets)
        self.image_shape = shapes.pop() if shapes else (0, 0)
        n_bytes = len(ids) * int(np.prod(self.image_shape))
        self._memory = None
        if n_bytes <= max_memory_bytes:
            self._memory = np.concatenate(
                [self._read_file(p, slice(None)) for p in self.paths]
            ) if self.paths else np.zeros((0, *self.image_shape), np.uint8)

    @staticmethod
    def _read_file(path, index):
        with h5py.File(path, "r") as f:
            return f["images"][index]

    def __len__(self) -> int:
        return len(self.galaxy_ids)

    def pixels_digest(self, rows_per_read: int = 4096) -> str:
        """Hex SHA-256 of every image's pixels in row order, read in batches of
        ``rows_per_read`` when they are not in memory (a few seconds per GB)."""
        h = hashlib.sha256()
        if self._memory is not None:
            h.update(np.ascontiguousarray(self._memory).tobytes())
            return h.hexdigest()
        for path, rows in zip(self.paths, np.diff(self.offsets), strict=True):
            for first in range(0, int(rows), rows_per_read):
                batch = self._read_file(path, slice(first, min(first + rows_per_read, int(rows))))
                h.update(np.ascontiguousarray(batch).tobytes())
        return h.hexdigest()

    def read(self, rows: np.ndarray) -> np.ndarray:
        """uint8 (len(rows), r, r) in the order of ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._memory is not None:
            return self._memory[rows]
        out = np.empty((len(rows), *self.image_shape), np.uint8)
        file_of = np.searchsorted(self.offsets, rows, side="right") - 1
        for k in np.unique(file_of):
            sel = np.flatnonzero(file_of == k)
            # h5py wants strictly increasing indices: read each row once, then place it
            # wherever it was asked for (a repeated training ring is asked for several times)
            local, where = np.unique(rows[sel] - self.offsets[k], return_inverse=True)
            out[sel] = self._read_file(self.paths[k], local)[where]
        return out


def centre_crop(images: np.ndarray, crop: int) -> np.ndarray:
    """(n, r, r) -> (n, crop, crop), the same pixels for every galaxy."""
    r = images.shape[1]
    if crop > r:
        raise ValueError(f"crop {crop} px is larger than the stored images ({r} px)")
    start = (r - crop) // 2
    return images[:, start:start + crop, start:start + crop]


def draw_augmentation(rng: np.random.Generator, size: int, crop: int) -> tuple[float, bool, bool, int, int]:
    """The random choices of one training view of a (size, size) image: rotation angle in
    degrees, horizontal flip, vertical flip, and the crop's top-left (row, column). Drawn
    in one fixed order, so a batch's views do not depend on how they are then computed."""
    angle = rng.uniform(0.0, 360.0)
    flip_horizontal = rng.random() < 0.5
    flip_vertical = rng.random() < 0.5
    y, x = rng.integers(0, size - crop + 1, size=2)
    return angle, flip_horizontal, flip_vertical, int(y), int(x)


def apply_augmentation(image: np.ndarray, crop: int, view: tuple[float, bool, bool, int, int]) -> np.ndarray:
    """One training view (:func:`draw_augmentation`'s choices) of one galaxy: rotation
    (bilinear, edges reflected), flips, then the ``crop`` square. (r, r) -> (crop, crop)
    float32."""
    angle, flip_horizontal, flip_vertical, y, x = view
    rotated = ndimage.rotate(image.astype(np.float32), angle, reshape=False, order=1, mode="reflect")
    if flip_horizontal:
        rotated = rotated[:, ::-1]
    if flip_vertical:
        rotated = rotated[::-1, :]
    return rotated[y:y + crop, x:x + crop]


def augment(image: np.ndarray, crop: int, rng: np.random.Generator) -> np.ndarray:
    """One training view of one galaxy: rotation by a uniform angle (bilinear, edges
    reflected), random horizontal and vertical flips, random ``crop`` square. (r, r) ->
    (crop, crop) float32."""
    return apply_augmentation(image, crop, draw_augmentation(rng, image.shape[0], crop))


def model_input(images: np.ndarray) -> np.ndarray:
    """(n, c, c) pixels -> (n, c, c, 1) float32, as the network takes them."""
    return np.asarray(images, np.float32)[..., None]


def split_by_id(galaxy_ids, validation_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask, True for validation galaxies. Decided per galaxy id (a hash), so adding
    galaxies never moves an existing one between splits."""
    def unit(gid):
        h = hashlib.blake2b(f"{seed}:{gid}".encode(), digest_size=8).digest()
        return int.from_bytes(h, "little") / 2**64

    return np.array([unit(g) < validation_fraction for g in galaxy_ids], dtype=bool)


def vote_counts(catalogue: pd.DataFrame, galaxy_ids, spec: ModelSpec) -> np.ndarray:
    """(n, n_answers) float32 vote counts for ``galaxy_ids`` in the head's order. Missing
    galaxies or missing vote columns raise, naming them.

    A galaxy with no votes at all (every answer column empty: in the real catalogue, NSA
    galaxies that GZD-5 volunteers never saw) gets zero counts, so it adds exactly nothing
    to the loss, as an unasked question does. Partly empty or negative counts raise."""
    missing_cols = [c for c in spec.answer_columns if c not in catalogue.columns]
    if missing_cols:
        raise KeyError(f"catalogue has no vote-count column(s) {missing_cols[:5]}")
    indexed = catalogue.set_index(catalogue["galaxy_id"].astype(str))
    ids = [str(g) for g in galaxy_ids]
    absent = [g for g in ids if g not in indexed.index]
    if absent:
        raise KeyError(f"{len(absent)} galaxies with crops are not in the catalogue, e.g. {absent[:3]}")
    counts = indexed.loc[ids, spec.answer_columns].to_numpy(np.float64, copy=True)
    unvoted = np.isnan(counts).all(axis=1)
    counts[unvoted] = 0.0
    bad = ~np.isfinite(counts).all(axis=1) | (counts < 0).any(axis=1)
    if bad.any():
        raise ValueError(f"invalid vote counts for galaxies {[ids[i] for i in np.flatnonzero(bad)[:5]]}")
    return np.nan_to_num(counts).astype(np.float32)


class VoteBatches:
    """Batches of (augmented or centre-cropped images (b, crop, crop, 1), vote counts
    (b, n_answers)). The order and augmentation of epoch ``e`` depend only on (seed, e), so
    a resumed run sees the batches it would have seen.

    Training batches (``augment_images``) all have ``batch_size`` galaxies: the few left
    over after the last full batch are skipped for that epoch (a different few each epoch,
    as the order is reshuffled), because a batch of another shape makes the compiled
    training step trace again, which costs seconds per epoch on a CPU. ``augment_workers``
    threads compute a training batch's views (the same views for any number of workers):
    on a GPU the one-thread rotation at the paper's 300 px would keep it waiting."""

    def __init__(self, store: ImageStore, rows, counts, crop: int, batch_size: int, augment_images: bool,
                 seed: int, augment_workers: int = 1):
        self.store, self.rows, self.counts = store, np.asarray(rows), counts
        self.crop, self.batch_size = crop, batch_size
        self.augment_workers = max(1, int(augment_workers))
        self.drop_remainder = augment_images and len(self.rows) >= batch_size
        self.augment_images, self.seed = augment_images, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int):
        self.epoch = epoch
        rng = np.random.default_rng([self.seed, epoch])
        self.order = rng.permutation(len(self.rows)) if self.augment_images else np.arange(len(self.rows))

    def __len__(self):
        if self.drop_remainder:
            return len(self.rows) // self.batch_size
        return math.ceil(len(self.rows) / self.batch_size)

    @property
    def galaxies_per_epoch(self) -> int:
        return min(len(self.rows), len(self) * self.batch_size)

    def __getitem__(self, i):
        sel = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        images = self.store.read(self.rows[sel])
        if self.augment_images:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            choices = [draw_augmentation(rng, images.shape[1], self.crop) for _ in range(len(images))]
            views = np.empty((len(images), self.crop, self.crop), np.float32)

            def compute(part):
                for j in part:
                    views[j] = apply_augmentation(images[j], self.crop, choices[j])

            parts = np.array_split(np.arange(len(images)), min(self.augment_workers, len(images)))
            if len(parts) > 1:
                # the rotation releases the GIL for part of its work; the choices are drawn
                # first, so the batch is the same whatever the number of workers
                with ThreadPoolExecutor(max_workers=len(parts)) as pool:
                    list(pool.map(compute, parts))
            else:
                compute(parts[0])
        else:
            views = centre_crop(images, self.crop)
        return model_input(views), self.counts[sel]

    def __iter__(self):
        """Yield the batches in order, preparing the next one in a thread while the
        network trains on the current one."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(self.__getitem__, 0) if len(self) else None
            for i in range(len(self)):
                batch = pending.result()
                pending = pool.submit(self.__getitem__, i + 1) if i + 1 < len(self) else None
                yield batch


# --- resumable training ---------------------------------------------------------------------

def fingerprint(galaxy_ids, counts: np.ndarray, spec: ModelSpec, params: TrainingParams, image_shape,
                initial_weights_digest: str | None = None, pixels_digest: str | None = None) -> str:
    """Changes whenever the data or settings of a training run change, or the weights it
    starts from. The stopping rules (epoch limit, patience) are left out so that raising
    them continues a finished run instead of restarting it. ``pixels_digest``
    (:meth:`ImageStore.pixels_digest`) ties it to the images themselves, so that the same
    galaxies and votes with new pixels (a new rendering, other cutouts or preprocessing)
    start afresh."""
    h = hashlib.sha256()
    settings = {k: v for k, v in asdict(params).items() if k not in ("epochs", "patience")}
    identity = {"spec": asdict(spec), "params": settings, "image_shape": list(image_shape)}
    if initial_weights_digest is not None:  # absent otherwise: existing checkpoints still resume
        identity["initial_weights"] = initial_weights_digest
    if pixels_digest is not None:
        identity["pixels"] = pixels_digest
    h.update(json.dumps(identity, sort_keys=True).encode())
    for g in galaxy_ids:
        h.update(str(g).encode() + b"\0")
    h.update(np.ascontiguousarray(counts, np.float32).tobytes())
    return h.hexdigest()


class Checkpoint:
    """``last.keras`` (model + optimiser), ``best.weights.npz`` and ``state.json`` in one
    folder; all written atomically.

    Weights-only checkpoints are ``.weights.npz``: the model's variables in
    ``model.weights`` order, uncompressed. Keras' ``save_weights`` (HDF5, one dataset per
    variable) took about 0.5 s per write for EfficientNetB0 on a 2-core CPU, as long as a
    fine-tuning epoch's training at the demo's sizes; this takes a few hundredths."""

    def __init__(self, folder, fingerprint_: str):
        self.folder = Path(folder)
        self.fingerprint = fingerprint_
        self.last = self.folder / "last.keras"
        self.best = self.folder / "best.weights.npz"
        self.state_path = self.folder / "state.json"

    def load_state(self) -> dict | None:
        """The saved state if it belongs to this run and its files are all there."""
        if not (self.state_path.exists() and self.last.exists() and self.best.exists()):
            return None
        try:
            state = json.loads(self.state_path.read_text())
        except json.JSONDecodeError:
            return None
        if state.get("fingerprint") != self.fingerprint:
            log.info("checkpoint in %s is from different data or settings; starting afresh", self.folder)
            return None
        return state

    def save_state(self, state: dict):
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.state_path) as tmp:
            Path(tmp).write_text(json.dumps({**state, "fingerprint": self.fingerprint}, indent=1))

    def save_model(self, model, path: Path):
        """Write ``model`` to ``path``: a full model (``.keras``, with the optimiser's
        state) or its weights only (``.weights.npz``)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        suffix = ".weights.npz" if path.name.endswith(".weights.npz") else ".keras"
        tmp = path.with_name(path.name.removesuffix(suffix) + ".part" + suffix)
        if suffix == ".keras":
            model.save(tmp)
        else:
            with open(tmp, "wb") as f:
                np.savez(f, *model.get_weights())
        os.replace(tmp, path)

    @staticmethod
    def load_weights(model, path: Path):
        """Set ``model``'s variables from a ``.weights.npz`` written by :meth:`save_model`."""
        with np.load(path) as arrays:
            weights = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
        try:
            model.set_weights(weights)
        except ValueError as error:
            raise ValueError(f"{path} does not fit {model.name}: {error}") from error


def record_epoch(state: dict, row: dict, val_loss: float, model, checkpoint: Checkpoint | None) -> bool:
    """Early-stopping book-keeping after one epoch: append ``row`` to the history; if the
    validation loss is the best so far, save the weights as the checkpoint's best (unless
    ``checkpoint`` is None: the caller keeps them) and reset the patience counter, else
    count one more epoch without improvement. Returns whether this epoch was the best."""
    state["history"].append(row)
    if val_loss < state["best_val_loss"]:
        state.update(best_val_loss=val_loss, best_epoch=row["epoch"], wait=0)
        if checkpoint is not None:
            checkpoint.save_model(model, checkpoint.best)
        state["epochs_done"] = row["epoch"]
        return True
    state["wait"] += 1
    state["epochs_done"] = row["epoch"]
    return False


def recompute_batchnorm_statistics(model, batches) -> int:
    """Set every BatchNorm layer's moving mean and variance to the average of its batch
    statistics over ``batches`` (an iterable of model inputs), as seen at inference: dropout
    (including EfficientNet's stochastic depth) off. Returns the number of batches used.

    Why: inference uses the moving averages, which during training trail weights that are
    still changing fast and are measured on augmented views with stochastic depth on. On
    the simulated survey they made the validation loss of successive epochs jump by up to
    3x and the embedded representation a poor copy of what the network learned. This is
    "precise BatchNorm" (Wu & Johnson 2021): a cumulative average, so every batch counts
    equally. Weights are untouched; momentum and dropout rates are restored afterwards.

    Each batch runs through a compiled training-mode forward pass (see
    :func:`morphtools.model.training_forward`) with momentum 0, so each layer's moving values are that
    batch's statistics; they are summed here, outside the compiled function, because a
    momentum that changed from batch to batch would be traced as a constant."""
    import keras

    layers = list(all_layers(model))
    norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    drops = [layer for layer in layers if isinstance(layer, keras.layers.Dropout)]
    momenta, rates = [n.momentum for n in norms], [d.rate for d in drops]
    sums = [[np.zeros(n.moving_mean.shape, np.float64), np.zeros(n.moving_variance.shape, np.float64)]
            for n in norms]
    used = 0
    try:
        for d in drops:
            d.rate = 0.0
        for n in norms:
            n.momentum = 0.0
        forward = training_forward(model)
        for x in batches:
            forward(x)
            for (mean_sum, var_sum), n in zip(sums, norms, strict=True):
                mean_sum += keras.ops.convert_to_numpy(n.moving_mean)
                var_sum += keras.ops.convert_to_numpy(n.moving_variance)
            used += 1
    finally:
        for n, m in zip(norms, momenta, strict=True):
            n.momentum = m
        for d, r in zip(drops, rates, strict=True):
            d.rate = r
    if used:
        for (mean_sum, var_sum), n in zip(sums, norms, strict=True):
            n.moving_mean.assign((mean_sum / used).astype(n.moving_mean.dtype))
            n.moving_variance.assign((var_sum / used).astype(n.moving_variance.dtype))
    return used


def all_layers(model):
    """Every layer of ``model``, descending into nested models."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


def seed_dropout(model, seed: int) -> int:
    """Set the state of every random generator of ``model``'s layers (dropout, and
    EfficientNet's stochastic depth, which is dropout too; nested models included) from
    ``seed``, each layer its own stream. Called at the start of each epoch with a seed made
    from the run's seed and the epoch, so an epoch draws the same masks whether or not the
    run was resumed. Returns the number of generators set.

    Why not ``keras.utils.set_random_seed``: Keras layers draw from their own generators,
    which it does not reset; and on TensorFlow a new global seed clears the kernel caches,
    so the next training step set itself up again (8 s for EfficientNetB0 on this 2-core
    machine, every epoch of every job)."""
    import keras

    generators, seen = [], set()
    for layer in all_layers(model):
        for generator in [getattr(layer, "seed_generator", None), *getattr(layer, "_seed_generators", ())]:
            if isinstance(generator, keras.random.SeedGenerator) and id(generator) not in seen:
                seen.add(id(generator))
                generators.append(generator)
    if not generators:
        return 0
    streams = np.random.SeedSequence([int(seed) % 2**63]).generate_state(len(generators), np.uint32)
    for generator, stream in zip(generators, streams, strict=True):
        generator.state.assign(np.array([int(stream) >> 1, 0], dtype=generator.state.dtype))
    return len(generators)


def batchnorm_rows(train_rows: np.ndarray, n: int, seed: int, epoch: int) -> np.ndarray:
    """Up to ``n`` training rows for the BatchNorm statistics after ``epoch``, in increasing
    order (HDF5 reads); a fresh seeded sample each epoch, so a resumed run draws the same."""
    rng = np.random.default_rng([seed, epoch, 7])
    take = min(n, len(train_rows))
    return np.sort(rng.choice(train_rows, size=take, replace=False))


def predict_padded(model, x: np.ndarray, batch_size: int):
    """``model.predict_on_batch`` with a short batch padded to ``batch_size`` (and the
    padding dropped from the outputs), so every call has one shape and nothing is traced
    twice. Works for models with one output or several."""
    n = len(x)
    if n < batch_size:
        x = np.concatenate([x, np.zeros((batch_size - n, *x.shape[1:]), x.dtype)])
    out = model.predict_on_batch(x)
    if isinstance(out, (list, tuple)):
        return [np.asarray(o)[:n] for o in out]
    return np.asarray(out)[:n]


def predict_centre_crops(model, images, crop: int, batch_size: int = 128, progress=None,
                         desc: str = "predicting") -> list[np.ndarray]:
    """Run ``model`` (inference mode) on the centre ``crop`` px crops of (n, r, r) uint8
    ``images`` (an array, or anything sliced like one) in batches of ``batch_size``, with a
    progress bar when ``progress`` (a tqdm-like factory) is given. Returns one float32
    array per model output, each (n, ...), in the images' order."""
    n = len(images)
    outputs = None
    bar = progress(total=n, desc=desc, unit="galaxy") if progress else None
    # one (padded) batch even when n == 0, so the outputs' shapes are known
    for start in range(0, max(n, 1), batch_size):
        x = model_input(centre_crop(np.asarray(images[start:start + batch_size]), crop))
        out = predict_padded(model, x, batch_size)
        out = list(out) if isinstance(out, list) else [out]
        if outputs is None:
            outputs = [np.empty((n, *o.shape[1:]), np.float32) for o in out]
        for target, values in zip(outputs, out, strict=True):
            target[start:start + len(x)] = values
        if bar is not None:
            bar.update(len(x))
    if bar is not None:
        bar.close()
    return outputs


def validation_loss(model, batches: VoteBatches, spec: ModelSpec) -> float:
    """Mean per-galaxy Dirichlet-multinomial NLL on centre crops (dropout off), computed in
    float64 from the predicted concentrations."""
    from .model import dirichlet_multinomial_log_prob_numpy

    total, n = 0.0, 0
    for x, counts in batches:
        conc = predict_padded(model, x, batches.batch_size).astype(np.float64)
        nll = -sum(dirichlet_multinomial_log_prob_numpy(counts[:, sl], conc[:, sl]) for _, sl in spec.question_slices)
        total += float(nll.sum())
        n += len(x)
    return total / max(n, 1)


def batch_loss(model, x, y, where: str) -> float:
    """One ``train_on_batch`` step; returns the loss on that batch alone (Keras 3 resets
    the metrics at every ``train_on_batch`` call, so it is not a running mean). A loss
    that is not finite raises ``FloatingPointError`` naming ``where``."""
    loss = float(np.ravel(model.train_on_batch(x, y))[0])
    if not np.isfinite(loss):
        raise FloatingPointError(f"training loss became {loss} in {where}")
    return loss


def epoch_mean_loss(batch_losses, batch_sizes) -> float:
    """The epoch's mean training loss per galaxy: each batch's mean loss weighted by its
    number of galaxies (the last batch is usually short). NaN for an empty epoch."""
    sizes = np.asarray(batch_sizes, float)
    return float(np.dot(batch_losses, sizes) / sizes.sum()) if sizes.sum() > 0 else float("nan")


def train_one_epoch(model, batches: VoteBatches, progress=None, desc: str = "") -> float:
    """One pass of ``train_on_batch`` (faster and steadier than ``fit`` on a generator on
    a two-core machine); returns the epoch's mean training loss per galaxy."""
    bar = progress(total=batches.galaxies_per_epoch, desc=desc, unit="galaxy") if progress else None
    losses, sizes = [], []
    for x, y in batches:
        losses.append(batch_loss(model, x, y, desc))
        sizes.append(len(x))
        if bar is not None:
            bar.update(len(x))
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    if bar is not None:
        bar.close()
    return epoch_mean_loss(losses, sizes)


HISTORY_COLUMNS = ["epoch", "loss", "val_loss", "seconds", "images_per_second", "batchnorm_seconds",
                   "epoch_seconds", "machine"]


def pretrain(store: ImageStore, counts: np.ndarray, spec: ModelSpec, params: TrainingParams,
             checkpoint_dir, progress=None, logger=None, augment_workers: int = 1, initial_weights=None):
    """Train from random initialisation, or from ``initial_weights`` (a ``.weights.h5`` file
    of a model answering the same questions; any crop size, since the network ends in
    global pooling: e.g. a model trained at 64 px continued at 96 px), resuming from
    ``checkpoint_dir`` if it holds this run's checkpoint. ``counts`` (len(store),
    n_answers) aligned with ``store``'s rows. Stops after ``params.epochs`` or
    ``params.patience`` epochs without a better validation loss. ``augment_workers``:
    threads for the training views (results do not depend on it).

    Returns (model with the best validation weights, history DataFrame with one row per
    epoch, :data:`HISTORY_COLUMNS`: mean training loss, validation loss, and wall times in
    seconds of the training pass, the BatchNorm pass and the whole epoch, with the training
    images per second, and the machine the epoch ran on (:func:`model.machine_description`;
    empty for epochs recorded before it was kept). A run resumed on another CPU type goes
    on from the same weights, but its later epochs are not those the first machine would
    have computed.
    """
    import keras

    is_val = split_by_id(store.galaxy_ids, params.validation_fraction, params.seed)
    train_rows, val_rows = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ValueError(f"{len(store)} galaxies give {len(train_rows)} training and {len(val_rows)} "
                         f"validation galaxies; both must be non-empty")
    start_digest = None if initial_weights is None else file_sha256(initial_weights)
    checkpoint = Checkpoint(checkpoint_dir, fingerprint(store.galaxy_ids, counts, spec, params, store.image_shape,
                                                        start_digest, store.pixels_digest()))
    state = checkpoint.load_state()
    if state is not None:
        keras_classes()  # registers the custom layer and loss the checkpoint names
        model = keras.saving.load_model(checkpoint.last)
        if logger:
            logger.info("resuming from %s after epoch %d", checkpoint.folder, state["epochs_done"])
    else:
        state = {"epochs_done": 0, "best_val_loss": float("inf"), "best_epoch": 0, "wait": 0,
                 "stopped_early": False, "history": []}
        model = compile_model(build_model(spec, seed=params.seed), spec, params.learning_rate)
        if initial_weights is not None:
            try:
                model.load_weights(initial_weights)
            except (ValueError, OSError) as error:  # another head, another format, or not a weights file
                raise ValueError(f"initial weights {initial_weights} could not be loaded into a model answering "
                                 f"{spec.n_answers} answers: {error}") from error
            if logger:
                logger.info("starting from the weights in %s", initial_weights)
    train = VoteBatches(store, train_rows, counts[train_rows], spec.crop_size, params.batch_size, True, params.seed,
                        augment_workers=augment_workers)
    val = VoteBatches(store, val_rows, counts[val_rows], spec.crop_size, params.batch_size, False, params.seed)
    machine = machine_description()
    if logger:
        logger.info("pretraining on %d galaxies, validating on %d; crop %d px; %d answers; backend %s",
                    len(train_rows), len(val_rows), spec.crop_size, spec.n_answers, keras.config.backend())
        logger.info("machine: %s", machine)
    if state["stopped_early"] and state["wait"] < params.patience:
        state["stopped_early"] = False  # patience was raised: carry on
    while not state["stopped_early"] and state["epochs_done"] < params.epochs:
        epoch = state["epochs_done"]
        t0 = time.perf_counter()
        seed_dropout(model, params.seed * 1000 + epoch)  # this epoch's dropout masks, resumable
        train.set_epoch(epoch)
        loss = train_one_epoch(model, train, progress, desc=f"epoch {epoch + 1}/{params.epochs}")
        seconds = time.perf_counter() - t0  # training only: images_per_second is the training rate
        batchnorm_seconds = 0.0
        if params.batchnorm_galaxies > 0:
            t1 = time.perf_counter()
            rows = batchnorm_rows(train_rows, params.batchnorm_galaxies, params.seed, epoch)
            stats = VoteBatches(store, rows, counts[rows], spec.crop_size, params.batch_size, False, params.seed)
            recompute_batchnorm_statistics(model, (x for x, _ in stats))
            batchnorm_seconds = time.perf_counter() - t1
        val_loss = validation_loss(model, val, spec)
        row = {"epoch": epoch + 1, "loss": loss, "val_loss": val_loss, "seconds": seconds,
               "images_per_second": train.galaxies_per_epoch / seconds, "batchnorm_seconds": batchnorm_seconds,
               "machine": machine}
        record_epoch(state, row, val_loss, model, checkpoint)
        state["stopped_early"] = state["wait"] >= params.patience
        checkpoint.save_model(model, checkpoint.last)
        # the whole epoch: training, BatchNorm pass, validation and checkpoint writes
        row["epoch_seconds"] = time.perf_counter() - t0
        checkpoint.save_state(state)
        if logger:
            logger.info("epoch %d: loss %.4f, val_loss %.4f (best %.4f at epoch %d); %.0f s (training %.0f s at "
                        "%.1f images/s, BatchNorm pass %.0f s)", epoch + 1, loss, val_loss, state["best_val_loss"],
                        state["best_epoch"], row["epoch_seconds"], seconds, row["images_per_second"],
                        batchnorm_seconds)
    if state["stopped_early"] and logger:
        logger.info("stopped early: no better validation loss for %d epochs", params.patience)
    checkpoint.load_weights(model, checkpoint.best)
    return model, pd.DataFrame(state["history"], columns=HISTORY_COLUMNS)
