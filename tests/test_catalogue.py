import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from morphtools.catalogue import (
    DEFAULT_R90_OVER_R50,
    CatalogueError,
    SelectionCuts,
    build_decals_catalogue,
    build_user_catalogue,
    read_nsa,
    table_columns,
)
from morphtools.sharding import shard_of


def write_nsa(path, rows):
    t = Table(rows=[r[:6] for r in rows], names=["IAUNAME", "RA", "DEC", "PETRO_THETA", "PETRO_TH50", "PETRO_TH90"])
    # SERSIC_NMGY holds F, N, u, g, r, i, z; r is index 4
    t["SERSIC_NMGY"] = np.array([[0, 0, 0, 0, 10 ** ((22.5 - r[6]) / 2.5), 0, 0] for r in rows], np.float32)
    t.write(path, format="fits", overwrite=True)


ROWS = [
    ("J1", 1.0, 0.0, 5.0, 3.0, 8.0, 16.0),  # kept
    ("J2", 2.0, 0.0, 2.9, 1.5, 4.0, 16.0),  # too small
    ("J3", 3.0, 0.0, 5.0, 3.0, 8.0, 13.9),  # too bright
    ("J4", 4.0, 0.0, 5.0, 3.0, 8.0, 17.8),  # too faint
    ("J5", 5.0, 0.0, 27.6535, 3.0, 8.0, 16.0),  # NSA's bad snapped size
    ("J6", 6.0, 0.0, 5.0, 3.0, 8.0, 17.0),  # flagged wrong size by GZ DECaLS
    ("J7", 7.0, 0.0, 5.0, 3.0, 8.0, 17.7),  # kept, no votes
]


def test_paper_cuts(tmp_path):
    write_nsa(tmp_path / "nsa.fits", ROWS)
    votes = pd.DataFrame({"iauname": ["J1", "J6"], "wrong_size_warning": [False, True], "merging_merger_fraction": [0.1, 0.9]})
    votes.to_csv(tmp_path / "votes.csv", index=False)
    cat = build_decals_catalogue(tmp_path / "nsa.fits", tmp_path / "votes.csv", SelectionCuts(), 4)
    assert list(cat["galaxy_id"]) == ["J1", "J7"]
    assert cat.loc[0, "merging_merger_fraction"] == 0.1 and np.isnan(cat.loc[1, "merging_merger_fraction"])
    assert set(cat["shard"]) <= set(range(4))
    np.testing.assert_allclose(read_nsa(tmp_path / "nsa.fits")["mag_r"], [r[6] for r in ROWS], atol=1e-4)


def test_bad_catalogues_name_the_file(tmp_path):
    Table({"IAUNAME": ["J1"], "RA": [1.0]}).write(tmp_path / "bad.fits")
    with pytest.raises(CatalogueError, match=r"bad.fits: missing NSA columns .*DEC"):
        read_nsa(tmp_path / "bad.fits")
    write_nsa(tmp_path / "dup.fits", [ROWS[0], ROWS[0]])
    pd.DataFrame({"iauname": ["J1"]}).to_csv(tmp_path / "v.csv", index=False)
    with pytest.raises(CatalogueError, match="duplicate IAUNAME J1"):
        build_decals_catalogue(tmp_path / "dup.fits", tmp_path / "v.csv", SelectionCuts(), 2)


def test_automated_posteriors_join_and_flag_wrong_sizes(tmp_path):
    write_nsa(tmp_path / "nsa.fits", ROWS)
    pd.DataFrame({"iauname": ["J1"], "ra": [99.0], "merging_merger": [3]}).to_csv(tmp_path / "votes.csv", index=False)
    pd.DataFrame({"iauname": ["J1", "J7"], "wrong_size_warning": [False, True],
                  "merging_merger_fraction": [0.2, 0.7]}).to_csv(tmp_path / "auto.csv", index=False)
    cat = build_decals_catalogue(tmp_path / "nsa.fits", tmp_path / "votes.csv", SelectionCuts(), 4,
                                 automated_path=tmp_path / "auto.csv")
    # J6 has no flag anywhere now; J7 is flagged in the automated table
    assert list(cat["galaxy_id"]) == ["J1", "J6"]
    assert cat.loc[0, "auto_merging_merger_fraction"] == 0.2 and cat.loc[0, "merging_merger"] == 3
    assert cat.loc[0, "ra"] == 1.0  # the NSA's position, not the vote table's copy


