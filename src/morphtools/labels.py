"""Labels that live outside the catalogue (a vote table of another project, a user's own
ratings) joined onto it by a shared column, e.g. the ring votes of GZ DECaLS' rare-features
question, which the fine-tuning and anomaly experiments read by ``iauname``."""

from __future__ import annotations

import pandas as pd


def labels_by_galaxy(catalogue: pd.DataFrame, labels: pd.DataFrame | None, join_on: str,
                     columns: list[str]) -> pd.DataFrame:
    """``galaxy_id`` and ``columns``: from the catalogue itself when ``labels`` is None,
    else from ``labels`` joined to the catalogue on ``join_on`` (e.g. ``iauname``)."""
    cat = catalogue.assign(galaxy_id=catalogue["galaxy_id"].astype(str))
    if labels is None:
        missing = [c for c in columns if c not in cat.columns]
        if missing:
            raise KeyError(f"the catalogue has no column(s) {missing}")
        return cat[["galaxy_id", *columns]]
    missing = [c for c in [join_on, *columns] if c not in labels.columns]
    if missing:
        raise KeyError(f"the labels table has no column(s) {missing}")
    if join_on not in cat.columns:
        raise KeyError(f"the catalogue has no column {join_on!r} to join the labels on")
    if join_on == "galaxy_id":  # the catalogue's ids are strings; a CSV's may have been read as numbers
        labels = labels.assign(galaxy_id=labels["galaxy_id"].astype(str))
    joined = labels.drop_duplicates(join_on).set_index(join_on)[columns]
    keys = list(dict.fromkeys(["galaxy_id", join_on]))
    return cat[keys].join(joined, on=join_on)[["galaxy_id", *columns]]
