"""One anomaly experiment's galaxies: who is in it, the simulated user's rating of each,
and which are the interesting anomalies (paper sec. 3.3; reference notes sec. 4).

The simulated user rates a galaxy round(5 x vote fraction) on Astronomaly's 0..5 scale
(numpy rounding: halves go to even). A galaxy is an interesting anomaly when its vote
fraction is above the experiment's threshold: given (GZ2 ``Class6.1 > 0.9``), or chosen
so that a target share (1.5%) of the experiment's galaxies are anomalies (the DECaLS
experiments). Galaxies enter an experiment when they have a representation, finite
ellipse features (every method then ranks the same galaxies), enough votes on the
question, and, with the switch on, automated featured and face-on fractions above cuts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..decision_tree import FEATURED_FRACTION as FEATURED_COLUMN
from ..decision_tree import NOT_EDGE_ON_FRACTION as FACE_ON_COLUMN
from ..labels import labels_by_galaxy


@dataclass(frozen=True)
class ExperimentSpec:
    """One row of ``anomaly.experiments`` in the config."""

    name: str
    survey: str
    fraction: str                       # vote-fraction column: the interest and the label
    labels_table: str = "catalogue"     # "catalogue", or a table joined on ``join_on``
    join_on: str = "iauname"
    votes: str | None = None            # total-votes column for ``min_votes``
    min_votes: int = 0
    threshold: float | None = None      # anomaly if fraction > threshold; None: from prevalence
    prevalence: float = 0.015
    featured_face_on: bool = False
    featured_min: float = 0.6
    face_on_min: float = 0.75
    paper_row: str | None = None        # the paper's Table 1 row compared with; None: ``name``
    methods: tuple[str, ...] = field(default_factory=lambda: ("cnn_gp", "baseline", "ellipse_gp", "random"))

    @classmethod
    def from_config(cls, name: str, entry: dict, filter_cuts: dict | None = None) -> ExperimentSpec:
        cuts = filter_cuts or {}
        kwargs = {k: v for k, v in entry.items() if k in cls.__dataclass_fields__}
        if "methods" in kwargs:
            kwargs["methods"] = tuple(kwargs["methods"])
        kwargs.setdefault("featured_min", cuts.get("featured_min", 0.6))
        kwargs.setdefault("face_on_min", cuts.get("face_on_min", 0.75))
        return cls(name=name, **kwargs)


def simulated_rating(fraction, scale: int = 5) -> np.ndarray:
    """The simulated user's interest: round(scale x vote fraction), halves to even, 0..scale."""
    return np.clip(np.round(np.asarray(fraction, float) * scale), 0, scale).astype(int)


def threshold_for_prevalence(fraction, prevalence: float) -> float:
    """The vote-fraction threshold t (one of the observed values) for which the share of
    galaxies with fraction > t is closest to ``prevalence``; ties go to the higher t."""
    f = np.asarray(fraction, float)
    f = f[np.isfinite(f)]
    if len(f) == 0:
        raise ValueError("no finite vote fractions to choose a threshold from")
    candidates = np.unique(f)
    shares = np.array([(f > c).mean() for c in candidates])
    gap = np.abs(shares - prevalence)
    best = np.flatnonzero(np.isclose(gap, gap.min(), rtol=0, atol=1e-12))
    return float(candidates[best.max()])


def build_experiment_table(spec: ExperimentSpec, catalogue: pd.DataFrame, representation_ids,
                           ellipse: pd.DataFrame, predicted: pd.DataFrame | None = None,
                           labels: pd.DataFrame | None = None, scale: int = 5) -> tuple[pd.DataFrame, dict]:
    """The experiment's galaxies, in representation order: ``galaxy_id, fraction, rating,
    is_anomaly``; and a summary dict (counts removed at each cut, the threshold used, the
    prevalence reached).

    ``catalogue`` has ``galaxy_id`` (and ``join_on`` when ``labels`` is given);
    ``ellipse`` has ``galaxy_id`` and the 24 features (NaN = failed); ``predicted`` has
    ``galaxy_id`` and the automated fractions (needed when the filter is on); ``labels``
    is the table holding ``spec.fraction`` when it is not in the catalogue.
    """
    ids = pd.Index([str(g) for g in representation_ids], name="galaxy_id")
    cols = [c for c in (spec.fraction, spec.votes) if c]
    try:
        cat = labels_by_galaxy(catalogue, labels, spec.join_on, cols).set_index("galaxy_id")
    except KeyError as err:
        where = "its labels table" if labels is not None else f"the {spec.survey} catalogue"
        raise KeyError(f"experiment {spec.name} ({where}): {err.args[0]}") from err
    summary = {"experiment": spec.name, "survey": spec.survey, "with_representation": len(ids)}
    table = pd.DataFrame(index=ids)
    table["fraction"] = cat[spec.fraction].reindex(ids).to_numpy(float)
    keep = np.isfinite(table["fraction"].to_numpy())
    summary["with_votes"] = int(keep.sum())
    if spec.votes and spec.min_votes:
        votes = cat[spec.votes].reindex(ids).to_numpy(float)
        keep &= np.nan_to_num(votes, nan=0) >= spec.min_votes
    summary["with_min_votes"] = int(keep.sum())
    ell = ellipse.copy()
    ell["galaxy_id"] = ell["galaxy_id"].astype(str)
    ell = ell.set_index("galaxy_id").reindex(ids)
    good_ellipse = np.isfinite(ell.to_numpy(float)).all(axis=1)
    summary["ellipse_failed"] = int((keep & ~good_ellipse).sum())
    keep &= good_ellipse
    summary["with_ellipse_features"] = int(keep.sum())
    if spec.featured_face_on:
        if predicted is None:
            raise ValueError(f"experiment {spec.name}: the featured / face-on filter needs predicted fractions")
        pred = predicted.assign(galaxy_id=predicted["galaxy_id"].astype(str)).set_index("galaxy_id").reindex(ids)
        keep &= (pred[FEATURED_COLUMN].to_numpy(float) > spec.featured_min) & \
                (pred[FACE_ON_COLUMN].to_numpy(float) > spec.face_on_min)
    summary["after_filter"] = int(keep.sum())
    table = table[keep]
    if len(table) == 0:
        raise ValueError(f"experiment {spec.name}: no galaxies left after the cuts {summary}")
    threshold = spec.threshold if spec.threshold is not None else threshold_for_prevalence(
        table["fraction"], spec.prevalence)
    table["rating"] = simulated_rating(table["fraction"], scale)
    table["is_anomaly"] = table["fraction"].to_numpy() > threshold
    summary.update(threshold=float(threshold), threshold_source="config" if spec.threshold is not None else
                   f"prevalence {spec.prevalence:g}", n_galaxies=len(table),
                   n_anomalies=int(table["is_anomaly"].sum()), prevalence=float(table["is_anomaly"].mean()),
                   featured_face_on=bool(spec.featured_face_on), paper_row=spec.paper_row or spec.name)
    return table.reset_index(), summary
