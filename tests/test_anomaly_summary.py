"""Run files, per-run metrics and Table 1."""

import json

import numpy as np
import pandas as pd
import pytest

from morphtools.anomaly.io import acquired_in_order, read_experiment, read_run, write_experiment, write_run
from morphtools.anomaly.methods import RunResult
from morphtools.anomaly.summary import numeric_summary, run_curves, run_metrics, table_1


def galaxies_table():
    return pd.DataFrame({"galaxy_id": [f"g{i}" for i in range(6)], "fraction": [0.95, 0.1, 0.92, 0.0, 0.3, 0.99],
                         "rating": [5, 0, 5, 0, 2, 5], "is_anomaly": [True, False, True, False, False, True]})


def test_run_file_round_trip(tmp_path):
    galaxies = galaxies_table()
    result = RunResult(acquired=np.array([4, 0]), batches=np.array([0, 1]), ratings=np.array([2, 5]),
                       scores=np.array([5, 0.1, 3, 0.2, 2, 4.0]), extra={"gp_mean": np.arange(6.0)},
                       step_seconds=[0.25])
    write_run(galaxies["galaxy_id"], result, tmp_path / "run.csv", {"seed": 7}, tmp_path / "run.json")
    run = read_run(tmp_path / "run.csv")
    assert run["order"].tolist() == [1, -1, -1, -1, 0, -1] and run["rating"].tolist() == [5, -1, -1, -1, 2, -1]
    assert acquired_in_order(run)["galaxy_id"].tolist() == ["g4", "g0"]
    assert run["gp_mean"].tolist() == list(range(6))
    info = json.loads((tmp_path / "run.json").read_text())
    assert info == {"seed": 7, "n_galaxies": 6, "n_rated": 2, "step_seconds": [0.25]}
    m = run_metrics(galaxies, run, top_n=(2, 4))
    # ranking g0 (A), g5 (A), g2 (A), g4, g3, g1: top 2 all anomalies, top 4 three of four
    assert m["accuracy_top2"] == 1.0 and m["accuracy_top4"] == 0.75 and m["average_precision"] == 1.0
    assert m["n_rated"] == 2 and m["rated_anomalies"] == 1
    # g0, the anomaly, was rated in batch 1; no interest-model fits described: no flat share
    assert m["first_anomaly_batch"] == 1 and np.isnan(m["flat_fit_share"])
    fits = [{"n_rated": 1, "flat": True}, {"n_rated": 2, "flat": False}]
    result.interest_fits = fits
    write_run(galaxies["galaxy_id"], result, tmp_path / "run.csv", {"seed": 7}, tmp_path / "run.json")
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["interest_fits"] == fits
    assert run_metrics(galaxies, run, top_n=(2, 4), info=info)["flat_fit_share"] == 0.5
    # a run that rated no anomaly
    no_anomaly = run.assign(order=[-1, -1, -1, -1, 0, -1], batch=[-1, -1, -1, -1, 0, -1])
    assert run_metrics(galaxies, no_anomaly, top_n=(2, 4))["first_anomaly_batch"] == -1
    curve = run_curves(galaxies, run, max_n=10)
    assert curve["n"].tolist() == list(range(1, 7)) and curve["accuracy"].iloc[2] == 1.0


def test_experiment_files_must_agree(tmp_path):
    galaxies = galaxies_table()
    paths = [tmp_path / "g.csv", tmp_path / "f.h5", tmp_path / "s.json"]
    write_experiment(galaxies, np.zeros((6, 4)), np.ones((6, 24)), {"n": 6}, *paths)
    read_back, features = read_experiment(paths[0], paths[1])
    assert features["cnn"].shape == (6, 4) and features["ellipse"].shape == (6, 24)
    assert read_back["is_anomaly"].tolist() == galaxies["is_anomaly"].tolist()
    with pytest.raises(ValueError):
        write_experiment(galaxies, np.zeros((5, 4)), np.ones((6, 24)), {}, *paths)
    galaxies.iloc[::-1].to_csv(paths[0], index=False)
    with pytest.raises(ValueError, match="different galaxies"):
        read_experiment(paths[0], paths[1])


def test_table_1_layout_and_errors():
    rows = []
    for method, aps in (("cnn_gp", [0.5, 0.6, 0.7]), ("baseline", [0.1, 0.2, 0.3])):
        for repeat, ap in enumerate(aps):
            rows.append({"experiment": "odd", "method": method, "repeat": repeat, "average_precision": ap,
                         "accuracy_top50": 1.0, "accuracy_top200": 0.5, "recall_top50": 0.5, "recall_top200": 1.0,
                         "max_accuracy_top50": 1.0, "max_accuracy_top200": 0.5, "n_galaxies": 3000,
                         "n_anomalies": 100, "prevalence": 1 / 30, "n_rated": 200, "rated_anomalies": 50})
    metrics = pd.DataFrame(rows)
    table = table_1(metrics, {"odd": {"survey": "gz2", "threshold": 0.9}})
    assert table["method"].tolist() == ["Baseline", "CNN + GP"]  # the paper's order
    cnn = table.iloc[1]
    # mean 0.6, std 0.1, 3 sigma of the mean = 0.3 / sqrt(3) = 0.17
    assert cnn["average precision"] == "0.60 ± 0.17" and cnn["paper average precision"] == "0.55 ± 0.10"
    assert cnn["accuracy (top 50)"] == "100.0% ± 0.0" and cnn["paper accuracy (top 200)"] == "87% ± 11"
    assert cnn["best possible (top 200)"] == "50.0%" and cnn["repeats"] == 3 and cnn["data set"] == "GZ2"
    # a variant experiment is set beside the paper row it names; an unknown one beside nothing
    variant = metrics.assign(experiment="odd-bright")
    table = table_1(variant, {"odd-bright": {"survey": "gz2", "paper_row": "odd"}})
    assert table.iloc[1]["anomaly"] == "odd-bright" and table.iloc[1]["paper average precision"] == "0.55 ± 0.10"
    assert table_1(variant, {"odd-bright": {"survey": "gz2"}}).iloc[1]["paper average precision"] == ""
    metrics["flat_fit_share"] = np.where(metrics["method"] == "cnn_gp", 0.25, np.nan)
    summary = numeric_summary(metrics).set_index("method")
    assert summary.loc["cnn_gp", "average_precision"] == pytest.approx(0.6)
    # the repeats are counted whatever a method has no value of (baseline: no GP fits)
    assert summary.loc["cnn_gp", "flat_fit_share"] == 0.25 and summary["repeats"].tolist() == [3, 3]
