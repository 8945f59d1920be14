"""Representation maps: subset filters on predicted fractions and one thumbnail per grid cell."""

import numpy as np
import pytest

from morphtools.maps import grid_representatives, subset_mask


def test_subset_mask_applies_every_threshold():
    answers = ["smooth-or-featured_featured-or-disk_fraction", "has-spiral-arms_yes_fraction"]
    fractions = np.array([[0.9, 0.9], [0.9, 0.2], [0.3, 0.9], [0.6, 0.7]])
    assert subset_mask(fractions, answers, {}).all()
    assert subset_mask(fractions, answers, {answers[0]: 0.6}).tolist() == [True, True, False, False]  # exclusive
    assert subset_mask(fractions, answers, {answers[0]: 0.5, answers[1]: 0.6}).tolist() == [True, False, False, True]
    with pytest.raises(KeyError, match="bar_strong_fraction"):
        subset_mask(fractions, answers, {"bar_strong_fraction": 0.5})


def test_grid_keeps_the_galaxy_nearest_each_cell_centre():
    # a 2 x 2 grid over [0, 10]^2: cell centres at 2.5 and 7.5
    xy = np.array([[0.0, 0.0], [2.4, 2.6], [1.0, 1.0], [10.0, 10.0], [7.0, 2.0], [6.0, 1.0]])
    rows, centres, size = grid_representatives(xy, cells=2)
    assert size == 5.0
    assert sorted(rows.tolist()) == [1, 3, 4]  # cell (1, 1) holds only galaxy 3; (0, 1) is empty
    for r, c in zip(rows, centres, strict=True):
        assert np.all(np.abs(xy[r] - c) <= 2.5)  # drawn within half a cell of its own position
    empty_rows, _, _ = grid_representatives(np.zeros((0, 2)), cells=4)
    assert len(empty_rows) == 0
