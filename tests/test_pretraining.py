import logging

import h5py
import numpy as np
import pandas as pd
import pytest

from morphtools.model import ModelSpec, machine_description
from morphtools.pretraining import (
    Checkpoint,
    ImageStore,
    TrainingParams,
    VoteBatches,
    augment,
    centre_crop,
    fingerprint,
    pretrain,
    split_by_id,
    train_one_epoch,
    vote_counts,
)
from morphtools.storage import write_crops_shard


def write_shards(tmp_path, n_per_shard=(12, 9), size=40, seed=0):
    rng = np.random.default_rng(seed)
    paths, ids = [], []
    for k, n in enumerate(n_per_shard):
        shard_ids = [f"g{k}_{i}" for i in range(n)]
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        path = tmp_path / f"shard_{k}.h5"
        write_crops_shard(path, shard_ids, images, np.zeros((n, 8, 8, 3), np.uint8), {"resize_to": size})
        paths.append(path)
        ids += shard_ids
    return paths, ids


def test_image_store_streaming_equals_in_memory(tmp_path):
    paths, ids = write_shards(tmp_path)
    in_memory = ImageStore(paths)
    streamed = ImageStore(paths, max_memory_bytes=0)
    assert list(in_memory.galaxy_ids) == ids and len(streamed) == 21
    rows = np.array([20, 3, 15, 0, 11, 12])  # across both files, out of order
    np.testing.assert_array_equal(in_memory.read(rows), streamed.read(rows))
    assert streamed._memory is None and in_memory._memory is not None
    # the pixels' digest is the same however they are read, and changes with one pixel
    digest = in_memory.pixels_digest()
    assert streamed.pixels_digest(rows_per_read=5) == digest == streamed.pixels_digest()
    (tmp_path / "other").mkdir()
    other_paths, _ = write_shards(tmp_path / "other")
    with h5py.File(other_paths[1], "r+") as f:
        f["images"][4, 7, 7] ^= 1
    assert ImageStore(other_paths).pixels_digest() != digest


def test_augment_and_centre_crop():
    image = np.zeros((40, 40), np.uint8)
    image[18:22, 18:22] = 255
    rng = np.random.default_rng(0)
    views = [augment(image, 32, rng) for _ in range(20)]
    assert all(v.shape == (32, 32) and v.dtype == np.float32 for v in views)
    # the bright centre stays in view: the crop offset is at most 8 px
    assert all(v.max() > 100 for v in views)
    # and the views differ (random crop/rotation/flip)
    assert len({v.tobytes() for v in views}) == 20
    crop = centre_crop(image[None], 32)[0]
    assert crop.shape == (32, 32) and crop[14:18, 14:18].min() == 255
    with pytest.raises(ValueError, match="larger than the stored images"):
        centre_crop(image[None], 48)


def test_split_by_id_is_stable_when_galaxies_are_added():
    ids = [f"g{i}" for i in range(2000)]
    split = split_by_id(ids, 0.1, seed=3)
    assert 0.07 < split.mean() < 0.13
    more = split_by_id(ids + [f"new{i}" for i in range(500)], 0.1, seed=3)
    np.testing.assert_array_equal(more[:2000], split)


def test_vote_counts_aligns_and_names_problems():
    spec = ModelSpec(crop_size=32, questions=("smooth-or-featured",))
    cat = pd.DataFrame({"galaxy_id": ["a", "b"], "smooth-or-featured_smooth": [3, 0],
                        "smooth-or-featured_featured-or-disk": [1, 5], "smooth-or-featured_artifact": [0, 1]})
    np.testing.assert_array_equal(vote_counts(cat, ["b", "a"], spec), [[0, 5, 1], [3, 1, 0]])
    with pytest.raises(KeyError, match="not in the catalogue.*zz"):
        vote_counts(cat, ["a", "zz"], spec)
    bad = cat.copy()
    bad.loc[1, "smooth-or-featured_smooth"] = -2
    with pytest.raises(ValueError, match="invalid vote counts.*'b'"):
        vote_counts(bad, ["a", "b"], spec)
    # a galaxy no volunteer saw (left join: every count empty) adds nothing; a half-empty row is an error
    unvoted = cat.copy().astype({c: float for c in cat.columns[1:]})
    unvoted.loc[1, cat.columns[1:]] = np.nan
    np.testing.assert_array_equal(vote_counts(unvoted, ["a", "b"], spec), [[3, 1, 0], [0, 0, 0]])
    unvoted.loc[1, "smooth-or-featured_smooth"] = 2
    with pytest.raises(ValueError, match="invalid vote counts.*'b'"):
        vote_counts(unvoted, ["a", "b"], spec)


