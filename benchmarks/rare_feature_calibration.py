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
- for the ring votes as they stand, with the share of the ring fine-tuning's candidates
  (volunteers' featured fraction > 0.25, not-edge-on > 0.75) over the ring cut (0.25),
  which the protocol notes put at ~12% (sec. 5).

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

from morphtools.simulation.votes import IRREGULAR_VOTE_CALIBRATION, sample_rare_features

# DR5's 1.5% thresholds (filtered, unfiltered), from the paper's experiment code
REAL_THRESHOLDS = {"ring": (0.57, 0.46), "irregular": (0.42, 0.34)}
PREVALENCE = 0.015
RARE_FEATURES_SEED_OFFSET = 3  # survey.simulate_decals_survey draws them with seed + 3
RING_CANDIDATE_CUT, REAL_RING_CANDIDATE_SHARE = 0.25, 0.12


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

    def draw(calibration: float) -> pd.DataFrame:
        return sample_rare_features(truth, seed, irregular_calibration=calibration).set_index("iauname")

    current = draw(IRREGULAR_VOTE_CALIBRATION)
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
    candidates = volunteers.index[(volunteers["smooth-or-featured_featured-or-disk_fraction"] > 0.25)
                                  & (volunteers["disk-edge-on_no_fraction"] > 0.75)]
    ring_share = float((current.loc[candidates, "rare-features_ring_fraction"] > RING_CANDIDATE_CUT).mean())
    result = {
        "results": str(results),
        "seed": seed,
        "galaxies_searched": {answer: {"filtered": len(f), "unfiltered": len(u)} for answer, (f, u) in sets.items()},
        "irregular": {"calibration_in_use": IRREGULAR_VOTE_CALIBRATION,
                      "in_use": thresholds(current, "irregular", *sets["irregular"]),
                      "best_on_grid": best, "grid": grid},
        "ring": {"in_use": thresholds(current, "ring", *sets["ring"]),
                 "finetune_candidates": len(candidates),
                 "finetune_candidate_share_over_cut": round(ring_share, 3),
                 "real_finetune_candidate_share_over_cut": REAL_RING_CANDIDATE_SHARE},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "irregular"} | {
        "irregular": {k: v for k, v in result["irregular"].items() if k != "grid"}}, indent=1))


if __name__ == "__main__":
    main()
