import numpy as np
import pandas as pd
import pytest

from morphtools.labels import labels_by_galaxy


def catalogue():
    return pd.DataFrame({"galaxy_id": [101, 102, 103], "iauname": ["J1", "J2", "J3"], "ring": [0.1, 0.2, 0.3]})


def test_labels_from_the_catalogue_itself():
    out = labels_by_galaxy(catalogue(), None, "iauname", ["ring"])
    assert out["galaxy_id"].tolist() == ["101", "102", "103"] and out["ring"].tolist() == [0.1, 0.2, 0.3]
    with pytest.raises(KeyError, match="merger"):
        labels_by_galaxy(catalogue(), None, "iauname", ["merger"])


def test_labels_joined_on_a_name_keep_catalogue_order_first_duplicate_and_gaps():
    labels = pd.DataFrame({"iauname": ["J3", "J1", "J1"], "merger": [0.9, 0.4, 0.7]})
    out = labels_by_galaxy(catalogue(), labels, "iauname", ["merger"])
    assert out.columns.tolist() == ["galaxy_id", "merger"]
    assert out["galaxy_id"].tolist() == ["101", "102", "103"]
    np.testing.assert_array_equal(out["merger"].to_numpy(), [0.4, np.nan, 0.9])
    with pytest.raises(KeyError, match="labels table has no column"):
        labels_by_galaxy(catalogue(), labels, "iauname", ["ring"])
    with pytest.raises(KeyError, match="catalogue has no column 'dr8_id'"):
        labels_by_galaxy(catalogue(), labels.rename(columns={"iauname": "dr8_id"}), "dr8_id", ["merger"])


def test_labels_joined_on_galaxy_id_read_as_numbers():
    labels = pd.DataFrame({"galaxy_id": [103, 101], "merger": [0.9, 0.4]})  # as read from a CSV
    out = labels_by_galaxy(catalogue(), labels, "galaxy_id", ["merger"])
    assert out.columns.tolist() == ["galaxy_id", "merger"]
    np.testing.assert_array_equal(out["merger"].to_numpy(), [0.4, np.nan, 0.9])
