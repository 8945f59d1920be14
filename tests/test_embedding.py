import h5py
import numpy as np
import pytest

from morphtools.embedding import embed_shard, merge_embeddings, read_embeddings, write_embeddings
from morphtools.model import ModelSpec, build_model, embedding_model, machine_description
from morphtools.storage import write_crops_shard


def test_embed_shard_matches_the_bare_model_and_records_identity(tmp_path):
    spec = ModelSpec(crop_size=32, questions=("smooth-or-featured", "bar"))
    model = build_model(spec, seed=3)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 40, 40), dtype=np.uint8)
    crops = tmp_path / "crops.h5"
    write_crops_shard(crops, [f"g{i}" for i in range(5)], images, np.zeros((5, 8, 8, 3), np.uint8),
                      {"resize_to": 40, "crop_to": 32})
    out = tmp_path / "emb.h5"
    n = embed_shard(crops, embedding_model(model), spec, out, {"model_sha256": "abc", "model_variant": "test"}, batch_size=2)
    got = read_embeddings(out)
    assert n == 5 and list(got["galaxy_id"]) == [f"g{i}" for i in range(5)]
    rep, conc = embedding_model(model).predict_on_batch(images[:, 4:36, 4:36, None].astype(np.float32))
    np.testing.assert_allclose(got["representation"], np.asarray(rep), rtol=1e-4, atol=1e-5)
    expected_smooth = np.asarray(conc)[:, :3] / np.asarray(conc)[:, :3].sum(1, keepdims=True)
    np.testing.assert_allclose(got["predicted_fractions"][:, :3], expected_smooth, rtol=1e-4)
    attrs = got["attrs"]
    assert attrs["model_sha256"] == "abc" and attrs["preprocessing_resize_to"] == 40 and attrs["crop_size"] == 32
    assert list(attrs["answers"])[0] == "smooth-or-featured_smooth_fraction" and len(attrs["answers"]) == 6
    assert attrs["machine"] == machine_description()


def test_merge_concatenates_in_shard_order_and_refuses_mixed_models(tmp_path):
    rng = np.random.default_rng(1)
    paths = []
    for k, n in enumerate((3, 0, 4)):
        path = tmp_path / f"s{k}.h5"
        write_embeddings(path, [f"{k}_{i}" for i in range(n)], rng.normal(size=(n, 1280)),
                         rng.random((n, 34)), {"model_sha256": "same", "machine": "cpu A" if k < 2 else "cpu B"})
        paths.append(path)
    merged = tmp_path / "merged.h5"
    assert merge_embeddings(paths, merged, chunk_rows=2) == 7
    got = read_embeddings(merged, ("galaxy_id", "representation", "shard"))
    assert list(got["galaxy_id"]) == ["0_0", "0_1", "0_2", "2_0", "2_1", "2_2", "2_3"]
    assert got["shard"].tolist() == [0, 0, 0, 2, 2, 2, 2]
    np.testing.assert_array_equal(got["representation"][3:], read_embeddings(paths[2])["representation"])
    with h5py.File(merged) as f:
        assert f["representation"].chunks == (2, 1280)
        assert f.attrs["machine"] == "cpu A | cpu B"  # every machine the shards ran on, not the first's
    write_embeddings(paths[1], ["x"], np.zeros((1, 1280)), np.zeros((1, 34)), {"model_sha256": "other"})
    with pytest.raises(ValueError, match="s1.h5: embedded with model other"):
        merge_embeddings(paths, tmp_path / "bad.h5")
    with pytest.raises(KeyError, match="no dataset 'nope'"):
        read_embeddings(merged, ("nope",))


def test_predict_centre_crops_matches_direct_calls_for_every_output_and_empty_input():
    import keras

    from morphtools.pretraining import centre_crop, model_input, predict_centre_crops

    inputs = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(3)(flat), keras.layers.Dense(2)(flat)])
    images = np.random.default_rng(0).integers(0, 256, (7, 12, 12), dtype=np.uint8)
    seen = []

    class Bar:
        def __init__(self, total, desc, unit):
            seen.append(total)

        def update(self, n):
            seen.append(n)

        def close(self):
            pass

    first, second = predict_centre_crops(model, images, 8, batch_size=3, progress=Bar)
    direct = model.predict_on_batch(model_input(centre_crop(images, 8)))
    assert first.shape == (7, 3) and second.shape == (7, 2) and first.dtype == np.float32
    np.testing.assert_allclose(first, direct[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(second, direct[1], rtol=1e-5, atol=1e-6)
    assert seen == [7, 3, 3, 1]
    empty = predict_centre_crops(model, images[:0], 8, batch_size=3)
    assert [e.shape for e in empty] == [(0, 3), (0, 2)]