def test_batches_are_reproducible_per_epoch(tmp_path):
    paths, _ = write_shards(tmp_path)
    store = ImageStore(paths)
    counts = np.arange(21 * 3, dtype=np.float32).reshape(21, 3)
    batches = VoteBatches(store, np.arange(21), counts, 32, 8, True, seed=5)
    batches.set_epoch(2)
    first = [(x.copy(), y.copy()) for x, y in batches]
    # training batches all have one shape: the 5 left over are skipped this epoch
    assert [len(x) for x, _ in first] == [8, 8] and first[0][0].shape == (8, 32, 32, 1)
    batches.set_epoch(3)
    assert {tuple(y[:, 0]) for _, y in batches} != {tuple(y[:, 0]) for _, y in first}
    validation = VoteBatches(store, np.arange(21), counts, 32, 8, False, seed=5)
    assert [len(x) for x, _ in validation] == [8, 8, 5]  # nobody is skipped when evaluating
    batches.set_epoch(0)
    batches.set_epoch(2)
    again = list(batches)
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def _augment_before_session_11(image, crop, rng):
    """augment() as the models in results/ were trained with: each choice drawn as used."""
    from scipy import ndimage

    angle = rng.uniform(0.0, 360.0)
    rotated = ndimage.rotate(image.astype(np.float32), angle, reshape=False, order=1, mode="reflect")
    if rng.random() < 0.5:
        rotated = rotated[:, ::-1]
    if rng.random() < 0.5:
        rotated = rotated[::-1, :]
    r = rotated.shape[0]
    y, x = rng.integers(0, r - crop + 1, size=2)
    return rotated[y:y + crop, x:x + crop]


def test_augmented_batches_do_not_depend_on_the_number_of_workers(tmp_path):
    paths, _ = write_shards(tmp_path)
    store = ImageStore(paths)
    counts = np.zeros((21, 3), np.float32)
    one, four = (VoteBatches(store, np.arange(21), counts, 32, 8, True, seed=5, augment_workers=w) for w in (1, 4))
    for batches in (one, four):
        batches.set_epoch(3)
    for i, ((x1, _), (x4, _)) in enumerate(zip(one, four, strict=True)):
        np.testing.assert_array_equal(x1, x4)
        # and the views are the ones the earlier one-at-a-time code drew from the same stream
        rng = np.random.default_rng([5, 3, i])
        images = store.read(one.rows[one.order[i * 8:(i + 1) * 8]])
        expected = np.stack([_augment_before_session_11(im, 32, rng) for im in images])[..., None]
        np.testing.assert_array_equal(x1, expected)


class Interrupt(Exception):
    pass


def killing_progress(after_updates):
    """A progress factory whose bars raise after ``after_updates`` updates in total,
    standing in for a job killed mid-epoch."""
    seen = {"n": 0}

    class Bar:
        def __init__(self, **kwargs):
            pass

        def update(self, n):
            seen["n"] += 1
            if seen["n"] > after_updates:
                raise Interrupt

        def set_postfix(self, **kwargs):
            pass

        def close(self):
            pass

    return Bar


def test_pretraining_resumes_after_a_kill(tmp_path, caplog):
    paths, ids = write_shards(tmp_path, (20, 20), size=36)
    store = ImageStore(paths)
    spec = ModelSpec(crop_size=32, questions=("smooth-or-featured",))
    counts = np.random.default_rng(1).integers(0, 20, (40, 3)).astype(np.float32)
    params = TrainingParams(epochs=3, batch_size=16, validation_fraction=0.25, seed=4)
    ckpt = tmp_path / "ckpt"
    n_train = int((~split_by_id(store.galaxy_ids, params.validation_fraction, params.seed)).sum())
    batches_per_epoch = n_train // params.batch_size
    with pytest.raises(Interrupt):
        pretrain(store, counts, spec, params, ckpt, progress=killing_progress(batches_per_epoch))  # dies in epoch 2
    assert (ckpt / "state.json").exists()  # epoch 1 finished and was saved before the kill
    logger = logging.getLogger("resume-test")
    with caplog.at_level(logging.INFO, logger="resume-test"):
        model, history = pretrain(store, counts, spec, params, ckpt, logger=logger)
    assert "resuming" in caplog.text and "after epoch 1" in caplog.text
    assert list(history["epoch"]) == [1, 2, 3]
    assert np.isfinite(history["val_loss"]).all()
    # the epoch's wall time holds its training and BatchNorm passes, and more (validation, writes)
    assert (history["epoch_seconds"] > history["seconds"] + history["batchnorm_seconds"]).all()
    assert (history["batchnorm_seconds"] > 0).all() == (params.batchnorm_galaxies > 0)
    # every epoch says where it ran, the killed run's epoch 1 as well as the resumed ones
    assert (history["machine"] == machine_description()).all()
    # raising the epoch limit continues; changing the data starts afresh
    _, longer = pretrain(store, counts, spec, TrainingParams(**{**params.__dict__, "epochs": 4}), ckpt)
    assert list(longer["epoch"]) == [1, 2, 3, 4] and longer["loss"].iloc[:3].tolist() == history["loss"].tolist()
    # a checkpoint of other data or settings is never resumed
    pixels = store.pixels_digest()
    same = fingerprint(store.galaxy_ids, counts, spec, params, store.image_shape, None, pixels)
    assert Checkpoint(ckpt, same).load_state()["epochs_done"] == 4
    for other in (fingerprint(store.galaxy_ids, counts + 1, spec, params, store.image_shape, None, pixels),
                  fingerprint(store.galaxy_ids[::-1], counts, spec, params, store.image_shape, None, pixels),
                  fingerprint(store.galaxy_ids, counts, spec, TrainingParams(**{**params.__dict__, "seed": 5}),
                              store.image_shape, None, pixels),
                  fingerprint(store.galaxy_ids, counts, spec, params, store.image_shape, None, "0" * 64)):
        assert other != same and Checkpoint(ckpt, other).load_state() is None



