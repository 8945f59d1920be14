"""Kaggle GZ2 and GZ DECaLS PNG ingestion: layouts, counts, only what a shard needs, and
archives that try to write outside their folder."""

import io
import stat
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from morphtools.archives import (
    ArchiveError,
    extract_shard_images,
    index_gz_decals_pngs,
    read_index,
    unpack_kaggle_gz2,
)
from morphtools.decision_tree import gz2_columns

IDS = [100008, 100023, 100053, 100078, 100090, 100122]


def jpeg_bytes(seed):
    pixels = np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def solutions_csv(ids):
    table = pd.DataFrame({"GalaxyID": ids} | {c: 0.1 for c in gz2_columns()})
    return table.to_csv(index=False).encode()


def inner_zip(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def kaggle_download(path, ids=IDS, image_ids=IDS):
    """The competition download as Kaggle serves it: one zip of zips."""
    images = {f"images_training_rev1/{i}.jpg": jpeg_bytes(i) for i in image_ids}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("training_solutions_rev1.zip", inner_zip({"training_solutions_rev1.csv": solutions_csv(ids)}))
        zf.writestr("images_training_rev1.zip", inner_zip(images))
        zf.writestr("images_test_rev1.zip", inner_zip({"images_test_rev1/999.jpg": jpeg_bytes(9)}))
        zf.writestr("all_zeros_benchmark.zip", inner_zip({"all_zeros_benchmark.csv": b"GalaxyID\n"}))
    return path


def test_nested_kaggle_download_extracts_only_what_is_needed(tmp_path):
    archive = kaggle_download(tmp_path / "galaxy-zoo-the-galaxy-challenge.zip")
    work = tmp_path / "work"
    counts = unpack_kaggle_gz2(archive, work, work / "solutions.csv", work / "index.csv", expected_galaxies=6)
    assert counts == {"solutions": 6, "images": 6, "without_image": 0, "images_without_solution": 0}
    # the test images and the benchmarks stay in the archive
    assert sorted(p.name for p in work.iterdir()) == ["images_training_rev1.zip", "index.csv", "solutions.csv",
                                                       "training_solutions_rev1.zip"]
    solutions = pd.read_csv(work / "solutions.csv")
    assert solutions["GalaxyID"].tolist() == IDS and len(solutions.columns) == 38
    index = read_index(work / "index.csv")
    assert sorted(index["galaxy_id"]) == sorted(map(str, IDS))

    # a shard extracts its own images only; GalaxyID maps to <id>.jpg
    shard = ["100023", "100090", "424242"]
    manifest = extract_shard_images(shard, index, tmp_path / "images", ".jpg", "no image in the archive")
    assert manifest["status"].tolist() == ["fetched", "fetched", "rejected"]
    assert manifest["reason"].iloc[2] == "424242: no image in the archive"
    on_disk = sorted(p.name for p in (tmp_path / "images").rglob("*.jpg"))
    assert on_disk == ["100023.jpg", "100090.jpg"]
    with Image.open(manifest["path"].iloc[0]) as im:
        assert np.array_equal(np.asarray(im), np.asarray(Image.open(io.BytesIO(jpeg_bytes(100023)))))
    again = extract_shard_images(shard[:2], index, tmp_path / "images", ".jpg", "missing")
    assert again["status"].tolist() == ["cached", "cached"]


def test_flat_zip_and_unzipped_folder_layouts(tmp_path):
    flat = tmp_path / "flat.zip"
    with zipfile.ZipFile(flat, "w") as zf:
        zf.writestr("kaggle/training_solutions_rev1.csv", solutions_csv(IDS[:3]))
        for i in IDS[:3]:
            zf.writestr(f"kaggle/images_training_rev1/{i}.jpg", jpeg_bytes(i))
    unpack_kaggle_gz2(flat, tmp_path / "w1", tmp_path / "w1/s.csv", tmp_path / "w1/i.csv", expected_galaxies=3)
    assert sorted(read_index(tmp_path / "w1/i.csv")["galaxy_id"]) == sorted(map(str, IDS[:3]))

    folder = tmp_path / "folder"
    (folder / "images_training_rev1").mkdir(parents=True)
    (folder / "training_solutions_rev1.csv").write_bytes(solutions_csv(IDS[:2]))
    for i in IDS[:2]:
        (folder / "images_training_rev1" / f"{i}.jpg").write_bytes(jpeg_bytes(i))
    unpack_kaggle_gz2(folder, tmp_path / "w2", tmp_path / "w2/s.csv", tmp_path / "w2/i.csv", expected_galaxies=None)
    index = read_index(tmp_path / "w2/i.csv")
    manifest = extract_shard_images([str(IDS[0])], index, tmp_path / "img", ".jpg", "missing")
    # images already unpacked are used where they are, not copied
    assert manifest["status"].tolist() == ["cached"]
    assert manifest["path"].iloc[0] == str(folder / "images_training_rev1" / f"{IDS[0]}.jpg")
    assert not (tmp_path / "img").exists()


def test_counts_are_verified(tmp_path):
    archive = kaggle_download(tmp_path / "k.zip", ids=IDS, image_ids=IDS[:-1])
    with pytest.raises(ArchiveError, match=r"1 of 6 galaxies .* have no images_training_rev1/<GalaxyID>\.jpg, "
                                           r"e\.g\. \['100122'\]"):
        unpack_kaggle_gz2(archive, tmp_path / "w", tmp_path / "w/s.csv", tmp_path / "w/i.csv", expected_galaxies=6)
    with pytest.raises(ArchiveError, match="6 galaxies, expected 61578"):
        unpack_kaggle_gz2(archive, tmp_path / "w", tmp_path / "w/s.csv", tmp_path / "w/i.csv",
                          expected_galaxies=61578)
    # without an expected count the missing image is reported per galaxy instead
    counts = unpack_kaggle_gz2(archive, tmp_path / "w", tmp_path / "w/s.csv", tmp_path / "w/i.csv", None)
    assert counts["without_image"] == 1
    with pytest.raises(ArchiveError, match=r"no training_solutions_rev1\.csv"):
        with zipfile.ZipFile(tmp_path / "empty.zip", "w") as zf:
            zf.writestr("readme.txt", b"hello")
        unpack_kaggle_gz2(tmp_path / "empty.zip", tmp_path / "w3", tmp_path / "w3/s.csv", tmp_path / "w3/i.csv", None)
    with pytest.raises(ArchiveError, match="Kaggle archive not found"):
        unpack_kaggle_gz2(tmp_path / "nowhere.zip", tmp_path / "w", tmp_path / "w/s.csv", tmp_path / "w/i.csv", None)


@pytest.mark.parametrize("evil", ["../../escaped.jpg", "/tmp/escaped.jpg", "images_training_rev1/../../x.jpg",
                                  "C:/escaped.jpg", "a\\..\\escaped.jpg"])
def test_members_that_escape_the_folder_are_refused(tmp_path, evil):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("training_solutions_rev1.csv", solutions_csv(IDS[:1]))
        zf.writestr(f"images_training_rev1/{IDS[0]}.jpg", jpeg_bytes(1))
        zf.writestr(evil, b"payload")
    with pytest.raises(ArchiveError, match="evil.zip: member"):
        unpack_kaggle_gz2(archive, tmp_path / "w", tmp_path / "w/s.csv", tmp_path / "w/i.csv", None)
    assert not list(tmp_path.parent.rglob("escaped.jpg"))


def test_symlinks_and_oversized_members_are_refused(tmp_path):
    archive = tmp_path / "links.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("training_solutions_rev1.csv", solutions_csv(IDS[:1]))
        link = zipfile.ZipInfo(f"images_training_rev1/{IDS[0]}.jpg")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(ArchiveError, match="symbolic link"):
        unpack_kaggle_gz2(archive, tmp_path / "w", tmp_path / "w/s.csv", tmp_path / "w/i.csv", None)

    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("training_solutions_rev1.csv", solutions_csv(IDS[:1]))
        zf.writestr(f"images_training_rev1/{IDS[0]}.jpg", b"\0" * 5_000_000)  # compresses to a few kB
    unpack_kaggle_gz2(big, tmp_path / "w", tmp_path / "w/s.csv", tmp_path / "w/i.csv", None)
    manifest = extract_shard_images([str(IDS[0])], read_index(tmp_path / "w/i.csv"), tmp_path / "img", ".jpg",
                                    "missing", max_bytes=1_000_000)
    assert manifest["status"].tolist() == ["rejected"] and "limit 1000000" in manifest["reason"].iloc[0]
    assert list((tmp_path / "img").rglob("*")) == [] or all(p.is_dir() for p in (tmp_path / "img").rglob("*"))


def test_gz_decals_png_zips_are_indexed_by_iauname(tmp_path):
    names = ["J000000.80+004200.0", "J094651.40-010228.5", "J235959.10+150000.2"]
    zips = []
    for part, name in enumerate(names, start=1):
        path = tmp_path / f"gz_decals_dr5_png_part{part}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(f"{name[:4]}/{name}.png", jpeg_bytes(part))
            zf.writestr(f"{name[:4]}/", b"")
        zips.append(path)
    assert index_gz_decals_pngs(zips, tmp_path / "index.csv") == 3
    index = read_index(tmp_path / "index.csv")
    assert sorted(index["galaxy_id"]) == sorted(names)
    manifest = extract_shard_images(names[1:2], index, tmp_path / "png", ".png", "not in the PNG zips")
    assert manifest["status"].tolist() == ["fetched"] and manifest["path"].iloc[0].endswith(f"{names[1]}.png")
