"""Fine-tuning for rings: the labelled set, the paper's splits, unfreezing, one tiny job."""

import numpy as np
import pandas as pd
import pytest

from morphtools.finetune import (
    DEPTHS,
    FEATURED_COLUMN,
    NOT_EDGE_ON_COLUMN,
    SMOOTH_COLUMN,
    FinetuneData,
    FinetuneParams,
    RingCuts,
    SplitRules,
    binary_log_loss,
    build_base,
    build_head,
    finetune,
    make_split,
    max_train_size,
    ring_dataset,
    set_unfrozen_depth,
    split_seed,
    training_sizes,
)


def labelled(n_rings=50, n_not=400):
    ids = [f"R{i}" for i in range(n_rings)] + [f"N{i}" for i in range(n_not)]
    return pd.DataFrame({"galaxy_id": ids, "label": [1] * n_rings + [0] * n_not})


def test_ring_dataset_cuts_on_predicted_fractions_and_labels_from_votes():
    predicted = pd.DataFrame({
        "galaxy_id": ["a", "b", "c", "d", "e", "f", "g", "h"],
        SMOOTH_COLUMN: [0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.6, 0.1],
        FEATURED_COLUMN: [0.9, 0.9, 0.1, 0.9, 0.9, 0.9, 0.4, 0.2],     # c: smooth, not a candidate
        NOT_EDGE_ON_COLUMN: [0.9, 0.9, 0.9, 0.5, 0.9, 0.9, 0.9, 0.9],  # d: edge-on
    })
    votes = pd.DataFrame({"galaxy_id": ["a", "b", "c", "d", "e", "g", "h"],  # f has no ring votes
                          "ring": [0.5, 0.01, 0.9, 0.9, 0.1, 0.6, 0.7]})      # e: in between, dropped
    # the paper's text, smooth < 0.25: leaves out g, a ring whose featured fraction is only 0.4,
    # and keeps h, which is little smooth and little featured (mostly "artifact")
    table, summary = ring_dataset(predicted, votes, "ring", RingCuts())
    assert table["galaxy_id"].tolist() == ["a", "b", "h"] and table["label"].tolist() == [1, 0, 1]
    assert summary == {"galaxies": 8, "with_ring_votes": 7, "candidates": 4, "rings": 2, "not_rings": 1,
                       "dropped_in_between": 1}
    # the wider cut the protocol notes allow, featured > 0.25: keeps g, leaves out h
    wider = RingCuts(smooth_max=None, featured_min=0.25)
    table, summary = ring_dataset(predicted.drop(columns=SMOOTH_COLUMN), votes, "ring", wider)
    assert table["galaxy_id"].tolist() == ["a", "b", "g"] and table["label"].tolist() == [1, 0, 1]
    assert summary["candidates"] == 4
    # both at once keep only what both keep
    both = RingCuts(smooth_max=0.25, featured_min=0.25)
    assert ring_dataset(predicted, votes, "ring", both)[0]["galaxy_id"].tolist() == ["a", "b"]
    with pytest.raises(KeyError, match="no column"):
        ring_dataset(predicted.drop(columns=SMOOTH_COLUMN), votes, "ring")
    with pytest.raises(KeyError, match="no column"):
        ring_dataset(predicted.drop(columns=FEATURED_COLUMN), votes, "ring", wider)


@pytest.mark.parametrize("train_size", [1, 8, 59, 350])
def test_split_follows_the_paper(train_size):
    data = labelled(50, 400)
    split = make_split(data, train_size, seed=3)
    parts = {name: split[split["split"] == name] for name in ("train", "validation", "test")}
    # 10% / 20% of the rings held out, each with as many not-rings
    assert (parts["validation"]["label"] == 1).sum() == 5 == (parts["validation"]["label"] == 0).sum()
    assert (parts["test"]["label"] == 1).sum() == 10 == (parts["test"]["label"] == 0).sum()
    assert len(parts["train"]) == train_size
    # no galaxy in two splits; a training ring may appear up to five times, a not-ring once
    sets = {name: set(p["galaxy_id"]) for name, p in parts.items()}
    assert not (sets["train"] & sets["validation"]) and not (sets["train"] & sets["test"])
    assert not (sets["validation"] & sets["test"])
    copies = parts["train"]["galaxy_id"].value_counts()
    assert (copies[copies.index.str.startswith("R")] <= 5).all()
    assert (copies[copies.index.str.startswith("N")] == 1).all()