RESUME_IN_NEW_PROCESS = """
import logging, sys
from pathlib import Path
import numpy as np
from morphtools.model import ModelSpec
from morphtools.pretraining import ImageStore, TrainingParams, pretrain
tmp = Path(sys.argv[1])
logging.basicConfig(level=logging.INFO, stream=sys.stdout)
store = ImageStore(sorted(tmp.glob("shard_*.h5")))
counts = np.random.default_rng(1).integers(0, 20, (len(store), 3)).astype(np.float32)
params = TrainingParams(epochs=1, batch_size=16, validation_fraction=0.25, seed=4)
_, history = pretrain(store, counts, ModelSpec(crop_size=32, questions=("smooth-or-featured",)), params,
                      tmp / "ckpt", logger=logging.getLogger("fresh"))
print("EPOCHS", list(history["epoch"]))
"""


def test_a_fresh_process_resumes_the_checkpoint(tmp_path):
    """A job killed at its time limit is retried in a new process (SLURM retries): the
    checkpoint, which holds the custom Keras layer and loss, must load there too, before
    anything else has defined those classes. (The checkpoint is written by hand here, as
    after one epoch, to spare a training run.)"""
    import subprocess
    import sys

    from morphtools.model import build_model, compile_model

    paths, _ = write_shards(tmp_path, (20, 20), size=36)
    store = ImageStore(paths)
    counts = np.random.default_rng(1).integers(0, 20, (40, 3)).astype(np.float32)
    spec = ModelSpec(crop_size=32, questions=("smooth-or-featured",))
    params = TrainingParams(epochs=1, batch_size=16, validation_fraction=0.25, seed=4)
    ckpt = Checkpoint(tmp_path / "ckpt", fingerprint(store.galaxy_ids, counts, spec, params, store.image_shape,
                                                     None, store.pixels_digest()))
    model = compile_model(build_model(spec, seed=params.seed), spec, params.learning_rate)
    ckpt.save_model(model, ckpt.last)
    ckpt.save_model(model, ckpt.best)
    row = {"epoch": 1, "loss": 5.0, "val_loss": 4.0, "seconds": 1.0, "images_per_second": 30.0}
    ckpt.save_state({"epochs_done": 1, "best_val_loss": 4.0, "best_epoch": 1, "wait": 0, "stopped_early": False,
                     "history": [row]})
    proc = subprocess.run([sys.executable, "-c", RESUME_IN_NEW_PROCESS, str(tmp_path)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "resuming" in proc.stdout and "EPOCHS [1]" in proc.stdout, proc.stdout[-2000:]


def test_an_epochs_training_loss_is_the_mean_over_its_galaxies_not_the_last_batch():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")  # weights stay put
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(n, 3)).astype("float32"), (scale * rng.normal(size=(n, 1))).astype("float32"))
               for n, scale in ((8, 1.0), (8, 3.0), (3, 10.0))]  # a short last batch, as an epoch ends
    squared_errors = np.concatenate([(model.predict(x, verbose=0) - y).ravel() ** 2 for x, y in batches])
    last_batch = float(np.mean(squared_errors[-3:]))
    loss = train_one_epoch(model, batches)
    assert loss == pytest.approx(float(np.mean(squared_errors)), rel=1e-5)
    assert abs(loss - last_batch) > 10  # Keras 3's train_on_batch returns the last batch's alone
    nan_batch = [(batches[0][0], np.full((8, 1), np.nan, np.float32))]
    with pytest.raises(FloatingPointError, match="epoch 7/9"):
        train_one_epoch(model, nan_batch, desc="epoch 7/9")


