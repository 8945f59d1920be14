"""Fine-tuning a pretrained EfficientNetB0 to find rings from few labels (W+22 section 4).

The pieces, each usable on its own:

- :func:`ring_dataset`: candidates cut on the pretrained model's *predicted* vote fractions
  (featured and not edge-on, so the same cut works on unlabelled galaxies), labelled from
  the ring vote fraction (ring above ``ring_min``, not-ring below ``not_ring_max``, the
  rest dropped).
- :func:`make_split`: the paper's splits: 30% of the rings held out (10% validation, 20%
  test) with as many not-rings; the remaining rings repeated 5x and matched by as many
  unique not-rings; the training set cut to the target size by dropping random rows;
  validation and test never cut.
- :func:`build_finetune_model`: an initialisation ('multi', a single-question variant,
  'imagenet' or 'scratch') as an EfficientNetB0 base plus the paper's head,
  GAP -> Dense(64, relu) -> Dropout(0.75) -> Dense(64, relu) -> Dropout(0.75) ->
  Dense(1, sigmoid).
- :func:`set_unfrozen_depth`: unfreeze from the output down to a block; BatchNorm layers
  always stay frozen (they then run in inference mode, keeping the pretrained statistics).
- :func:`finetune`: head on the frozen base (Adam 1e-3), then, unless the depth is
  'frozen', the unfrozen layers too (Adam 1e-5), each stage with early stopping on the
  validation loss and the best validation weights kept; test loss and accuracy of that
  checkpoint.

The frozen-base stage sees no augmentation when it trains from cached representations
(the base's 1280-d pooled output of each galaxy's centre crop, computed once per
initialisation): a frozen base with BatchNorm in inference mode computes the same features
every epoch, so only the augmentation differs. ``benchmarks/finetune_cached_head.py``
compares the two routes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .decision_tree import FEATURED_FRACTION as FEATURED_COLUMN
from .decision_tree import NOT_EDGE_ON_FRACTION as NOT_EDGE_ON_COLUMN
from .decision_tree import SMOOTH_FRACTION as SMOOTH_COLUMN
from .model import REPRESENTATION_DIM, _keras, compile_with_adam
from .pretraining import (
    Checkpoint,
    all_layers,
    augment,
    batch_loss,
    centre_crop,
    epoch_mean_loss,
    model_input,
    predict_centre_crops,
    predict_padded,
    record_epoch,
    seed_dropout,
)

log = logging.getLogger(__name__)

# unfreeze depths from the output down; 'frozen' trains the head only
DEPTHS = ("frozen", "top", "block7", "block6", "block5", "block4", "all")
BASE_INITIALISATIONS = ("imagenet", "scratch")  # the rest are pretraining variants


# --- the labelled rings ----------------------------------------------------------------------

@dataclass(frozen=True)
class RingCuts:
    """Vote-fraction cuts of W+22. Candidates are discs that are not edge-on, judged on the
    model's predicted fractions: smooth < ``smooth_max`` (the paper's text, sec. 4) and/or
    featured > ``featured_min`` (the alternative the protocol notes allow); ``None`` leaves
    that cut out. Both answer the first question, but they are not one cut: smooth < 0.25
    means featured + artifact > 0.75, much narrower than featured > 0.25. Then
    not-edge-on > ``not_edge_on_min``. A candidate is a ring if its ring vote fraction is
    above ``ring_min``, a not-ring below ``not_ring_max``; ``min_votes`` on the ring
    question."""

    smooth_max: float | None = 0.25
    featured_min: float | None = None
    not_edge_on_min: float = 0.75
    ring_min: float = 0.25
    not_ring_max: float = 0.05
    min_votes: int = 0


def ring_dataset(predicted: pd.DataFrame, labels: pd.DataFrame, fraction_column: str,
                 cuts: RingCuts = RingCuts(), votes_column: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Labelled ring / not-ring galaxies.

    ``predicted``: ``galaxy_id`` and the model's predicted vote fractions (columns named
    by answer, e.g. ``smooth-or-featured_featured-or-disk_fraction``); ``labels``: ``galaxy_id`` and
    ``fraction_column`` (and ``votes_column``). Returns (table with ``galaxy_id``,
    ``ring_fraction``, ``label`` (1 ring, 0 not-ring), in ``predicted`` order; a summary of
    the counts at each cut).
    """
    disc_columns = [col for col, cut in ((SMOOTH_COLUMN, cuts.smooth_max), (FEATURED_COLUMN, cuts.featured_min))
                    if cut is not None]
    for col in (*disc_columns, NOT_EDGE_ON_COLUMN):
        if col not in predicted.columns:
            raise KeyError(f"the predicted vote fractions have no column {col!r} (is the model answering every "
                           f"question?)")
    missing = [c for c in (fraction_column, votes_column) if c and c not in labels.columns]
    if missing:
        raise KeyError(f"the ring labels table has no column(s) {missing}")
    table = predicted[["galaxy_id", *disc_columns, NOT_EDGE_ON_COLUMN]].copy()
    table["galaxy_id"] = table["galaxy_id"].astype(str)
    lab = labels.assign(galaxy_id=labels["galaxy_id"].astype(str)).drop_duplicates("galaxy_id")
    table = table.merge(lab[["galaxy_id", fraction_column] + ([votes_column] if votes_column else [])],
                        on="galaxy_id", how="left")
    summary = {"galaxies": len(table)}
    fraction = table[fraction_column].to_numpy(float)
    keep = np.isfinite(fraction)
    if votes_column and cuts.min_votes:
        keep &= np.nan_to_num(table[votes_column].to_numpy(float)) >= cuts.min_votes
    summary["with_ring_votes"] = int(keep.sum())
    if cuts.smooth_max is not None:
        keep &= table[SMOOTH_COLUMN].to_numpy(float) < cuts.smooth_max
    if cuts.featured_min is not None:
        keep &= table[FEATURED_COLUMN].to_numpy(float) > cuts.featured_min
    keep &= table[NOT_EDGE_ON_COLUMN].to_numpy(float) > cuts.not_edge_on_min
    summary["candidates"] = int(keep.sum())
    ring = fraction > cuts.ring_min
    not_ring = fraction < cuts.not_ring_max
    summary["rings"] = int((keep & ring).sum())
    summary["not_rings"] = int((keep & not_ring).sum())
    summary["dropped_in_between"] = int((keep & ~ring & ~not_ring).sum())
    keep &= ring | not_ring
    out = pd.DataFrame({"galaxy_id": table["galaxy_id"][keep].to_numpy(),
                        "ring_fraction": fraction[keep], "label": ring[keep].astype(np.int8)})
    return out, summary