def test_full_training_set_is_balanced_with_rings_repeated_five_times():
    data = labelled(50, 400)
    n = max_train_size(50)
    assert n == 2 * 5 * 35
    train = make_split(data, n, seed=0).query("split == 'train'")
    assert (train["label"] == 1).sum() == (train["label"] == 0).sum() == 175
    assert (train.loc[train["label"] == 1, "galaxy_id"].value_counts() == 5).all()


def test_split_is_seeded_and_errors_name_the_shortfall():
    data = labelled(50, 400)
    pd.testing.assert_frame_equal(make_split(data, 30, 7), make_split(data, 30, 7))
    assert not make_split(data, 30, 7).equals(make_split(data, 30, 8))
    with pytest.raises(ValueError, match="more than the 350 training rows"):
        make_split(data, 351, 0)
    with pytest.raises(ValueError, match="not-rings are too few"):
        make_split(labelled(50, 100), 10, 0)
    with pytest.raises(ValueError, match="too few to hold out"):
        make_split(labelled(2, 100), 1, 0)
    assert split_seed(1, 21, 0) == split_seed(1, 21, 0) != split_seed(1, 21, 1)


def test_training_sizes_match_the_paper():
    assert training_sizes(69620) == [1, 3, 8, 21, 58, 159, 438, 1207, 3327, 9167, 25263, 69620]


def test_epoch_limit_and_patience_rules():
    params = FinetuneParams()
    assert params.max_epochs(5000) == 1000 and params.patience(5000) == 30
    assert params.max_epochs(5e6) == 1 and params.patience(5e6) == 10
    capped = FinetuneParams(epochs_cap=24)
    assert capped.max_epochs(21) == 24 and capped.patience(21) == 10
    # the head on cached representations keeps the paper's limit unless capped on its own
    assert capped.max_epochs(21, cached_head=True) == 238095 and capped.patience(21, cached_head=True) == 30
    assert FinetuneParams(head_epochs_cap=50).max_epochs(21, cached_head=True) == 50


def test_binary_log_loss_by_hand():
    assert binary_log_loss([1, 0], [0.8, 0.4]) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)


def test_unfreezing_goes_from_the_output_down_and_keeps_batchnorm_frozen():
    import keras

    base = build_base("scratch", 32)
    counts = [set_unfrozen_depth(base, depth) for depth in DEPTHS]
    assert counts[0] == 0 and counts == sorted(counts) and len(set(counts)) == len(counts)
    set_unfrozen_depth(base, "all")
    layers = [layer for layer in base.layers[-1].layers]
    assert all(not layer.trainable for layer in layers if isinstance(layer, keras.layers.BatchNormalization))
    set_unfrozen_depth(base, "block7")
    trainable = {layer.name for layer in layers if layer.trainable and layer.weights}
    assert "top_conv" in trainable and "block7a_project_conv" in trainable
    assert "block6a_expand_conv" not in trainable
    with pytest.raises(ValueError, match="unknown unfreeze depth"):
        set_unfrozen_depth(base, "block9")


@pytest.mark.parametrize("file_name", ["efficientnetb0_notop.h5", "efficientnetb0_notop.weights.h5"])
def test_imagenet_weights_file_gives_keras_imagenet_network_through_the_greyscale_adapter(tmp_path, file_name):
    from unittest import mock

    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    rgb = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    norm = next(layer for layer in rgb.layers if isinstance(layer, keras.layers.Normalization))
    norm.set_weights([np.array([0.485, 0.456, 0.406]), np.square([0.229, 0.224, 0.225]), np.array(0)])
    path = tmp_path / file_name
    if file_name.endswith(".weights.h5"):
        rgb.save_weights(path)
    else:  # the format of the file Keras downloads
        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, rgb)
    # the reference: Keras' own weights="imagenet" network, its download replaced by the file
    with mock.patch("keras.src.utils.file_utils.get_file", return_value=str(path)):
        imagenet = keras.applications.EfficientNetB0(include_top=False, weights="imagenet", input_shape=(32, 32, 3),
                                                     pooling="avg")
    base = build_base("imagenet", 32, path)
    grey = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 1)).astype(np.float32)
    expected = imagenet.predict_on_batch(np.repeat(grey, 3, axis=-1))
    scale = np.abs(expected).max()
    np.testing.assert_allclose(base.predict_on_batch(grey), expected, rtol=0, atol=1e-4 * scale)
    # the network built straight from the file lacks Keras' stddev rescaling and differs
    assert np.abs(rgb.predict_on_batch(np.repeat(grey, 3, axis=-1)) - expected).max() > 0.1 * scale
    with pytest.raises(ValueError, match="needs a weights file"):
        build_base("imagenet", 32)
    with pytest.raises(ValueError, match="cannot load as EfficientNetB0 ImageNet weights"):
        build_base("imagenet", 64, tmp_path / "missing.h5")