def test_duplicate_votes_name_the_row(tmp_path):
    write_nsa(tmp_path / "nsa.fits", ROWS)
    pd.DataFrame({"iauname": ["J1", "J2", "J1"]}).to_csv(tmp_path / "votes.csv", index=False)
    with pytest.raises(CatalogueError, match=r"votes.csv: duplicate iauname J1 \(row 4 of the file\)"):
        build_decals_catalogue(tmp_path / "nsa.fits", tmp_path / "votes.csv", SelectionCuts(), 2)


COLUMNS = {"id": "name", "ra": "RAdeg", "dec": "DEdeg", "petro_th50": "r50", "petro_th90": None}


def test_user_catalogue_csv_and_fits(tmp_path):
    table = pd.DataFrame({"name": ["007", "NGC_1300", "ring+1"], "RAdeg": [10.0, 49.9, 360.0],
                          "DEdeg": [-5.0, -19.4, 0.0], "r50": [2.0, 30.0, 5.0], "note": ["a", "b", "c"]})
    table.to_csv(tmp_path / "mine.csv", index=False)
    cat = build_user_catalogue(tmp_path / "mine.csv", COLUMNS, 4)
    assert list(cat.columns[:6]) == ["galaxy_id", "shard", "ra", "dec", "petro_th50", "petro_th90"]
    assert cat["galaxy_id"].tolist() == ["007", "NGC_1300", "ring+1"]  # ids stay text
    assert cat["ra"].tolist() == [10.0, 49.9, 0.0] and cat["note"].tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(cat["petro_th90"], np.array([2.0, 30.0, 5.0]) * DEFAULT_R90_OVER_R50)
    assert cat["shard"].tolist() == [shard_of(g, 4) for g in cat["galaxy_id"]]

    Table.from_pandas(table.drop(columns=["r50"]).assign(r90=[5.0, 60.0, 9.0])).write(tmp_path / "mine.fits")
    cat = build_user_catalogue(tmp_path / "mine.fits", COLUMNS | {"petro_th50": None, "petro_th90": "r90"}, 4, 2.5)
    np.testing.assert_allclose(cat["petro_th50"], [2.0, 24.0, 3.6])
    assert cat["galaxy_id"].tolist() == ["007", "NGC_1300", "ring+1"]


@pytest.mark.parametrize("column,value,message", [
    ("RAdeg", "abc", r"mine.csv: row 2, line 3, column 'RAdeg': 'abc' is not a number in \[0.0, 360.0\]"),
    ("DEdeg", "95", r"row 2, line 3, column 'DEdeg': .*95.* is not a number in \[-90.0, 90.0\]"),
    ("r50", "0", r"row 2, line 3, column 'r50': .* is not a number in \(0.0, 3600.0\]"),
    ("r50", "", r"row 2, line 3, column 'r50'"),
    ("name", "a/b", r"row 2, line 3, column 'name': galaxy id 'a/b' cannot name a file"),
    ("name", "G1", r"row 2, line 3: duplicate id 'G1'"),
])
def test_user_catalogue_errors_name_file_row_and_column(tmp_path, column, value, message):
    table = pd.DataFrame({"name": ["G1", "G2"], "RAdeg": ["1", "2"], "DEdeg": ["0", "0"], "r50": ["3", "3"]})
    table.loc[1, column] = value
    table.to_csv(tmp_path / "mine.csv", index=False)
    with pytest.raises(CatalogueError, match=message):
        build_user_catalogue(tmp_path / "mine.csv", COLUMNS, 2)


def test_user_catalogue_missing_columns_and_formats(tmp_path):
    pd.DataFrame({"name": ["G1"], "ra": [1.0]}).to_csv(tmp_path / "mine.csv", index=False)
    with pytest.raises(CatalogueError, match=r"columns not found: ra -> 'RAdeg', dec -> 'DEdeg', petro_th50 -> 'r50'; "
                                             r"the table has \['name', 'ra'\]"):
        build_user_catalogue(tmp_path / "mine.csv", COLUMNS, 2)
    with pytest.raises(CatalogueError, match="give a radius column"):
        build_user_catalogue(tmp_path / "mine.csv", COLUMNS | {"petro_th50": None}, 2)
    (tmp_path / "mine.parquet").write_bytes(b"x")
    with pytest.raises(CatalogueError, match=r"mine.parquet: unknown table format"):
        build_user_catalogue(tmp_path / "mine.parquet", COLUMNS, 2)
    assert table_columns(tmp_path / "mine.csv") == ["name", "ra"]