def test_batchnorm_statistics_are_the_average_over_the_batches_with_dropout_off():
    import keras

    from morphtools.pretraining import recompute_batchnorm_statistics

    inputs = keras.Input((4,))
    dropped = keras.layers.Dropout(0.5)(inputs)
    normed = keras.layers.BatchNormalization(momentum=0.99, name="bn")(dropped)
    model = keras.Model(inputs, normed)
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, (16, 4)).astype(np.float32) + k for k in range(5)]
    assert recompute_batchnorm_statistics(model, iter(batches)) == 5
    bn = model.get_layer("bn")
    # with dropout off the layer saw the inputs themselves: mean of the batch means
    expected_mean = np.mean([b.mean(axis=0) for b in batches], axis=0)
    expected_var = np.mean([b.var(axis=0) for b in batches], axis=0)
    np.testing.assert_allclose(np.asarray(bn.moving_mean), expected_mean, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(bn.moving_variance), expected_var, rtol=1e-4)
    # settings restored, and inference now normalises the data to ~zero mean
    assert bn.momentum == 0.99 and model.layers[1].rate == 0.5
    out = np.asarray(model.predict_on_batch(np.concatenate(batches)))
    assert abs(out.mean()) < 0.05


def test_batchnorm_rows_are_a_seeded_sorted_sample():
    from morphtools.pretraining import batchnorm_rows

    rows = np.arange(100, 200)
    a, b = batchnorm_rows(rows, 30, seed=1, epoch=2), batchnorm_rows(rows, 30, seed=1, epoch=2)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 30 and len(set(a)) == 30 and np.all(np.diff(a) > 0) and set(a) <= set(rows)
    assert not np.array_equal(a, batchnorm_rows(rows, 30, seed=1, epoch=3))
    assert len(batchnorm_rows(rows[:10], 30, seed=1, epoch=0)) == 10


def test_batchnorm_statistics_pass_is_reused_and_depends_only_on_its_own_batches():
    """The compiled pass is traced once per model; a second recomputation (after dropout
    and momentum were restored) still sees dropout off and forgets the first batches."""
    import keras

    from morphtools.pretraining import recompute_batchnorm_statistics

    inputs = keras.Input((3,))
    dropped = keras.layers.Dropout(0.9)(inputs)
    hidden = keras.layers.Dense(3, kernel_initializer="identity", use_bias=False)(dropped)
    normed = keras.layers.BatchNormalization(momentum=0.9, name="bn")(hidden)
    model = keras.Model(inputs, normed)
    rng = np.random.default_rng(1)
    first = [rng.normal(-5.0, 1.0, (8, 3)).astype(np.float32) for _ in range(3)]
    second = [rng.normal(4.0, 3.0, (8, 3)).astype(np.float32) for _ in range(4)] + [
        rng.normal(4.0, 3.0, (5, 3)).astype(np.float32)]  # a short last batch
    recompute_batchnorm_statistics(model, first)
    forward = model._morphtools_statistics_forward
    assert recompute_batchnorm_statistics(model, second) == 5
    assert model._morphtools_statistics_forward is forward
    bn = model.get_layer("bn")
    np.testing.assert_allclose(np.asarray(bn.moving_mean), np.mean([b.mean(0) for b in second], 0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(bn.moving_variance), np.mean([b.var(0) for b in second], 0), rtol=1e-4)
    assert bn.momentum == 0.9 and model.layers[1].rate == 0.9
    assert recompute_batchnorm_statistics(model, []) == 0  # nothing to average: unchanged
    np.testing.assert_allclose(np.asarray(bn.moving_mean), np.mean([b.mean(0) for b in second], 0), rtol=1e-5)


def test_seed_dropout_repeats_an_epochs_masks_without_retracing_the_training_step():
    import keras

    from morphtools.pretraining import seed_dropout

    inner_in = keras.Input((16,))
    inner = keras.Model(inner_in, keras.layers.Dropout(0.5)(inner_in), name="inner")
    traces = []

    class CountTraces(keras.layers.Layer):
        """Python in a compiled step runs only while it is traced."""

        def call(self, x):
            traces.append(1)
            return x

    inputs = keras.Input((16,))
    outputs = keras.layers.Dense(1)(CountTraces()(keras.layers.Dropout(0.3)(inner(inputs))))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((8, 16), np.float32), np.zeros((8, 1), np.float32)

    def masks():
        return np.asarray(inner(x, training=True))

    assert seed_dropout(model, 5) == 2  # the nested model's generator too
    first = masks()
    masks()  # the generator moves on
    seed_dropout(model, 5)
    np.testing.assert_array_equal(masks(), first)
    seed_dropout(model, 6)
    assert not np.array_equal(masks(), first)
    if keras.config.backend() in ("tensorflow", "jax"):  # compiled training steps
        model.train_on_batch(x, y)
        traced = len(traces)
        for epoch in range(3):
            seed_dropout(model, epoch)
            model.train_on_batch(x, y)
        assert len(traces) == traced
    if keras.config.backend() == "tensorflow":
        # a new global seed clears TensorFlow's kernel caches: EfficientNetB0's training step
        # then took 8 s to set up again, every epoch
        from tensorflow.python.eager import context

        keras.utils.set_random_seed(123)
        seed_dropout(model, 7)
        assert context.global_seed() == 123


def test_weights_checkpoint_round_trips_and_names_a_file_that_does_not_fit(tmp_path):
    from morphtools.model import build_model

    spec = ModelSpec(crop_size=32, questions=("smooth-or-featured",))
    model, other = build_model(spec, seed=1), build_model(spec, seed=2)
    checkpoint = Checkpoint(tmp_path / "ckpt", "f")
    checkpoint.save_model(model, checkpoint.best)
    assert [p.name for p in checkpoint.folder.iterdir()] == ["best.weights.npz"]  # no temporary left
    assert not np.allclose(np.asarray(other.trainable_weights[0]), np.asarray(model.trainable_weights[0]))
    Checkpoint.load_weights(other, checkpoint.best)
    for a, b in zip(other.weights, model.weights, strict=True):  # BatchNorm statistics included
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="best.weights.npz"):
        Checkpoint.load_weights(build_model(ModelSpec(crop_size=32), seed=1), checkpoint.best)  # 34 answers