def test_pretrained_base_layers_are_copied_from_the_vote_model(tmp_path):
    from morphtools.model import ModelSpec, build_model, embedding_model

    spec = ModelSpec(crop_size=32, questions=("bar",))
    model = build_model(spec, seed=5)
    path = tmp_path / "bar.weights.h5"
    model.save_weights(path)
    base = build_base("bar", 32, path, questions=("bar",))
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 1)).astype(np.float32)
    expected = embedding_model(model).predict_on_batch(x)[0]
    np.testing.assert_allclose(base.predict_on_batch(x), expected, rtol=1e-4, atol=1e-4)


def _tiny_job(tmp_path, depth, checkpoint="ckpt", head_from="features", progress=None, epochs_cap=3, base_seed=2):
    rng = np.random.default_rng(0)
    data = labelled(20, 100)
    split = make_split(data, 40, seed=1, rules=SplitRules())
    labels = split["label"].to_numpy()
    # rings are bright in the middle: a learnable signal in both the features and the images
    images = rng.integers(0, 60, (len(split), 40, 40)).astype(np.uint8)
    images[labels == 1, 14:26, 14:26] += 150
    features = rng.normal(size=(len(split), 1280)).astype(np.float32)
    features[:, 0] += 3 * labels
    params = FinetuneParams(epochs_cap=epochs_cap, head_epochs_cap=epochs_cap, batch_size=16)
    base = build_base("scratch", 32, seed=base_seed)
    return finetune(FinetuneData(split, features, images), base, depth, params, 32, seed=4,
                    checkpoint_dir=tmp_path / checkpoint, head_from=head_from, progress=progress)


def test_one_tiny_finetuning_job_end_to_end(tmp_path):
    metrics, history = _tiny_job(tmp_path, "top")
    assert metrics["train_size"] == 40 and metrics["validation_size"] == 4 and metrics["test_size"] == 8
    assert set(history["stage"]) == {"head", "finetune"}
    assert metrics["head_epochs"] == metrics["finetune_epochs"] == 3
    assert (history["epoch_seconds"] > history["seconds"]).all()  # training, then validation
    assert 0 <= metrics["test_accuracy"] <= 1 and np.isfinite(metrics["test_loss"])
    # the head saw features in which rings stand out: it must beat chance on the balanced test set
    assert metrics["frozen_test_accuracy"] > 0.5
    # a finished job resumes to the same answer without training again
    again, history_again = _tiny_job(tmp_path, "top")
    assert again["test_loss"] == pytest.approx(metrics["test_loss"], rel=1e-5)
    assert len(history_again) == len(history)


class Killed(Exception):
    pass


def _kill_a_tiny_job_in_its_second_stage(tmp_path):
    calls = []

    def kill(epoch, max_epochs, val_loss):
        calls.append(epoch)
        if len(calls) == 5:  # three head epochs, then the second fine-tuning epoch
            raise Killed

    with pytest.raises(Killed):
        _tiny_job(tmp_path, "top", progress=kill)


def test_a_killed_job_resumes_at_the_epoch_it_reached(tmp_path):
    _kill_a_tiny_job_in_its_second_stage(tmp_path)
    resumed = []
    metrics, history = _tiny_job(tmp_path, "top", progress=lambda e, m, v: resumed.append(e))
    # the head on cached representations (milliseconds an epoch, no files) is trained
    # again; fine-tuning goes on from its second epoch's checkpoint
    assert resumed == [1, 2, 3, 3] and metrics["finetune_epochs"] == 3
    assert history["epoch"].tolist() == [1, 2, 3, 1, 2, 3]


def test_a_killed_jobs_checkpoint_is_not_resumed_on_another_base(tmp_path):
    _kill_a_tiny_job_in_its_second_stage(tmp_path)
    resumed = []
    _, history = _tiny_job(tmp_path, "top", progress=lambda e, m, v: resumed.append(e), base_seed=3)
    assert resumed == [1, 2, 3, 1, 2, 3]  # fine-tuning starts again from the new base
    assert history["epoch"].tolist() == [1, 2, 3, 1, 2, 3]