# --- splits ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SplitRules:
    """Fractions of the rings held out for validation and test (each with as many
    not-rings), and how often the remaining rings are repeated in the training set."""

    validation_fraction: float = 0.1
    test_fraction: float = 0.2
    ring_copies: int = 5


def max_train_size(n_rings: int, rules: SplitRules = SplitRules()) -> int:
    """The largest training set :func:`make_split` can give for ``n_rings`` rings."""
    held = _held_out_counts(n_rings, rules)
    return 2 * rules.ring_copies * (n_rings - sum(held))


def _held_out_counts(n_rings: int, rules: SplitRules) -> tuple[int, int]:
    n_val = max(1, round(rules.validation_fraction * n_rings))
    n_test = max(1, round(rules.test_fraction * n_rings))
    return n_val, n_test


def make_split(dataset: pd.DataFrame, train_size: int, seed, rules: SplitRules = SplitRules()) -> pd.DataFrame:
    """One model's split of ``dataset`` (``galaxy_id``, ``label``).

    Returns rows ``galaxy_id, label, split`` ('train', 'validation', 'test'); a training
    ring appears once per copy (``ring_copies`` rows) before the cut. Not-rings are drawn
    without replacement, so no galaxy is in two splits. Raises if the data cannot give
    ``train_size`` training rows or balanced held-out sets.
    """
    rng = np.random.default_rng(seed)
    rings = dataset.loc[dataset["label"] == 1, "galaxy_id"].to_numpy(str)
    not_rings = dataset.loc[dataset["label"] == 0, "galaxy_id"].to_numpy(str)
    if len(set(rings) | set(not_rings)) != len(rings) + len(not_rings):
        raise ValueError("the ring data set lists a galaxy twice")
    n_val, n_test = _held_out_counts(len(rings), rules)
    if n_val + n_test >= len(rings):
        raise ValueError(f"{len(rings)} rings are too few to hold out {n_val} for validation and {n_test} for test "
                         f"and train on the rest")
    rings, not_rings = rng.permutation(rings), rng.permutation(not_rings)
    train_rings = rings[n_val + n_test:]
    n_train_rings = len(train_rings) * rules.ring_copies
    needed = n_val + n_test + n_train_rings
    if needed > len(not_rings):
        raise ValueError(f"{len(not_rings)} not-rings are too few to match {len(rings)} rings "
                         f"({n_val} + {n_test} held out, {len(train_rings)} x {rules.ring_copies} for training)")
    if train_size > 2 * n_train_rings:
        raise ValueError(f"train size {train_size} is more than the {2 * n_train_rings} training rows "
                         f"{len(rings)} rings allow ({len(train_rings)} rings x {rules.ring_copies} copies, "
                         f"matched by as many not-rings)")
    if train_size < 1:
        raise ValueError(f"train size must be at least 1, not {train_size}")
    parts = [
        pd.DataFrame({"galaxy_id": rings[:n_val], "label": 1, "split": "validation"}),
        pd.DataFrame({"galaxy_id": not_rings[:n_val], "label": 0, "split": "validation"}),
        pd.DataFrame({"galaxy_id": rings[n_val:n_val + n_test], "label": 1, "split": "test"}),
        pd.DataFrame({"galaxy_id": not_rings[n_val:n_val + n_test], "label": 0, "split": "test"}),
    ]
    train = pd.concat([
        pd.DataFrame({"galaxy_id": np.repeat(train_rings, rules.ring_copies), "label": 1}),
        pd.DataFrame({"galaxy_id": not_rings[n_val + n_test:needed], "label": 0}),
    ], ignore_index=True)
    train = train.iloc[rng.permutation(len(train))[:train_size]].assign(split="train")
    out = pd.concat(parts + [train], ignore_index=True)
    out["label"] = out["label"].astype(np.int8)
    return out


