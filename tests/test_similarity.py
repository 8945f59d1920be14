"""Similarity search: exact neighbours against brute force, duplicates on the sky, sky
matching (RA wrap-around, poles), and the ``morphtools similar`` command's answers and errors."""

import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from morphtools.cli import main
from morphtools.similarity import (
    SimilarityIndex,
    SkyMatchError,
    SkyMatchWarning,
    UnknownGalaxyError,
    exact_nearest,
)
from morphtools.storage import write_crops_shard

ARCSEC = 1 / 3600


def brute_force(vectors, query_rows, k, metric, excluded):
    """Reference: float64 distances to every row, excluded rows removed, sorted by (distance, row)."""
    data = vectors.astype(np.float64)
    distances = cdist(data[query_rows], data, "cityblock" if metric == "manhattan" else "euclidean")
    rows = []
    for j, skip in enumerate(excluded):
        d = distances[j].copy()
        d[skip] = np.inf
        order = np.lexsort((np.arange(len(d)), d))[:k]
        rows.append(order[np.isfinite(d[order])])
    return rows, distances


@pytest.mark.parametrize("metric", ["manhattan", "euclidean"])
@pytest.mark.parametrize("dims", [2, 10, 300])
def test_exact_nearest_equals_brute_force(metric, dims):
    rng = np.random.default_rng(dims)
    vectors = rng.normal(size=(3000, dims)).astype(np.float32)
    vectors[7] = vectors[8]  # exact ties, broken by row order
    vectors[100:110] = vectors[99] + rng.normal(scale=1e-4, size=(10, dims))  # near-ties in float32
    queries = np.array([0, 7, 99, 2999])
    excluded = [np.array([q]) for q in queries]
    excluded[0] = np.array([0, 5, 6])
    reference, distances = brute_force(vectors, queries, 12, metric, excluded)
    norms_options = [None]
    if metric == "euclidean":  # the dot-product scan too, with its error bound
        norms_options.append(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))
    for norms in norms_options:
        found = exact_nearest(vectors, vectors[queries], 12, metric, excluded, norms)
        for j in range(len(queries)):
            np.testing.assert_array_equal(found.rows[j], reference[j])
            np.testing.assert_allclose(found.distances[j], distances[j, reference[j]], rtol=1e-12)
    assert 8 in found.rows[1] and 7 not in found.rows[1]  # the query's identical twin is kept, itself not


@pytest.mark.parametrize("metric, with_norms", [("manhattan", False), ("euclidean", False), ("euclidean", True)])
def test_float32_rounding_cannot_swap_neighbours(metric, with_norms):
    """Row 0 is farther than row 1 by 2^-20 in one coordinate of 300: float32 sums of the
    distances tie (a 300-sized sum has a float32 step of 2^-15), so a float32-only search
    would return row 0 first; the float64 pass must return row 1."""
    query = np.full(300, 0.5, np.float32)
    vectors = np.stack([np.ones(300), np.ones(300), np.full(300, 2.0)]).astype(np.float32)
    vectors[0, 0] += 2.0 ** -20
    norms = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64) if with_norms else None
    assert list(exact_nearest(vectors, query[None], 1, metric, None, norms).rows[0]) == [1]
    found = exact_nearest(vectors, query[None], 2, metric, None, norms)
    assert list(found.rows[0]) == [1, 0] and found.distances[0, 0] < found.distances[0, 1]


def test_fewer_galaxies_than_k_pads_and_bad_input_fails():
    vectors = np.arange(8, dtype=np.float32).reshape(4, 2)
    found = exact_nearest(vectors, vectors[:1], 6, "manhattan", [np.array([0])])
    assert list(found.rows[0]) == [1, 2, 3, -1, -1, -1]
    assert np.isnan(found.distances[0, 3:]).all() and found.distances[0, 0] == 4.0
    with pytest.raises(ValueError, match="metric"):
        exact_nearest(vectors, vectors[:1], 2, "cosine")
    with pytest.raises(ValueError, match="dimensions"):
        exact_nearest(vectors, np.zeros((1, 3)), 2)
    with pytest.raises(ValueError, match="at least one"):
        exact_nearest(vectors, vectors[:1], 0)


