import numpy as np
import pytest

from morphtools.storage import atomic_path, read_crops_shard, write_crops_shard


def test_crops_shard_round_trip(tmp_path):
    ids = ["J1", "J2", "J3"]
    images = np.random.default_rng(1).integers(0, 256, (3, 224, 224), dtype=np.uint8)
    thumbs = np.zeros((3, 128, 128, 3), np.uint8)
    write_crops_shard(tmp_path / "s.h5", ids, images, thumbs, {"resize_to": 300, "survey": "decals"})
    got_ids, got_images, got_thumbs, attrs = read_crops_shard(tmp_path / "s.h5")
    assert list(got_ids) == ids
    np.testing.assert_array_equal(got_images, images)
    assert got_thumbs.shape == (3, 128, 128, 3)
    assert attrs["resize_to"] == 300 and attrs["survey"] == "decals"


def test_empty_shard_is_valid(tmp_path):
    write_crops_shard(tmp_path / "e.h5", [], np.zeros((0, 300, 300), np.uint8), np.zeros((0, 128, 128, 3), np.uint8),
                      {"resize_to": 300, "thumbnail_size": 128})
    ids, images, _, _ = read_crops_shard(tmp_path / "e.h5")
    assert len(ids) == 0 and images.shape == (0, 300, 300)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.csv") as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