def test_pretraining_can_start_from_another_crop_sizes_weights(tmp_path, caplog):
    """pretraining.initial_weights: a model trained at one crop size continues at another
    (global pooling makes every variable independent of the input size)."""
    from morphtools.model import build_model

    paths, _ = write_shards(tmp_path, (20, 20), size=36)
    store = ImageStore(paths)
    counts = np.random.default_rng(1).integers(0, 20, (40, 3)).astype(np.float32)
    questions = ("smooth-or-featured",)
    start = build_model(ModelSpec(crop_size=24, questions=questions), seed=9)
    start_path = tmp_path / "small.weights.h5"
    start.save_weights(start_path)
    spec = ModelSpec(crop_size=32, questions=questions)
    # a learning rate too small to move anything: the trained model is the starting one
    params = TrainingParams(epochs=1, batch_size=16, learning_rate=1e-12, validation_fraction=0.25, seed=4,
                            batchnorm_galaxies=0)
    logger = logging.getLogger("initial-weights-test")
    with caplog.at_level(logging.INFO, logger="initial-weights-test"):
        model, _ = pretrain(store, counts, spec, params, tmp_path / "ckpt", logger=logger, initial_weights=start_path)
    assert f"starting from the weights in {start_path}" in caplog.text
    trainable = [v.path for v in model.trainable_weights]
    started = dict(zip([v.path for v in start.weights], start.get_weights(), strict=True))
    for path, value in zip([v.path for v in model.weights], model.get_weights(), strict=True):
        if path in trainable:
            np.testing.assert_allclose(value, started[path], atol=1e-6, err_msg=path)
    # ... and not what the run's own seed would have drawn
    seeded = build_model(spec, seed=params.seed)
    assert any(not np.allclose(a, b) for a, b in zip(seeded.get_weights(), start.get_weights(), strict=True))
    # the starting weights are part of the checkpoint's identity
    plain = fingerprint(store.galaxy_ids, counts, spec, params, store.image_shape)
    assert fingerprint(store.galaxy_ids, counts, spec, params, store.image_shape, "ab" * 32) != plain
    # weights of a model answering other questions do not fit, and the error names the file
    other = build_model(ModelSpec(crop_size=24, questions=("smooth-or-featured", "bar")), seed=9)
    other_path = tmp_path / "bar.weights.h5"
    other.save_weights(other_path)
    with pytest.raises(ValueError, match="bar.weights.h5"):
        pretrain(store, counts, spec, params, tmp_path / "ckpt_other", initial_weights=other_path)