def offset(ra, dec, east_arcsec=0.0, north_arcsec=0.0):
    """A position moved by small on-sky offsets (arcsec)."""
    return ra + east_arcsec * ARCSEC / np.cos(np.radians(dec)), dec + north_arcsec * ARCSEC


@pytest.fixture()
def sky_index():
    """Galaxy g0 catalogued twice (g0_dup, 50" away, same vector); g_near has a vector
    close to g0 but lies 10 deg away; the rest are random."""
    rng = np.random.default_rng(3)
    n = 40
    vectors = rng.normal(size=(n, 5)).astype(np.float32)
    ra = rng.uniform(150, 160, n)
    dec = rng.uniform(0, 10, n)
    ra[1], dec[1] = offset(ra[0], dec[0], east_arcsec=50)
    vectors[1] = vectors[0]
    ra[2], dec[2] = ra[0] + 10, dec[0]
    vectors[2] = vectors[0] + 0.01
    ids = ["g0", "g0_dup", "g_near"] + [f"g{i}" for i in range(3, n)]
    return SimilarityIndex(ids, vectors, ra, dec)


def test_duplicates_on_the_sky_are_dropped_by_default(sky_index):
    dropped = sky_index.neighbours([0], 3)
    assert sky_index.galaxy_ids[dropped.rows[0][0]] == "g_near" and 1 not in dropped.rows[0]
    kept = sky_index.neighbours([0], 3, duplicate_radius_arcsec=None)
    assert list(sky_index.galaxy_ids[kept.rows[0][:2]]) == ["g0_dup", "g_near"] and kept.distances[0, 0] == 0
    narrow = sky_index.neighbours([0], 3, duplicate_radius_arcsec=30)  # 50" away: a different object
    assert sky_index.galaxy_ids[narrow.rows[0][0]] == "g0_dup"
    # batched queries get their own exclusions
    both = sky_index.neighbours([0, 1], 2)
    assert 1 not in both.rows[0] and 0 not in both.rows[1]


def test_duplicates_found_across_ra_zero_and_near_a_pole():
    # pairs 54" apart across RA 0/360 and 72" apart across the north pole (RA 0 vs 180) are
    # duplicates; a pair 120" apart is not
    ra = np.array([359.99, 0.005, 0.0, 180.0, 100.0, 100.0])
    dec = np.array([0.0, 0.0, 89.99, 89.99, 10.0, 10.0 + 120 * ARCSEC])
    vectors = np.array([[0.0], [0.0], [5.0], [5.0], [9.0], [9.0]])
    index = SimilarityIndex([f"g{i}" for i in range(6)], vectors, ra, dec)
    groups = index.sky_neighbourhood([0, 1, 2, 3, 4], 100)
    assert [list(g) for g in groups] == [[0, 1], [0, 1], [2, 3], [2, 3], [4]]
    found = index.neighbours([0, 2, 4], 1)
    assert list(found.rows[:, 0]) == [2, 4, 5]  # the twin at 120" is a separate galaxy


def test_table_lists_query_then_neighbours(sky_index):
    table = sky_index.table(0, sky_index.neighbours([0], 4))
    assert list(table["rank"]) == [0, 1, 2, 3, 4] and table["galaxy_id"].iloc[0] == "g0"
    assert table["distance"].is_monotonic_increasing and table["distance"].iloc[0] == 0
    assert table["separation_arcsec"].iloc[0] == 0 and (table["separation_arcsec"].iloc[1:] > 100).all()


def haversine_deg(ra1, dec1, ra2, dec2):
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(h)))