def split_seed(seed: int, train_size: int, repeat: int) -> int:
    """The split's seed: one split per (training size, repeat), shared by every
    initialisation and depth, so their comparison is paired."""
    digest = hashlib.blake2b(f"{seed}:{train_size}:{repeat}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


# --- models ------------------------------------------------------------------------------------

def _efficientnet_base(crop: int, channels: int):
    keras = _keras()
    return keras.applications.EfficientNetB0(include_top=False, weights=None,
                                             input_shape=(crop, crop, channels), pooling="avg")


# keras.applications.efficientnet.IMAGENET_STDDEV_RGB
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)


def _imagenet_efficientnet(crop: int, weights_path):
    """The RGB EfficientNetB0 exactly as Keras builds it for ``weights="imagenet"``, with
    the weights read from ``weights_path`` instead of downloaded.

    Keras adds one layer only when ``weights == "imagenet"``: a rescaling by
    1/sqrt(stddev) after the stem's Normalization, because the ImageNet weights were
    trained on (x - mean) / stddev**1.5 (tensorflow issue 49930). Built from a file path
    it leaves that layer out and the stem sees inputs ~2.1x too large, so it is put back
    here after cloning."""
    keras = _keras()

    def call(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        if isinstance(layer, keras.layers.Normalization):
            out = keras.layers.Rescaling([1.0 / math.sqrt(s) for s in IMAGENET_STDDEV_RGB],
                                         name="imagenet_stddev_rescaling")(out)
        return out

    net = keras.models.clone_model(_efficientnet_base(crop, 3), call_function=call)
    net.load_weights(str(weights_path))
    return net


def build_base(initialisation: str, crop: int, weights_path=None, seed: int = 0, questions=None):
    """EfficientNetB0 base (input (crop, crop, 1) pixels 0..255, output the 1280-d pooled
    representation) with ``initialisation``'s weights.

    - a pretraining variant ('multi', 'bar', ...): ``weights_path`` is that model's
      ``.weights.h5`` and ``questions`` the questions it answers; the base's layers are
      copied from it by name.
    - 'imagenet': ``weights_path`` is Keras' ``efficientnetb0_notop.h5``. ImageNet weights
      expect RGB, so the greyscale image is repeated to 3 channels in front of the RGB
      network (its own ImageNet normalisation included, as Keras builds it for
      ``weights="imagenet"``): exactly what the network saw for a grey picture, with no
      change to its stem.
    - 'scratch': random weights (seeded).
    """
    keras = _keras()
    keras.utils.set_random_seed(seed % 2**32)
    inputs = keras.Input((crop, crop, 1), name="image")
    if initialisation == "imagenet":
        if not weights_path:
            raise ValueError("the imagenet initialisation needs a weights file (finetune.imagenet_weights)")
        rgb = keras.layers.Concatenate(name="grey_to_rgb")([inputs, inputs, inputs])
        try:
            net = _imagenet_efficientnet(crop, weights_path)
        except Exception as err:
            raise ValueError(f"{weights_path}: cannot load as EfficientNetB0 ImageNet weights without the top "
                             f"({type(err).__name__}: {err})") from err
        return keras.Model(inputs, net(rgb), name="base_imagenet")
    net = _efficientnet_base(crop, 1)
    if initialisation != "scratch":
        if not weights_path:
            raise ValueError(f"the {initialisation!r} initialisation needs its pretrained weights file")
        if not questions:
            raise ValueError(f"the {initialisation!r} initialisation needs the questions its model answers")
        _copy_base_weights(net, weights_path, crop, tuple(questions))
    return keras.Model(inputs, net(inputs), name=f"base_{initialisation}")


def _copy_base_weights(net, weights_path, crop: int, questions: tuple[str, ...]):
    """Load a pretrained vote model's file and copy every base layer's weights by name."""
    from .model import ModelSpec, load_trained

    trained = load_trained(weights_path, ModelSpec(crop_size=crop, questions=questions))
    by_name = {layer.name: layer for layer in trained.layers}
    copied = 0
    for layer in net.layers:
        if layer.weights and layer.name in by_name:
            layer.set_weights(by_name[layer.name].get_weights())
            copied += 1
    if copied == 0:
        raise ValueError(f"{weights_path}: no EfficientNetB0 layer found to copy")


def build_head(seed: int = 0, dropout: float = 0.75, width: int = 64, name: str = "ring_head"):
    """The paper's head on a 1280-d representation: (n, 1280) -> (n, 1) ring probability."""
    keras = _keras()
    keras.utils.set_random_seed(seed % 2**32)
    inputs = keras.Input((REPRESENTATION_DIM,), name="representation")
    x = keras.layers.Dense(width, activation="relu", name="head_dense_1")(inputs)
    x = keras.layers.Dropout(dropout, name="head_dropout_1")(x)
    x = keras.layers.Dense(width, activation="relu", name="head_dense_2")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout_2")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="ring_probability", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def build_finetune_model(base, head):
    """base then head: (n, crop, crop, 1) pixels -> (n, 1) ring probability."""
    keras = _keras()
    return keras.Model(base.input, head(base.output), name="ring_classifier")


def _block_of(layer_name: str) -> str:
    if layer_name.startswith("block"):
        return layer_name[:6]  # 'block7a_project_conv' -> 'block7'
    if layer_name.startswith("top_"):
        return "top"
    return "stem"


def set_unfrozen_depth(base, depth: str) -> int:
    """Make the base's layers from the output down to ``depth`` trainable, the rest frozen;
    BatchNorm layers always frozen. Returns the number of trainable weights tensors."""
    keras = _keras()
    if depth not in DEPTHS:
        raise ValueError(f"unknown unfreeze depth {depth!r}; choose from {list(DEPTHS)}")
    order = ["top", "block7", "block6", "block5", "block4", "block3", "block2", "block1", "stem"]
    unfrozen = set() if depth == "frozen" else set(order) if depth == "all" else set(order[:order.index(depth) + 1])
    base.trainable = True
    for layer in all_layers(base):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        elif layer.weights and not isinstance(layer, keras.Model):
            layer.trainable = _block_of(layer.name) in unfrozen
    return len(base.trainable_weights)


# --- training ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FinetuneParams:
    """Training of one model. Each stage stops after the paper's 5e6 / train size epochs,
    or after min(max(10, epochs // 6), 30) epochs without a better validation loss.
    ``epochs_cap`` limits the epochs of the stages that run the base on images (a CPU
    demo); ``head_epochs_cap`` those of the head trained on cached representations, which
    cost milliseconds each (None: the paper's limit). ``head_learning_rate`` for the
    frozen-base stage, ``finetune_learning_rate`` for the unfrozen one."""

    head_learning_rate: float = 1e-3
    finetune_learning_rate: float = 1e-5
    batch_size: int = 128
    epochs_budget: float = 5e6
    epochs_cap: int | None = None
    head_epochs_cap: int | None = None
    dropout: float = 0.75

    def max_epochs(self, train_size: int, cached_head: bool = False) -> int:
        epochs = max(1, int(self.epochs_budget / max(train_size, 1)))
        cap = self.head_epochs_cap if cached_head else self.epochs_cap
        return min(epochs, cap) if cap else epochs

    def patience(self, train_size: int, cached_head: bool = False) -> int:
        return min(max(10, self.max_epochs(train_size, cached_head) // 6), 30)


def binary_log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean binary cross-entropy in nats, probabilities clipped to [1e-7, 1 - 1e-7] as Keras
    does."""
    p = np.clip(np.asarray(probabilities, np.float64).ravel(), 1e-7, 1 - 1e-7)
    y = np.asarray(labels, np.float64).ravel()
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def accuracy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    return float(np.mean((np.asarray(probabilities).ravel() > 0.5) == np.asarray(labels).ravel().astype(bool)))


def _batches(n: int, batch_size: int, rng: np.random.Generator | None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def _predict(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([predict_padded(model, x[i:i + batch_size], batch_size)
                           for i in range(0, len(x), batch_size)]) if len(x) else np.zeros((0, 1))


def _train_stage(model, train_batches, evaluate_validation, max_epochs: int, patience: int,
                 checkpoint: Checkpoint | None, stage: str, seed: int, progress=None, logger=None) -> dict:
    """Epochs of ``train_on_batch`` with early stopping on the validation loss; leaves
    ``model`` holding the best validation weights. Returns the stage's state (epochs run,
    best epoch and loss, history).

    With a ``checkpoint``, each epoch's weights and the state are written to disk and a
    rerun resumes from them. With None the best weights are kept in memory: for the head
    on cached representations, whose epochs take milliseconds, so that writing two files
    per epoch would be most of the job and a killed job loses seconds."""
    state = None
    if checkpoint is not None:
        # weights only (the optimiser's moments restart on resume): a stage is minutes long
        checkpoint.last = checkpoint.folder / "last.weights.npz"
        state = checkpoint.load_state()
    if state is not None and state.get("stage") == stage:
        checkpoint.load_weights(model, checkpoint.last)
        if logger:
            logger.info("%s: resuming after epoch %d", stage, state["epochs_done"])
    else:
        state = {"stage": stage, "epochs_done": 0, "best_val_loss": float("inf"), "best_epoch": 0, "wait": 0,
                 "history": []}
    best_weights = None
    while state["epochs_done"] < max_epochs and state["wait"] < patience:
        epoch = state["epochs_done"]
        t0 = time.perf_counter()
        seed_dropout(model, seed * 7919 + epoch)
        losses, sizes = [], []
        for x, y in train_batches(epoch):
            losses.append(batch_loss(model, x, y, f"{stage} epoch {epoch + 1}"))
            sizes.append(len(x))
        seconds = time.perf_counter() - t0
        seen = sum(sizes)
        val_loss, val_acc = evaluate_validation()
        row = {"stage": stage, "epoch": epoch + 1, "loss": epoch_mean_loss(losses, sizes),
               "val_loss": val_loss, "val_accuracy": val_acc, "seconds": seconds,
               "images_per_second": seen / seconds if seconds > 0 else float("nan")}
        if record_epoch(state, row, val_loss, model, checkpoint) and checkpoint is None:
            best_weights = model.get_weights()
        if checkpoint is not None:
            checkpoint.save_model(model, checkpoint.last)
        # the whole epoch: training, validation, and the checkpoint writes
        row["epoch_seconds"] = time.perf_counter() - t0
        if checkpoint is not None:
            checkpoint.save_state(state)
        if progress is not None:
            progress(epoch + 1, max_epochs, val_loss)
    if state["best_epoch"]:
        if checkpoint is not None:
            checkpoint.load_weights(model, checkpoint.best)
        else:
            model.set_weights(best_weights)
    if logger:
        logger.info("%s: %d epochs (limit %d, patience %d), best validation loss %.4f at epoch %d", stage,
                    state["epochs_done"], max_epochs, patience, state["best_val_loss"], state["best_epoch"])
    return state


@dataclass
class FinetuneData:
    """One model's data. ``features``: (n, 1280) cached base representations of the split's
    galaxies (centre crops); ``images``: (n, r, r) uint8 (an array or :class:`LazyImages`)
    or None when only the head is trained; ``split``: the rows of :func:`make_split`,
    aligned with both."""

    split: pd.DataFrame
    features: np.ndarray
    images: np.ndarray | LazyImages | None = None


def _arrays_digest(arrays) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def finetune(data: FinetuneData, base, depth: str, params: FinetuneParams, crop: int, seed: int, checkpoint_dir,
             progress=None, logger=None, head_from: str = "features") -> tuple[dict, pd.DataFrame]:
    """Train the head on the frozen base, then (unless ``depth`` is 'frozen') unfreeze the
    base down to ``depth`` and train on augmented images.

    ``head_from``: 'features' trains the frozen-base head on ``data.features`` (cached
    centre-crop representations, no augmentation: fast); 'images' runs the frozen base on
    augmented images every epoch, as a network trained end to end would (``base`` is then
    needed for the frozen depth too).

    Returns (metrics: test and validation loss and accuracy of the best checkpoint, epochs
    of each stage; history: one row per epoch and stage)."""
    if head_from not in ("features", "images"):
        raise ValueError(f"head_from must be 'features' or 'images', not {head_from!r}")
    split = data.split.reset_index(drop=True)
    sel = {name: np.flatnonzero(split["split"].to_numpy() == name) for name in ("train", "validation", "test")}
    y = split["label"].to_numpy(np.float32)[:, None]
    train_size = len(sel["train"])
    max_epochs, patience = params.max_epochs(train_size), params.patience(train_size)
    cached = head_from == "features"
    head_max_epochs, head_patience = params.max_epochs(train_size, cached), params.patience(train_size, cached)
    folder = Path(checkpoint_dir)
    # the starting weights and cached representations too: a checkpoint left by a killed job
    # must not be resumed on a base that has since been retrained
    fingerprint = hashlib.sha256(json.dumps(
        {"split": split[["galaxy_id", "label", "split"]].to_numpy().tolist(), "depth": depth, "crop": crop,
         "seed": seed, "params": asdict(params), "head_from": head_from,
         "base": _arrays_digest(base.get_weights()) if base is not None else None,
         "features": _arrays_digest([data.features]) if data.features is not None else None},
        default=str).encode()).hexdigest()
    needs_images = depth != "frozen" or head_from == "images"
    if needs_images and (data.images is None or base is None):
        raise ValueError(f"unfreezing to {depth!r} with the head trained from {head_from} needs the galaxies' "
                         f"images and the base")

    head = build_head(seed, params.dropout)
    if needs_images:
        images = data.images
        held_out = {name: model_input(centre_crop(images[sel[name]], crop)) for name in ("validation", "test")}
        model = build_finetune_model(base, head)

        def image_batches(epoch):
            order = np.random.default_rng([seed, 2, epoch])
            for i, rows in enumerate(_batches(len(sel["train"]), params.batch_size, order)):
                rng = np.random.default_rng([seed, 3, epoch, i])
                idx = sel["train"][rows]
                yield model_input(np.stack([augment(im, crop, rng) for im in images[idx]])), y[idx]

        def image_eval(name="validation"):
            p = _predict(model, held_out[name], params.batch_size)
            return binary_log_loss(y[sel[name]], p), accuracy(y[sel[name]], p)

    if head_from == "features":
        features = np.asarray(data.features, np.float32)
        compile_with_adam(head, params.head_learning_rate, "binary_crossentropy")

        def head_batches(epoch):
            rng = np.random.default_rng([seed, 1, epoch])
            for rows in _batches(len(sel["train"]), params.batch_size, rng):
                idx = sel["train"][rows]
                yield features[idx], y[idx]

        def head_eval(name="validation"):
            p = _predict(head, features[sel[name]], params.batch_size)
            return binary_log_loss(y[sel[name]], p), accuracy(y[sel[name]], p)

        head_model = head
    else:
        set_unfrozen_depth(base, "frozen")
        compile_with_adam(model, params.head_learning_rate, "binary_crossentropy")
        head_batches, head_eval, head_model = image_batches, image_eval, model

    head_checkpoint = None if cached else Checkpoint(folder / "head", fingerprint)
    head_state = _train_stage(head_model, head_batches, head_eval, head_max_epochs, head_patience,
                              head_checkpoint, "head", seed, progress, logger)
    metrics = {"train_size": train_size, "train_rings": int(y[sel["train"]].sum()),
               "validation_size": len(sel["validation"]), "test_size": len(sel["test"]),
               "max_epochs": max_epochs, "patience": patience, "head_max_epochs": head_max_epochs,
               "head_patience": head_patience, "head_from": head_from,
               "head_epochs": head_state["epochs_done"], "head_best_epoch": head_state["best_epoch"]}
    metrics["frozen_validation_loss"], metrics["frozen_validation_accuracy"] = head_eval()
    metrics["frozen_test_loss"], metrics["frozen_test_accuracy"] = head_eval("test")
    history = list(head_state["history"])
    if depth == "frozen":
        metrics.update(test_loss=metrics["frozen_test_loss"], test_accuracy=metrics["frozen_test_accuracy"],
                       validation_loss=metrics["frozen_validation_loss"],
                       validation_accuracy=metrics["frozen_validation_accuracy"], finetune_epochs=0,
                       finetune_best_epoch=0)
        return metrics, pd.DataFrame(history)

    n_trainable = set_unfrozen_depth(base, depth)
    # a fresh optimiser at the fine-tuning rate, as W+22 recompile after unfreezing
    compile_with_adam(model, params.finetune_learning_rate, "binary_crossentropy")
    if logger:
        logger.info("unfrozen to %s: %d trainable weight tensors in the base", depth, n_trainable)
    tune_state = _train_stage(model, image_batches, image_eval, max_epochs, patience,
                              Checkpoint(folder / "finetune", fingerprint), "finetune", seed, progress, logger)
    history += tune_state["history"]
    metrics["validation_loss"], metrics["validation_accuracy"] = image_eval()
    metrics["test_loss"], metrics["test_accuracy"] = image_eval("test")
    metrics.update(finetune_epochs=tune_state["epochs_done"], finetune_best_epoch=tune_state["best_epoch"],
                   trainable_base_tensors=n_trainable)
    return metrics, pd.DataFrame(history)


def base_representations(base, images: np.ndarray, crop: int, batch_size: int = 128, progress=None) -> np.ndarray:
    """(n, r, r) uint8 -> (n, 1280) float32 pooled representations of the centre crops."""
    (representations,) = predict_centre_crops(base, images, crop, batch_size, progress, "representations")
    return representations


def write_features(path, galaxy_ids, features: np.ndarray, attrs: dict) -> None:
    """Cached base representations: ``galaxy_id`` (n,) and ``representation`` (n, 1280)
    float32, with ``attrs`` (the initialisation, its weights file hash ...); atomic."""
    import h5py

    from .storage import atomic_path

    with atomic_path(path, suffix=".part.h5") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("galaxy_id", data=np.asarray([str(g) for g in galaxy_ids], dtype=object),
                         dtype=h5py.string_dtype())
        f.create_dataset("representation", data=np.asarray(features, np.float32))
        for key, value in attrs.items():
            f.attrs[key] = value


def read_features(path, galaxy_ids) -> np.ndarray:
    """(len(galaxy_ids), 1280) rows of a features file, in ``galaxy_ids`` order."""
    import h5py

    from .storage import decode_ids

    with h5py.File(path, "r") as f:
        stored = pd.Series(np.arange(len(f["galaxy_id"])), index=decode_ids(f["galaxy_id"][:]))
        missing = [g for g in galaxy_ids if g not in stored.index]
        if missing:
            raise KeyError(f"{path}: no representation for {len(missing)} galaxies, e.g. {missing[:3]}")
        return f["representation"][:][stored.loc[list(galaxy_ids)].to_numpy()]


class LazyImages:
    """Images of chosen galaxies read from the crops shards only when indexed:
    ``images[rows]`` -> uint8 (len(rows), r, r), as for an array. For training sets too big
    to hold in memory (the paper's largest, ~140,000 rows at 300 px)."""

    def __init__(self, store, rows: np.ndarray):
        self.store, self.rows = store, np.asarray(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index) -> np.ndarray:
        return self.store.read(self.rows[index])


def read_images(crops_paths, galaxy_ids, max_memory_bytes: int = 4 << 30):
    """uint8 (len(galaxy_ids), r, r) images of the named galaxies from the crops shards: an
    array when they fit in ``max_memory_bytes``, else a :class:`LazyImages` that reads each
    batch when asked. A galaxy without a crop (e.g. its cutout was rejected) is named in
    the error."""
    from .pretraining import ImageStore

    store = ImageStore(crops_paths, max_memory_bytes=max_memory_bytes)
    row = pd.Series(np.arange(len(store)), index=[str(g) for g in store.galaxy_ids])
    row = row[~row.index.duplicated()]
    missing = [g for g in galaxy_ids if g not in row.index]
    if missing:
        raise KeyError(f"no crop for {len(missing)} galaxies, e.g. {missing[:3]}")
    rows = row.loc[list(galaxy_ids)].to_numpy()
    if len(rows) * int(np.prod(store.image_shape)) > max_memory_bytes:
        return LazyImages(store, rows)
    return store.read(rows)


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation, standard error and count of test accuracy and loss per
    (initialisation, depth, train size), over repeats."""
    rows = []
    for (init, depth, size), runs in results.groupby(["initialisation", "depth", "train_size"], sort=True):
        row = {"initialisation": init, "depth": depth, "train_size": int(size), "repeats": len(runs)}
        for metric in ("test_accuracy", "test_loss", "frozen_test_accuracy"):
            values = runs[metric].to_numpy(float)
            row[f"{metric}_mean"] = float(values.mean())
            row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
            row[f"{metric}_sem"] = row[f"{metric}_std"] / np.sqrt(len(values)) if len(values) > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def paired_margins(results: pd.DataFrame, better: str, worse: str, depth: str) -> pd.DataFrame:
    """Test-accuracy margin of ``better`` over ``worse`` per train size at ``depth``, paired
    by repeat (same split): mean, the smallest and largest margin, and the repeats won."""
    sub = results[results["depth"] == depth]
    a = sub[sub["initialisation"] == better].set_index(["train_size", "repeat"])["test_accuracy"]
    b = sub[sub["initialisation"] == worse].set_index(["train_size", "repeat"])["test_accuracy"]
    diff = (a - b).dropna()
    rows = []
    for size, d in diff.groupby(level=0):
        rows.append({"train_size": int(size), "better": better, "worse": worse, "depth": depth,
                     "margin_mean": float(d.mean()), "margin_min": float(d.min()), "margin_max": float(d.max()),
                     "repeats": int(len(d)), "repeats_won": int((d > 0).sum())})
    return pd.DataFrame(rows)


def margins_over_others(results: pd.DataFrame, reference: str = "multi") -> pd.DataFrame:
    """:func:`paired_margins` of ``reference`` over every other initialisation, at every
    depth both were run at; empty (with the columns) when ``reference`` was not run."""
    columns = ["train_size", "better", "worse", "depth", "margin_mean", "margin_min", "margin_max",
               "repeats", "repeats_won"]
    tables = []
    for depth in sorted(results["depth"].unique()):
        at_depth = results[results["depth"] == depth]
        if reference not in set(at_depth["initialisation"]):
            continue
        for other in sorted(set(at_depth["initialisation"]) - {reference}):
            tables.append(paired_margins(results, reference, other, depth))
    tables = [t for t in tables if len(t)]
    return pd.concat(tables, ignore_index=True)[columns] if tables else pd.DataFrame(columns=columns)


def training_sizes(n_max: int, steps: int = 11) -> list[int]:
    """The paper's training sizes: round(n_max ** (k / steps)), k = 0..steps, without
    repeats (69620 gives 1, 3, 8, 21, 58, 159, 438, 1207, 3327, 9167, 25263, 69620)."""
    return list(dict.fromkeys(int(round(n_max ** (k / steps))) for k in range(steps + 1)))


