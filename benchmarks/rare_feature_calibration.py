"""Calibration: where do the simulated rare-feature votes' 1.5% thresholds fall, against the
real GZ DECaLS DR5 votes'?

The paper's experiment code (mwalmsley/morphology-tools,
``anomaly/comparison_from_scratch/shared.py``) records the vote fractions above which the
top 1.5% of DR5 galaxies lie, with and without the featured / face-on filter the paper's
searches used: ring 0.57 and 0.46, irregular 0.42 and 0.34. This reads a finished run's
ring and irregular experiments (which galaxies each searched, filtered and unfiltered), draws
the hidden votes again from the survey's truth with the workflow's seed, checks that the
draw reproduces the survey's own ``rare_features.csv``, and reports both thresholds:

- for the irregular votes at each factor of a grid of ``irregular_calibration`` values
  (``votes.sample_rare_features``; the factor every volunteer's chance is scaled by),
  with the squared distance to the real pair, and the factor that minimises it;
- for the ring votes at each ``(base, seen_weight)`` of a grid
  (``votes.ring_vote_probability``), with two more real facts: among the ring
  fine-tuning's candidates (the paper's sec. 4 and the workflow's ``finetune.RingCuts``:
  predicted smooth < 0.25 and not edge-on > 0.75; here the volunteers' fractions stand in
  for the predictions) 12% of the real votes
  are over 0.25 and 61% under 0.05. The squared distance sums over the two thresholds and
  the two shares; the pair that minimises it is reported.

Simulated survey only. Writes benchmarks/results/rare_feature_calibration.json:

    .venv/bin/python benchmarks/rare_feature_calibration.py --results results/anomaly_scale \\
        --resources resources/anomaly_scale [--out FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from morphtools.finetune import RingCuts, ring_dataset
from morphtools.simulation.votes import (
    IRREGULAR_VOTE_CALIBRATION,
    RING_BASE_PROBABILITY,
    RING_SEEN_WEIGHT,
    sample_rare_features,
)

# DR5's 1.5% thresholds (filtered, unfiltered), from the paper's experiment code
REAL_THRESHOLDS = {"ring": (0.57, 0.46), "irregular": (0.42, 0.34)}
PREVALENCE = 0.015
RARE_FEATURES_SEED_OFFSET = 3  # survey.simulate_decals_survey draws them with seed + 3
# the real shares of the ring fine-tuning's candidates (the paper's sec. 4: 82,898
# candidates, 12% over the ring cut, 61% under the not-ring cut); the cuts are the
# workflow's own (finetune.RingCuts, the paper's), applied by finetune.ring_dataset
REAL_RING_SHARE, REAL_NOT_RING_SHARE = 0.12, 0.61
RING_GRID = [(base, weight) for base in (0.005, 0.01, 0.02) for weight in (0.5, 0.6, 0.7, 0.8, 0.9)]


def threshold(fractions: pd.Series) -> float:
    """The vote fraction above which the top ``PREVALENCE`` of galaxies lie."""
    return float(np.quantile(fractions.to_numpy(float), 1 - PREVALENCE))


def searched(results: Path, experiment: str) -> list[str]:
    """The galaxies (``iauname``) an experiment of the finished run searched."""
    return pd.read_csv(results / "anomaly" / experiment / "galaxies.csv")["galaxy_id"].astype(str).tolist()


def thresholds(votes: pd.DataFrame, answer: str, filtered: list[str], unfiltered: list[str]) -> dict:
    fractions = votes[f"rare-features_{answer}_fraction"]
    real_filtered, real_unfiltered = REAL_THRESHOLDS[answer]
    simulated = (threshold(fractions.loc[filtered]), threshold(fractions.loc[unfiltered]))
    return {"filtered": round(simulated[0], 3), "unfiltered": round(simulated[1], 3),
            "real_filtered": real_filtered, "real_unfiltered": real_unfiltered,
            "squared_distance": round((simulated[0] - real_filtered) ** 2 + (simulated[1] - real_unfiltered) ** 2, 5)}


def ring_candidate_counts(votes: pd.DataFrame, volunteers: pd.DataFrame) -> dict:
    """``finetune.ring_dataset``'s counts (candidates, rings, not-rings) under the workflow's
    cuts, ``volunteers``' vote fractions standing in for the model's predictions."""
    labels = votes["rare-features_ring_fraction"].rename_axis("galaxy_id").reset_index()
    return ring_dataset(volunteers.rename_axis("galaxy_id").reset_index(), labels, "rare-features_ring_fraction",
                        RingCuts())[1]


def ring_candidate_shares(votes: pd.DataFrame, volunteers: pd.DataFrame) -> dict:
    """Shares of the fine-tuning candidates over the ring cut and under the not-ring cut,
    against the real ones."""
    counts = ring_candidate_counts(votes, volunteers)
    ring, not_ring = counts["rings"] / counts["candidates"], counts["not_rings"] / counts["candidates"]
    return {"ring_share": round(ring, 3), "not_ring_share": round(not_ring, 3),
            "real_ring_share": REAL_RING_SHARE, "real_not_ring_share": REAL_NOT_RING_SHARE,
            "share_squared_distance": round((ring - REAL_RING_SHARE) ** 2 + (not_ring - REAL_NOT_RING_SHARE) ** 2, 5)}


def ring_row(votes: pd.DataFrame, sets: tuple[list[str], list[str]], volunteers: pd.DataFrame) -> dict:
    row = thresholds(votes, "ring", *sets) | ring_candidate_shares(votes, volunteers)
    row["squared_distance"] = round(row["squared_distance"] + row.pop("share_squared_distance"), 5)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results/anomaly_scale")
    parser.add_argument("--resources", default="resources/anomaly_scale")
    parser.add_argument("--config", default="config/config.yaml", help="for the survey's seed")
    parser.add_argument("--out", default="benchmarks/results/rare_feature_calibration.json")
    args = parser.parse_args()
    results, simulated = Path(args.results), Path(args.resources) / "simulated" / "decals"
    seed = yaml.safe_load(Path(args.config).read_text())["seed"] + RARE_FEATURES_SEED_OFFSET
    truth = pd.read_csv(simulated / "hidden" / "truth.csv", dtype={"iauname": str})
    on_disk = pd.read_csv(simulated / "hidden" / "rare_features.csv", dtype={"iauname": str}).set_index("iauname")

    def draw(calibration: float = IRREGULAR_VOTE_CALIBRATION,
             ring: tuple[float, float] = (RING_BASE_PROBABILITY, RING_SEEN_WEIGHT)) -> pd.DataFrame:
        return sample_rare_features(truth, seed, irregular_calibration=calibration, ring_calibration=ring).set_index("iauname")

    current = draw()
    if not current.equals(on_disk.loc[current.index]):
        raise SystemExit(f"{simulated / 'hidden' / 'rare_features.csv'} was not drawn by this code with seed {seed}: "
                         "re-simulate the survey first")
    sets = {answer: (searched(results, f"{answer}-featured-face-on"), searched(results, answer))
            for answer in REAL_THRESHOLDS}

    grid = []
    for calibration in np.round(np.arange(0.60, 1.001, 0.02), 2):
        grid.append({"irregular_calibration": float(calibration),
                     **thresholds(draw(calibration), "irregular", *sets["irregular"])})
    best = min(grid, key=lambda row: row["squared_distance"])

    volunteers = pd.read_csv(simulated / "gz_decals_volunteers.csv", dtype={"iauname": str}).set_index("iauname")
    ring_grid = [{"base": base, "seen_weight": weight, **ring_row(draw(ring=(base, weight)), sets["ring"], volunteers)}
                 for base, weight in RING_GRID]
    result = {
        "results": str(results),
        "seed": seed,
        "galaxies_searched": {answer: {"filtered": len(f), "unfiltered": len(u)} for answer, (f, u) in sets.items()},
        "irregular": {"calibration_in_use": IRREGULAR_VOTE_CALIBRATION,
                      "in_use": thresholds(current, "irregular", *sets["irregular"]),
                      "best_on_grid": best, "grid": grid},
        "ring": {"calibration_in_use": {"base": RING_BASE_PROBABILITY, "seen_weight": RING_SEEN_WEIGHT},
                 "finetune_candidates": ring_candidate_counts(current, volunteers)["candidates"],
                 "galaxies": len(volunteers),
                 "in_use": ring_row(current, sets["ring"], volunteers),
                 "best_on_grid": min(ring_grid, key=lambda row: row["squared_distance"]), "grid": ring_grid},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: ({kk: vv for kk, vv in v.items() if kk != "grid"} if isinstance(v, dict) else v)
                      for k, v in result.items()}, indent=1))


if __name__ == "__main__":
    main()