def test_sky_matching_across_ra_zero_and_near_the_poles():
    # pairs straddling RA 0/360, and galaxies around the north and south poles, where a
    # small step on the sky is a large step in RA
    ra = np.array([359.9990, 0.0008, 0.0, 180.0, 90.0, 270.0, 45.0, 225.0])
    dec = np.array([0.0, 0.0, 89.9990, 89.9990, 89.9990, -89.9985, -89.9985, -89.9985])
    index = SimilarityIndex([f"g{i}" for i in range(len(ra))], np.zeros((len(ra), 2)), ra, dec)
    queries = [(0.0001, 0.0), (359.9995, 0.0), (-0.0005, 0.0), (360.0002, 0.0), (130.0, 89.9997),
               (180.0, 89.9999), (300.0, 89.9993), (0.0, -89.9990), (200.0, -89.9990)]
    expected_rows = {(0.0001, 0.0): 1, (359.9995, 0.0): 0, (-0.0005, 0.0): 0, (360.0002, 0.0): 1}
    for q_ra, q_dec in queries:
        separations = haversine_deg(q_ra, q_dec, ra, dec)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # all of these are within 20"
            match = index.match_sky(q_ra, q_dec)
        assert match.row == int(np.argmin(separations)), (q_ra, q_dec)
        assert match.separation_arcsec == pytest.approx(separations.min() * 3600, abs=1e-3)
        assert expected_rows.get((q_ra, q_dec), match.row) == match.row
    # across the pole: (180, 89.9999) is 3.2" from g3 and 4.0" from g2, 180 deg away in RA
    assert index.match_sky(180.0, 89.9999).galaxy_id == "g3"
    assert index.match_sky(0.0, 89.9999).galaxy_id == "g2"


