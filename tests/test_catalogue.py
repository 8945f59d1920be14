import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from morphtools.catalogue import CatalogueError, SelectionCuts, build_decals_catalogue, read_nsa


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