def test_frozen_depth_trains_the_head_only(tmp_path):
    metrics, history = _tiny_job(tmp_path, "frozen", epochs_cap=12)
    assert set(history["stage"]) == {"head"} and metrics["finetune_epochs"] == 0
    assert metrics["test_accuracy"] == metrics["frozen_test_accuracy"]
    # the best epoch's weights, kept in memory (no checkpoint files for the cached head)
    best = history.loc[history["val_loss"].idxmin()]
    assert metrics["head_best_epoch"] == best["epoch"]
    assert metrics["frozen_validation_loss"] == pytest.approx(best["val_loss"], rel=1e-5)
    assert not (tmp_path / "ckpt").exists()


def test_head_can_train_through_the_frozen_base_on_augmented_images(tmp_path):
    metrics, history = _tiny_job(tmp_path, "frozen", head_from="images")
    assert metrics["head_from"] == "images" and set(history["stage"]) == {"head"}
    assert len(history) == 3 and np.isfinite(metrics["test_loss"])
    with pytest.raises(ValueError, match="head_from"):
        _tiny_job(tmp_path, "frozen", head_from="pixels")


def test_head_shape():
    head = build_head()
    assert head.output_shape == (None, 1) and head.input_shape == (None, 1280)


def test_images_are_read_by_id_in_memory_or_lazily(tmp_path):
    from morphtools.finetune import LazyImages, read_images
    from morphtools.storage import write_crops_shard

    rng = np.random.default_rng(0)
    paths = []
    for shard in range(2):
        images = rng.integers(0, 256, (3, 8, 8), dtype=np.uint8)
        paths.append(tmp_path / f"shard_{shard}.h5")
        write_crops_shard(paths[-1], [f"g{shard}{i}" for i in range(3)], images, np.zeros((3, 4, 4, 3), np.uint8),
                          {"resize_to": 8})
    wanted = ["g12", "g00", "g12", "g01"]
    in_memory = read_images(paths, wanted)
    lazy = read_images(paths, wanted, max_memory_bytes=0)
    assert isinstance(in_memory, np.ndarray) and isinstance(lazy, LazyImages) and len(lazy) == 4
    np.testing.assert_array_equal(lazy[np.arange(4)], in_memory)
    np.testing.assert_array_equal(lazy[np.array([3, 1])], in_memory[[3, 1]])
    assert (in_memory[0] == in_memory[2]).all()
    with pytest.raises(KeyError, match="no crop for 1 galaxies"):
        read_images(paths, ["g00", "nope"])


def test_margins_of_multi_are_paired_by_repeat():
    from morphtools.finetune import margins_over_others

    rows = []
    for size, multi, scratch in [(21, [0.8, 0.6], [0.5, 0.7]), (58, [0.9, 0.9], [0.6, 0.5])]:
        for repeat in range(2):
            rows.append({"initialisation": "multi", "depth": "frozen", "train_size": size, "repeat": repeat,
                         "test_accuracy": multi[repeat]})
            rows.append({"initialisation": "scratch", "depth": "frozen", "train_size": size, "repeat": repeat,
                         "test_accuracy": scratch[repeat]})
    # a depth where only scratch ran gives no rows
    rows.append({"initialisation": "scratch", "depth": "all", "train_size": 21, "repeat": 0, "test_accuracy": 0.5})
    margins = margins_over_others(pd.DataFrame(rows)).set_index("train_size")
    assert list(margins.index) == [21, 58] and set(margins["worse"]) == {"scratch"}
    # size 21: repeat 0 +0.3, repeat 1 -0.1 -> mean +0.1, one repeat won
    assert margins.loc[21, "margin_mean"] == pytest.approx(0.1)
    assert margins.loc[21, "margin_min"] == pytest.approx(-0.1) and margins.loc[21, "margin_max"] == pytest.approx(0.3)
    assert margins.loc[21, "repeats_won"] == 1 and margins.loc[58, "repeats_won"] == 2
    assert margins.loc[58, "margin_mean"] == pytest.approx(0.35)
    empty = margins_over_others(pd.DataFrame(rows[1::2]))  # scratch only
    assert empty.empty and "margin_mean" in empty.columns