def test_sky_match_warns_beyond_20_arcsec_and_fails_beyond_the_radius(sky_index):
    ra0, dec0 = sky_index.ra[3], sky_index.dec[3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sky_index.match_sky(*offset(ra0, dec0, north_arcsec=5)).galaxy_id == "g3"
    with pytest.warns(SkyMatchWarning, match="more than 20"):
        assert sky_index.match_sky(*offset(ra0, dec0, north_arcsec=30)).galaxy_id == "g3"
    with pytest.raises(SkyMatchError, match="no catalogue galaxy within 60"):
        sky_index.match_sky(*offset(ra0, dec0, north_arcsec=90))
    with pytest.warns(SkyMatchWarning):  # a wider radius accepts it, with the warning
        assert sky_index.match_sky(*offset(ra0, dec0, north_arcsec=90), max_arcsec=120).galaxy_id == "g3"
    with pytest.raises(SkyMatchError, match="outside"):
        sky_index.match_sky(10.0, 10.0)  # far outside the 150-170 deg patch
    with pytest.raises(SkyMatchError, match="outside \\[-90, 90\\]"):
        sky_index.match_sky(155.0, 95.0)
    with pytest.raises(SkyMatchError, match="not a number"):
        sky_index.match_sky(float("nan"), 5.0)


def test_queries_for_missing_and_rejected_galaxies_say_why():
    rejected = pd.DataFrame({"galaxy_id": ["bad"], "ra": [150.0], "dec": [5.0]})
    index = SimilarityIndex(["a", "b"], np.zeros((2, 3)), [150.0 + 3 * ARCSEC, 151.0], [5.0, 5.0],
                            unsearchable=rejected)
    with pytest.raises(UnknownGalaxyError, match="not in the catalogue"):
        index.row("nobody")
    with pytest.raises(UnknownGalaxyError, match="rejected in preprocessing"):
        index.row("bad")
    with pytest.warns(SkyMatchWarning, match="rejected in preprocessing"):
        assert index.match_sky(150.0, 5.0).galaxy_id == "a"
    no_sky = SimilarityIndex(["a", "b"], np.zeros((2, 3)))
    with pytest.raises(SkyMatchError, match="no sky positions"):
        no_sky.match_sky(150.0, 5.0)
    assert list(no_sky.neighbours([0], 1, duplicate_radius_arcsec=None).rows[0]) == [1]
    with pytest.raises(SkyMatchError, match="no sky positions"):
        no_sky.neighbours([0], 1)


@pytest.fixture()
def results_folder(tmp_path):
    """A minimal workflow results folder: PCA spaces, full representation, catalogue (one
    galaxy rejected in preprocessing) and crops with thumbnails, in two shards."""
    rng = np.random.default_rng(5)
    n = 30
    ids = [f"J{i:04d}" for i in range(n)]
    ra, dec = rng.uniform(150, 160, n), rng.uniform(0, 10, n)  # sparse: no pair within 100"
    shard = np.arange(n) % 2
    survey = tmp_path / "results" / "decals"
    survey.mkdir(parents=True)
    catalogue = pd.DataFrame({"galaxy_id": ids + ["Jrejected"], "shard": np.r_[shard, 0], "iauname": ids + ["Jrejected"],
                              "ra": np.r_[ra, 155.0], "dec": np.r_[dec, 5.0]})
    catalogue.to_csv(survey / "catalogue.csv", index=False)
    representation = rng.normal(size=(n, 64)).astype(np.float32)
    with h5py.File(survey / "pca.h5", "w") as f:
        f.create_dataset("galaxy_id", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
        for d in (3, 10):
            f.create_dataset(f"pca_{d}", data=representation[:, :d])
    with h5py.File(survey / "representation.h5", "w") as f:
        f.create_dataset("galaxy_id", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("representation", data=representation)
    for s in (0, 1):
        rows = np.flatnonzero(shard == s)
        thumbs = np.zeros((len(rows), 16, 16, 3), np.uint8) + rows[:, None, None, None].astype(np.uint8)
        write_crops_shard(survey / "crops" / f"shard_{s}.h5", [ids[r] for r in rows],
                          np.zeros((len(rows), 8, 8), np.uint8), thumbs, {"resize_to": 8})
    return tmp_path / "results", ids, ra, dec, representation


def test_cli_prints_writes_csv_and_png(results_folder, tmp_path, capsys):
    results, ids, ra, dec, representation = results_folder
    csv, png = tmp_path / "out" / "similar.csv", tmp_path / "out" / "similar.png"
    ra_q, dec_q = offset(ra[4], dec[4], east_arcsec=2)
    assert main(["similar", "--ra", str(ra_q), "--dec", str(dec_q), "-k", "5", "--results", str(results),
                 "--space", "pca_10", "--csv", str(csv), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "matched J0004 at 2.0\"" in out and "5 nearest of 30 galaxies" in out
    table = pd.read_csv(csv, dtype={"galaxy_id": str})
    assert list(table["rank"]) == list(range(6)) and table["galaxy_id"].iloc[0] == "J0004"
    reference, _ = brute_force(representation[:, :10], [4], 5, "manhattan", [np.array([4])])
    assert list(table["galaxy_id"].iloc[1:]) == [ids[r] for r in reference[0]]
    for gid in table["galaxy_id"]:
        assert gid in out
    assert png.stat().st_size > 5_000
    # the full 1280-d style space and Euclidean distance, by id
    assert main(["similar", "--id", "J0007", "-k", "3", "--results", str(results), "--space", "representation",
                 "--metric", "euclidean"]) == 0
    reference, _ = brute_force(representation, [7], 3, "euclidean", [np.array([7])])
    out = capsys.readouterr().out
    assert all(ids[r] in out for r in reference[0]) and "(64-d)" in out


@pytest.mark.parametrize("arguments, message", [
    (["--id", "J9999"], "not in the catalogue"),
    (["--id", "Jrejected"], "rejected in preprocessing"),
    (["--ra", "10.0", "--dec", "-30.0"], "no catalogue galaxy within 60"),
    (["--ra", "155.0"], "give both --ra and --dec"),
    (["--id", "J0001", "--space", "pca_99"], "space 'pca_99' is not stored"),
    (["--id", "J0001", "-k", "0"], "at least one neighbour"),
])
def test_cli_errors_are_one_clear_line(results_folder, capsys, arguments, message):
    results = results_folder[0]
    assert main(["similar", *arguments, "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_missing_embeddings_file(results_folder, tmp_path, capsys):
    results = results_folder[0]
    (results / "decals" / "pca.h5").unlink()
    assert main(["similar", "--id", "J0001", "--results", str(results)]) == 2
    assert "pca.h5 not found" in capsys.readouterr().err
    assert main(["similar", "--id", "J0001", "--results", str(tmp_path / "nowhere")]) == 2
    assert "not found" in capsys.readouterr().err


def test_installed_command_runs(results_folder):
    command = Path(sys.executable).parent / "morphtools"
    proc = subprocess.run([str(command), "similar", "--id", "J0002", "-k", "2", "--results", str(results_folder[0])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "J0002" in proc.stdout and "2 nearest" in proc.stdout
