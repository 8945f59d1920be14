"""End to end: the whole DAG on config/tiny.yaml, partial rebuilds, lint and config errors."""

import re
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from conftest import ROOT, SNAKEMAKE, run_snakemake
from morphtools.embedding import read_embeddings
from morphtools.model import file_sha256
from morphtools.reduction import read_projection
from morphtools.sharding import shard_of
from morphtools.storage import read_crops_shard

pytestmark = pytest.mark.e2e


def test_every_shard_has_crops_and_qa(tiny_run):
    for survey in ("decals", "gz2"):
        cat = pd.read_csv(tiny_run / f"results/{survey}/catalogue.csv", dtype={"galaxy_id": str})
        assert "morph_class" not in cat.columns and "ring_strength" not in cat.columns  # truth stays hidden
        n_ok = 0
        for shard in range(3):
            ids, images, thumbs, attrs = read_crops_shard(tiny_run / f"results/{survey}/crops/shard_{shard}.h5")
            qa = pd.read_csv(tiny_run / f"results/{survey}/qa/shard_{shard}.csv", dtype=str, keep_default_na=False)
            expected = set(cat.loc[cat["shard"] == shard, "galaxy_id"])
            assert set(qa["galaxy_id"]) == expected  # every galaxy accounted for
            assert set(ids) == set(qa.loc[qa["status"] == "ok", "galaxy_id"])
            assert images.shape == (len(ids), 43, 43) and images.dtype == np.uint8
            assert thumbs.shape == (len(ids), 128, 128, 3)
            assert attrs["resize_to"] == 43 and attrs["crop_to"] == 32
            # real images, not blanks: a bright centre over a darker sky
            if len(ids):
                centre = images[:, 18:25, 18:25].mean()
                edge = images[:, :4, :4].mean()
                assert centre > edge + 20
            n_ok += len(ids)
        assert n_ok >= 0.95 * len(cat)
    assert (tiny_run / "results/figures/sample_galaxies.png").stat().st_size > 50_000


def test_representations_pca_and_checks(tiny_run):
    results = tiny_run / "results"
    weights = results / "models/multi/model.weights.h5"
    sha = file_sha256(weights)
    history = pd.read_csv(results / "models/multi/history.csv")
    assert list(history["epoch"]) == [1, 2] and np.isfinite(history[["loss", "val_loss"]]).all().all()
    for survey in ("decals", "gz2"):
        crop_ids = [g for shard in range(3)
                    for g in read_crops_shard(results / f"{survey}/crops/shard_{shard}.h5")[0]]
        merged = read_embeddings(results / f"{survey}/representation.h5")
        # every galaxy with a crop, in shard order; the GZ2 survey uses the DECaLS model
        assert list(merged["galaxy_id"]) == crop_ids
        assert merged["representation"].shape == (len(crop_ids), 1280)
        assert np.isfinite(merged["representation"]).all() and merged["representation"].std(0).max() > 0
        fractions = merged["predicted_fractions"]
        assert fractions.shape == (len(crop_ids), 34)
        np.testing.assert_allclose(fractions[:, :3].sum(1), 1.0, rtol=1e-4)  # smooth-or-featured
        assert merged["attrs"]["model_sha256"] == sha and merged["attrs"]["preprocessing_crop_to"] == 32
        ids, p10 = read_projection(results / f"{survey}/pca.h5", 10)
        assert list(ids) == crop_ids and p10.shape == (len(crop_ids), 10)
        variance = pd.read_csv(results / f"{survey}/pca_variance.csv")
        assert variance["n_components"].tolist() == [10, 15, 40]
        assert variance["explained_variance"].is_monotonic_increasing and variance["explained_variance"].iloc[-1] <= 1
    summary = pd.read_csv(results / "representation_summary.csv")
    assert summary["survey"].tolist() == ["decals", "gz2"] and (summary["model_sha256"] == sha[:16]).all()
    check = pd.read_csv(results / "checks/representation_check.csv")
    assert check["metric"].tolist() == ["accuracy", "ROC AUC (cross-validated)"]
    assert 0 <= check["value"].iloc[0] <= 1 and check["chance"].iloc[1] == 0.5
    for figure in ("training_curves", "representation_check"):
        assert (results / f"figures/{figure}.png").stat().st_size > 10_000


def test_similarity_tables_figures_and_command(tiny_run):
    import subprocess
    import sys
    from pathlib import Path

    import yaml
    from scipy.spatial.distance import cdist

    results = tiny_run / "results"
    config = yaml.safe_load((ROOT / "config/tiny.yaml").read_text())["similarity"]
    ids, p10 = read_projection(results / "decals/pca.h5", 10)
    catalogue = pd.read_csv(results / "decals/catalogue.csv", dtype={"galaxy_id": str}).set_index("galaxy_id")
    tags = pd.read_csv(tiny_run / "resources/simulated/decals/talk_tags.csv").set_index("iauname")
    tags = tags.reindex(catalogue.loc[list(ids), "iauname"], fill_value=0)

    table = pd.read_csv(results / "similarity/tag_precision.csv", keep_default_na=False, na_values=[""])
    assert sorted(table["tag"]) == sorted(c.removeprefix("tag_") for c in tags.columns)
    assert set(table.loc[table["excluded"], "tag"]) == set(config["tags"]["excluded"]) & set(table["tag"])
    for row in table.itertuples():
        carries = tags[f"tag_{row.tag}"].to_numpy() >= config["tags"]["min_count"]
        assert row.tagged_galaxies == carries.sum() and row.prevalence == pytest.approx(carries.mean())
        assert row.tagged_galaxies == 0 or 0 <= row.top_query_precision <= 1
    summary = pd.read_csv(results / "similarity/tag_precision_summary.csv")
    assert len(summary) == 1 and summary["k"].item() == config["k"]
    assert summary["tags"].item() == (~table["excluded"] & (table["tagged_galaxies"] > 0)).sum()

    # each tag's top query and its neighbours equal a brute-force Manhattan search in PCA-10
    # (the simulated sky is sparse: no galaxy has another within the 100" duplicate radius)
    neighbours = pd.read_csv(results / "similarity/tag_neighbours.csv", dtype={"galaxy_id": str})
    row_of = {g: i for i, g in enumerate(ids)}
    distances = cdist(p10.astype(np.float64), p10.astype(np.float64), "cityblock")
    for tag, ranked in neighbours.groupby("tag", sort=False):
        query = row_of[ranked["galaxy_id"].iloc[0]]
        assert ranked["galaxy_id"].iloc[0] == table.set_index("tag").loc[tag, "query_galaxy"]
        d = distances[query].copy()
        d[query] = np.inf
        expected = np.lexsort((np.arange(len(d)), d))[:config["k"]]
        assert [row_of[g] for g in ranked["galaxy_id"].iloc[1:]] == list(expected)
    assert (results / "figures/similarity_tags.png").stat().st_size > 20_000

    for subset in ("all", "featured", "spiral"):
        assert (results / f"figures/umap_{subset}.png").stat().st_size > 5_000
    umap_all = pd.read_csv(results / "maps/umap_all.csv", dtype={"galaxy_id": str})
    assert list(umap_all["galaxy_id"]) == list(ids) and np.isfinite(umap_all[["x", "y"]]).all().all()
    assert 0 < umap_all["shown"].sum() <= config_cells(ROOT / "config/tiny.yaml") ** 2

    # the installed command on the workflow's results, by position 3" from a galaxy
    galaxy = ids[5]
    ra, dec = catalogue.loc[galaxy, ["ra", "dec"]]
    command = [str(Path(sys.executable).parent / "morphtools"), "similar", "--ra", str(ra), "--dec",
               str(dec + 3 / 3600), "-k", "4", "--results", str(results), "--csv", str(tiny_run / "similar.csv")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    found = pd.read_csv(tiny_run / "similar.csv", dtype={"galaxy_id": str})
    assert found["galaxy_id"].iloc[0] == galaxy and len(found) == 5 and f"matched {galaxy} at 3.0" in proc.stdout


def config_cells(path):
    import yaml

    return yaml.safe_load(path.read_text())["representation_maps"]["cells"]


def test_report_builds(tiny_run_copy):
    run_snakemake(tiny_run_copy, "--report", "report.html")
    html = (tiny_run_copy / "report.html").read_text(errors="replace")
    for expected in ("Representation", "pca_variance.csv", "training_curves.png", "representation_check.png",
                     "sample_galaxies.png", "Similarity search", "tag_precision.csv", "similarity_tags.png",
                     "umap_all.png", "umap_spiral.png", "Anomalies", "table1.csv", "anomaly_curves_gz2.png",
                     "anomaly_curves_decals.png", "anomaly_map.png", "anomaly_top.png", "Fine-tuning",
                     "finetune_by_pretraining.png", "finetune_by_depth.png", "summary.csv"):
        assert expected in html


def test_anomaly_experiments(tiny_run):
    import json

    import yaml

    results = tiny_run / "results"
    cfg = yaml.safe_load((ROOT / "config/tiny.yaml").read_text())["anomaly"]
    for survey in ("decals", "gz2"):
        for shard in range(3):
            ellipse = pd.read_csv(results / f"{survey}/ellipse/shard_{shard}.csv", dtype={"galaxy_id": str})
            assert ellipse.shape[1] == 1 + 24 + 1  # galaxy_id, 24 features, reason
    metrics = pd.read_csv(results / "anomaly/metrics.csv")
    for name, exp in cfg["experiments"].items():
        galaxies = pd.read_csv(results / f"anomaly/{name}/galaxies.csv", dtype={"galaxy_id": str})
        summary = json.loads((results / f"anomaly/{name}/summary.json").read_text())
        assert summary["n_galaxies"] == len(galaxies) > cfg["ratings"]
        assert (galaxies["is_anomaly"] == (galaxies["fraction"] > summary["threshold"])).all()
        assert galaxies["rating"].between(0, 5).all()
        with h5py.File(results / f"anomaly/{name}/features.h5") as f:
            assert f["cnn"].shape == (len(galaxies), 40) and f["ellipse"].shape == (len(galaxies), 24)
            assert np.isfinite(f["ellipse"][:]).all()
        rating = galaxies.set_index("galaxy_id")["rating"]
        for method in exp["methods"]:
            for repeat in range(cfg["repeats"]):
                run = pd.read_csv(results / f"anomaly/{name}/runs/{method}/repeat_{repeat}.csv",
                                  dtype={"galaxy_id": str})
                assert list(run["galaxy_id"]) == list(galaxies["galaxy_id"]) and run["score"].notna().all()
                rated = run[run["order"] >= 0].sort_values("order")
                assert rated["order"].tolist() == list(range(cfg["ratings"]))  # every rating, once, in order
                assert (rated["rating"].to_numpy() == rating.loc[rated["galaxy_id"]].to_numpy()).all()
                info = json.loads((results / f"anomaly/{name}/runs/{method}/repeat_{repeat}.json").read_text())
                assert info["n_rated"] == cfg["ratings"] and info["seed"] == 20220301 + repeat
        assert len(metrics[metrics["experiment"] == name]) == len(exp["methods"]) * cfg["repeats"]
    assert metrics["average_precision"].between(0, 1).all()
    table = pd.read_csv(results / "anomaly/table1.csv")
    assert {"average precision", "paper average precision", "accuracy (top 5)", "accuracy (top 20)"} <= set(table)
    assert table.loc[(table["anomaly"] == "odd") & (table["method"] == "CNN + GP"), "paper average precision"].item() \
        == "0.55 ± 0.10"
    assert len(table) == sum(len(e["methods"]) for e in cfg["experiments"].values())
    curves = pd.read_csv(results / "anomaly/curves.csv")
    assert curves["n"].max() <= cfg["curve_max_n"] and curves["rws"].between(0, 1).all()
    for figure in ("anomaly_curves_gz2", "anomaly_curves_decals", "anomaly_map", "anomaly_top"):
        assert (results / f"figures/{figure}.png").stat().st_size > 10_000




def test_finetune_sweep(tiny_run):
    import json

    import yaml

    results = tiny_run / "results"
    cfg = yaml.safe_load((ROOT / "config/tiny.yaml").read_text())["finetune"]
    rings = pd.read_csv(results / "finetune/rings.csv", dtype={"galaxy_id": str})
    summary = json.loads((results / "finetune/rings_summary.json").read_text())
    assert set(rings["label"]) == {0, 1} and (rings["label"] == 1).sum() == summary["rings"] >= 4
    truth = pd.read_csv(tiny_run / "resources/simulated/decals/hidden/rare_features.csv")
    catalogue = pd.read_csv(results / "decals/catalogue.csv", dtype={"galaxy_id": str}, low_memory=False)
    fraction = catalogue.merge(truth, on="iauname").set_index("galaxy_id")[cfg["fraction"]]
    labelled = fraction.loc[rings["galaxy_id"]].to_numpy()
    assert ((labelled > 0.1) == (rings["label"] == 1)).all() and (labelled[rings["label"] == 0] < 0.05).all()
    for init in ("multi", "scratch"):
        with h5py.File(results / f"finetune/features/{init}.h5") as f:
            assert f["representation"].shape == (len(rings), 1280)
    table = pd.read_csv(results / "finetune/results.csv")
    assert len(table) == 2 * 2 * 1 * 1  # multi and scratch (no ImageNet file) x frozen, top x n8 x 1 repeat
    for row in table.itertuples():
        stem = results / f"finetune/runs/{row.initialisation}/{row.depth}/n8/repeat_0"
        split = pd.read_csv(f"{stem}_split.csv", dtype={"galaxy_id": str})
        train = split[split["split"] == "train"]
        assert len(train) == row.train_size == 8
        for part in ("validation", "test"):
            held = split[split["split"] == part]
            assert (held["label"] == 1).sum() == (held["label"] == 0).sum() >= 1
        assert not set(train["galaxy_id"]) & set(split.loc[split["split"] != "train", "galaxy_id"])
        assert 0 <= row.test_accuracy <= 1 and np.isfinite(row.test_loss)
        history = pd.read_csv(f"{stem}_history.csv")
        assert set(history["stage"]) == ({"head"} if row.depth == "frozen" else {"head", "finetune"})
    # the same split for every initialisation and depth at one size and repeat (paired)
    assert table["split_seed"].nunique() == 1
    assert not (results / "finetune/checkpoints").exists() or not any((results / "finetune/checkpoints").rglob("*.h5"))
    summary_table = pd.read_csv(results / "finetune/summary.csv", keep_default_na=False)
    assert "not run" in summary_table.set_index("initialisation").loc["imagenet", "note"]
    for figure in ("finetune_by_pretraining", "finetune_single_question", "finetune_by_depth"):
        assert (results / f"figures/{figure}.png").stat().st_size > 10_000


def dry_run_shards(workdir, rule, config="tiny.yaml"):
    out = run_snakemake(workdir, "-n", config=config).stdout
    blocks = re.split(r"\n(?=rule |checkpoint )", out)
    shards = set()
    for block in blocks:
        if block.startswith(f"rule {rule}:"):
            m = re.search(r"shard=(\d+)", block)
            shards.add(int(m.group(1)))
    return shards


def test_adding_a_pretraining_variant_trains_only_that_variant(tiny_run, tmp_path):
    """The pretrain rule's params hold the shared training settings, not the map of every
    variant: a new variant must not retrain 'multi' (and with it everything downstream)."""
    import yaml

    config = yaml.safe_load((ROOT / "config/tiny.yaml").read_text())
    config["pretraining"]["variants"]["bar"] = ["bar"]
    path = tmp_path / "with_bar.yaml"
    # key order kept: Snakemake compares dict params as written, so sorted keys would
    # count as changed params and rerun everything
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    out = run_snakemake(tiny_run, "-n", config=str(path)).stdout
    blocks = re.split(r"\n(?=(?:local)?rule |checkpoint )", out)
    planned = [re.search(r"variant=([\w-]+)", b).group(1) for b in blocks if b.startswith("rule pretrain:")]
    assert planned == ["bar"]
    assert not any(b.startswith(("rule embed:", "rule pca:")) for b in blocks)


def frozen_model_config(workdir):
    """tiny.yaml with the trained model given as a weights file, as a user who does not
    want to retrain on every catalogue change would set it."""
    import yaml

    weights = workdir / "trained_multi.weights.h5"
    shutil.copy(workdir / "results/models/multi/model.weights.h5", weights)
    config = yaml.safe_load((ROOT / "config/tiny.yaml").read_text())
    config["pretraining"]["weights"] = {"multi": str(weights)}
    path = workdir / "frozen.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_catalogue_change_reruns_only_the_affected_shard(tiny_run_copy):
    workdir = tiny_run_copy
    config = frozen_model_config(workdir)
    run_snakemake(workdir, "--cores", "2", config=config)  # embeddings now name the frozen file
    assert dry_run_shards(workdir, "embed", config) == set()
    nsa_path = workdir / "resources/simulated/decals/nsa_v1_0_1.fits"
    cat = pd.read_csv(workdir / "results/decals/catalogue.csv", dtype={"galaxy_id": str})
    victim = cat["galaxy_id"].iloc[0]
    full = Table.read(nsa_path)
    full.write(workdir / "nsa_full.fits")
    keep = np.array([name.strip() != victim for name in full["IAUNAME"]])
    full[keep].write(nsa_path, overwrite=True)

    # 1. removing a galaxy: rebuild the catalogue, then only its shard is due
    run_snakemake(workdir, "--cores", "1", "--allowed-rules", "decals_catalogue", "--", "results/decals/catalogue.csv",
                  config=config)
    assert dry_run_shards(workdir, "decals_cutouts", config) == {shard_of(victim, 3)}
    assert dry_run_shards(workdir, "preprocess", config) == {shard_of(victim, 3)}
    assert dry_run_shards(workdir, "gz2_images", config) == set()
    # the model is frozen, so only that shard is embedded again and nothing is retrained
    assert dry_run_shards(workdir, "embed", config) == {shard_of(victim, 3)}
    assert "rule pretrain:" not in run_snakemake(workdir, "-n", config=config).stdout
    run_snakemake(workdir, "--cores", "2", config=config)
    assert dry_run_shards(workdir, "decals_cutouts", config) == set()

    # 2. adding it back: only its shard reruns, and only its cutout is fetched anew
    Table.read(workdir / "nsa_full.fits").write(nsa_path, overwrite=True)
    run_snakemake(workdir, "--cores", "1", "--allowed-rules", "decals_catalogue", "--", "results/decals/catalogue.csv",
                  config=config)
    assert dry_run_shards(workdir, "decals_cutouts", config) == {shard_of(victim, 3)}
    run_snakemake(workdir, "--cores", "2", config=config)
    manifest = pd.read_csv(workdir / f"results/decals/images/shard_{shard_of(victim, 3)}.csv", dtype=str)
    status = dict(zip(manifest["galaxy_id"], manifest["status"], strict=True))
    assert status.pop(victim) in ("cached", "fetched")
    assert set(status.values()) <= {"cached", "rejected"}  # nobody else was fetched again


def test_lint_is_clean():
    import subprocess

    proc = subprocess.run(SNAKEMAKE + ["--lint", "-d", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bad_config_fails_at_start_naming_the_key(tmp_path):
    import yaml

    config = yaml.safe_load((ROOT / "config/tiny.yaml").read_text())
    config["preprocessing"]["crop_to"] = "big"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(tmp_path, "-n", config=str(tmp_path / "bad.yaml"), check=False)
    assert proc.returncode != 0
    assert "crop_to" in proc.stdout + proc.stderr and "big" in proc.stdout + proc.stderr


def test_paper_config_validates_and_plans_every_variant(tmp_path):
    # the one file a user fetches by hand (an empty stand-in: a dry run only checks it exists)
    (tmp_path / "resources/kaggle").mkdir(parents=True)
    (tmp_path / "resources/kaggle/galaxy-zoo-the-galaxy-challenge.zip").touch()
    # the ring / irregular votes are not public: without them the plan stops, naming the file
    proc = run_snakemake(tmp_path, "-n", config="paper.yaml", check=False)
    assert proc.returncode != 0 and "resources/public/gz_decals_rare_features.csv" in proc.stdout + proc.stderr
    (tmp_path / "resources/public").mkdir(parents=True)
    (tmp_path / "resources/public/gz_decals_rare_features.csv").touch()
    # so are the ImageNet weights of the fine-tuning sweep
    proc = run_snakemake(tmp_path, "-n", config="paper.yaml", check=False)
    assert proc.returncode != 0 and "resources/imagenet/efficientnetb0_notop.h5" in proc.stdout + proc.stderr
    (tmp_path / "resources/imagenet").mkdir(parents=True)
    (tmp_path / "resources/imagenet/efficientnetb0_notop.h5").touch()
    proc = run_snakemake(tmp_path, "-n", config="paper.yaml")
    # the paper's sweep: 7 initialisations x 7 depths x 12 sizes x 5 repeats
    assert re.search(r"^finetune_run\s+2940$", proc.stdout, re.M)
    assert re.search(r"^finetune_features\s+7$", proc.stdout, re.M)
    # multi and four single-question models; 64 shards x 2 surveys embedded with multi
    assert re.search(r"^pretrain\s+5$", proc.stdout, re.M)
    assert re.search(r"^embed\s+128$", proc.stdout, re.M)
    for variant in ("multi", "smooth-or-featured", "has-spiral-arms", "bar", "bulge-size"):
        assert f"models/{variant}/model.weights.h5" in proc.stdout
    # the real sources: the NSA, two Zenodo files, the Kaggle archive, 64 cutout jobs
    for job, count in (("download_nsa", 1), ("download_zenodo_file", 2), ("gz2_kaggle_unpack", 1),
                       ("decals_cutouts", 64), ("gz2_images", 64)):
        assert re.search(rf"^{job}\s+{count}$", proc.stdout, re.M), job
    assert "resources/public/zenodo/gz_decals_volunteers_5.csv" in proc.stdout


@pytest.mark.parametrize("overlay, counts", [
    # multi and scratch (no ImageNet file in the demo): frozen and all at 4 sizes, and frozen,
    # top, block6, block4, all at 159, 3 repeats; the two grids share 12 jobs
    ("finetune_sweep.yaml", {"finetune_run": 66, "finetune_features": 2, "pretrain": 1}),
    # the default grid with smooth-or-featured beside multi and scratch
    ("single_question.yaml", {"finetune_run": 42, "finetune_features": 3, "pretrain": 2}),
])
def test_overlay_configs_validate_and_plan_their_grids(tmp_path, overlay, counts):
    """The config files given after config/config.yaml (a second --configfile)."""
    proc = run_snakemake(tmp_path, "-n", "--configfile", str(ROOT / "config/config.yaml"),
                         str(ROOT / "config" / overlay))
    for job, count in counts.items():
        assert re.search(rf"^{job}\s+{count}$", proc.stdout, re.M), (job, count)


def test_anomaly_scale_overlay_trains_on_its_survey_and_writes_apart(tmp_path):
    import yaml

    # the target rule before --configfile, which would take it for a third file
    overlay = ("anomaly", "--configfile", str(ROOT / "config/config.yaml"), str(ROOT / "config/anomaly_scale.yaml"))
    proc = run_snakemake(tmp_path, "-n", *overlay)
    # 4 experiments x (3 or 4 methods) x the paper's 15 repeats, 12 shards per survey
    for job, count in (("anomaly_run", 195), ("decals_cutouts", 12), ("gz2_images", 12)):
        assert re.search(rf"^{job}\s+{count}$", proc.stdout, re.M), job
    assert "resources/anomaly_scale/simulated/gz2/training_solutions_rev1.csv" in proc.stdout
    assert "results/anomaly_scale/anomaly/table1.csv" in proc.stdout
    # nothing of the default run's is planned
    assert not re.search(r"output: results/(?!anomaly_scale/)", proc.stdout)
    # its own model comes after the catalogue checkpoint; with the default run's instead
    # (the commented alternative) there is nothing to train, and a missing file is named
    config = yaml.safe_load((ROOT / "config/anomaly_scale.yaml").read_text())
    config["pretraining"] = {"weights": {"multi": "results/models/multi/model.weights.h5"}}
    (tmp_path / "reuse.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    reuse = ("anomaly", "--configfile", str(ROOT / "config/config.yaml"), str(tmp_path / "reuse.yaml"))
    proc = run_snakemake(tmp_path, "-n", *reuse, check=False)
    assert proc.returncode != 0 and "results/models/multi/model.weights.h5" in proc.stdout + proc.stderr
    (tmp_path / "results/models/multi").mkdir(parents=True)
    (tmp_path / "results/models/multi/model.weights.h5").touch()
    proc = run_snakemake(tmp_path, "-n", *reuse)
    assert re.search(r"^anomaly_run\s+195$", proc.stdout, re.M)
    assert not re.search(r"^pretrain\s", proc.stdout, re.M)


def job_counts(dry_run_stdout):
    """``{rule: count}`` from a dry run's job table."""
    table = dry_run_stdout[dry_run_stdout.index("Job stats:"):]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"}


def test_featured_face_on_overlay_adds_only_its_three_experiments_to_the_scale_grid(tmp_path):
    scale = ("anomaly", "--configfile", str(ROOT / "config/config.yaml"), str(ROOT / "config/anomaly_scale.yaml"))
    base = job_counts(run_snakemake(tmp_path, "-n", *scale).stdout)
    proc = run_snakemake(tmp_path, "-n", *scale, str(ROOT / "config/anomaly_scale_featured_face_on.yaml"))
    counts = job_counts(proc.stdout)
    # 3 experiments x 3 methods x 15 repeats beside the scale grid's 195 runs; the same
    # surveys, model, embeddings and ellipse features
    assert counts.pop("anomaly_run") == base.pop("anomaly_run") + 3 * 3 * 15
    assert counts.pop("anomaly_experiment") == base.pop("anomaly_experiment") + 3
    assert counts == base
    for anomaly in ("merger", "ring", "irregular"):
        assert f"results/anomaly_scale/anomaly/{anomaly}-featured-face-on/summary.json" in proc.stdout
        assert f"results/anomaly_scale/anomaly/{anomaly}/summary.json" in proc.stdout


def test_large_survey_overlay_searches_a_bigger_survey_with_the_scale_model(tmp_path):
    import yaml

    scale = yaml.safe_load((ROOT / "config/anomaly_scale.yaml").read_text())
    large = yaml.safe_load((ROOT / "config/anomaly_large_survey.yaml").read_text())
    # enough galaxies that the featured / face-on filter leaves ~10,000 (scale: ~4,100)
    assert large["survey"]["simulated"]["decals_galaxies"] >= 2.5 * scale["survey"]["simulated"]["decals_galaxies"]
    model = scale["results"] + "/models/multi/model.weights.h5"
    assert large["pretraining"] == {"weights": {"multi": model}}
    grid = ("anomaly", "--configfile", *(str(ROOT / "config" / name) for name in (
        "config.yaml", "anomaly_scale.yaml", "anomaly_scale_featured_face_on.yaml", "anomaly_large_survey.yaml")))
    proc = run_snakemake(tmp_path, "-n", *grid, check=False)
    assert proc.returncode != 0 and model in proc.stdout + proc.stderr
    (tmp_path / model).parent.mkdir(parents=True)
    (tmp_path / model).write_bytes(b"weights")
    proc = run_snakemake(tmp_path, "-n", *grid)
    counts = job_counts(proc.stdout)
    # GZ2 odd x 4 methods + 6 DECaLS experiments x 3 methods, 15 repeats each
    assert counts["anomaly_run"] == (4 + 6 * 3) * 15
    assert counts["decals_cutouts"] == counts["gz2_images"] == large["shards"]
    assert "pretrain" not in counts
    # its own survey and results; nothing of the scale run's is rebuilt
    assert not re.search(r"output: (results|resources)/(?!anomaly_large_survey/)", proc.stdout)
    proc = run_snakemake(tmp_path, "-n", "results/anomaly_large_survey/decals/embeddings/shard_0.h5", *grid[1:])
    embed = proc.stdout[proc.stdout.index("rule embed:"):]
    assert model in embed[:embed.index("output:")]


def test_gz_decals_png_source_plans_zips_not_cutouts(tmp_path):
    import yaml

    (tmp_path / "resources/kaggle").mkdir(parents=True)
    (tmp_path / "resources/kaggle/galaxy-zoo-the-galaxy-challenge.zip").touch()
    (tmp_path / "resources/public").mkdir(parents=True)
    (tmp_path / "resources/public/gz_decals_rare_features.csv").touch()
    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    config["finetune"]["imagenet_weights"] = None  # the arm is left out
    config["survey"]["images"] = "gz_decals_png"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(tmp_path, "-n", config=str(tmp_path / "c.yaml"))
    # two tables and four PNG zips from Zenodo, one index, then per-shard extraction
    for job, count in (("download_zenodo_file", 6), ("gz_decals_png_index", 1), ("decals_pngs", 64)):
        assert re.search(rf"^{job}\s+{count}$", proc.stdout, re.M), job
    assert not re.search(r"^decals_cutouts\s", proc.stdout, re.M)


def test_inconsistent_sources_fail_at_start_naming_the_key(tmp_path):
    import yaml

    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    config["survey"]["images"] = "simulated"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(tmp_path, "-n", config=str(tmp_path / "c.yaml"), check=False)
    assert proc.returncode != 0 and "survey.images: simulated renders only the simulated" in proc.stderr + proc.stdout
    config = yaml.safe_load((ROOT / "config/tiny.yaml").read_text())
    config["survey"]["source"] = "catalogue"  # but no survey.catalogue section
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(tmp_path, "-n", config=str(tmp_path / "c.yaml"), check=False)
    assert proc.returncode != 0 and "'catalogue' is a required property" in proc.stderr + proc.stdout


def test_missing_weights_file_fails_at_start_naming_it(tmp_path):
    import yaml

    config = yaml.safe_load((ROOT / "config/tiny.yaml").read_text())
    config["pretraining"]["weights"] = {"multi": str(tmp_path / "nowhere.weights.h5")}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(tmp_path, "-n", config=str(tmp_path / "c.yaml"), check=False)
    assert proc.returncode != 0 and "pretraining.weights.multi" in proc.stderr + proc.stdout
    assert "nowhere.weights.h5" in proc.stderr + proc.stdout


def test_initial_weights_are_the_pretrain_jobs_input_and_bad_ones_fail_at_start_naming_them(tmp_path):
    import yaml

    def dry_run(initial_weights):
        config = yaml.safe_load((ROOT / "config/tiny.yaml").read_text())
        config["pretraining"]["initial_weights"] = initial_weights
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
        proc = run_snakemake(tmp_path, "-n", "-p", "results/models/multi/model.weights.h5",
                             config=str(tmp_path / "c.yaml"), check=False)
        return proc.returncode, proc.stdout + proc.stderr

    start = tmp_path / "start.weights.h5"
    start.write_bytes(b"weights")
    code, out = dry_run({"multi": str(start)})
    assert code == 0 and f"initial_weights={start}" not in out  # not a param: an input
    pretrain_job = out[out.index("rule pretrain:"):]
    assert str(start) in pretrain_job[:pretrain_job.index("output:")]
    code, out = dry_run({"multi": str(tmp_path / "nowhere.weights.h5")})
    assert code != 0 and "pretraining.initial_weights.multi" in out and "nowhere.weights.h5" in out
    code, out = dry_run({"single": str(start)})
    assert code != 0 and "pretraining.initial_weights.single: not a variant" in out
    own = tmp_path / "results/models/multi/model.weights.h5"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"weights")
    code, out = dry_run({"multi": "results/models/multi/model.weights.h5"})
    assert code != 0 and "is the file this pretraining writes" in out


def test_anomaly_scale_96_overlay_continues_the_scale_model_at_96_px(tmp_path):
    overlay = ("anomaly", "--configfile", str(ROOT / "config/config.yaml"), str(ROOT / "config/anomaly_scale_96.yaml"))
    proc = run_snakemake(tmp_path, "-n", *overlay, check=False)
    # the starting weights come from the anomaly_scale overlay's run: without it, named
    assert proc.returncode != 0
    assert "pretraining.initial_weights.multi" in proc.stdout + proc.stderr
    assert "results/anomaly_scale/models/multi/model.weights.h5" in proc.stdout + proc.stderr
    start = tmp_path / "results/anomaly_scale/models/multi/model.weights.h5"
    start.parent.mkdir(parents=True)
    start.write_bytes(b"weights")
    proc = run_snakemake(tmp_path, "-n", "-p", *overlay)
    assert re.search(r"^anomaly_run\s+195$", proc.stdout, re.M)
    # (pretrain itself is planned after the catalogue checkpoint, so not listed here)
    assert "resources/anomaly_scale/simulated/gz2/training_solutions_rev1.csv" in proc.stdout
    assert not re.search(r"output: results/(?!anomaly_scale_96/)", proc.stdout)


def assert_grid_takes_weights(tmp_path, grid_configs, weights, results):
    """Under the config files ``grid_configs``, the ``anomaly`` target names the external
    ``weights`` file while it is missing; once it exists, the 195 runs are planned under
    ``results`` only, nothing is pretrained, and the shards are embedded with it."""
    grid = ("anomaly", "--configfile", *(str(ROOT / "config" / name) for name in grid_configs))
    proc = run_snakemake(tmp_path, "-n", *grid, check=False)
    assert proc.returncode != 0
    assert weights in proc.stdout + proc.stderr
    (tmp_path / weights).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / weights).write_bytes(b"weights")
    proc = run_snakemake(tmp_path, "-n", *grid)
    assert re.search(r"^anomaly_run\s+195$", proc.stdout, re.M)
    assert not re.search(r"^pretrain\s", proc.stdout, re.M)
    assert "resources/anomaly_scale/simulated/gz2/training_solutions_rev1.csv" in proc.stdout
    assert not re.search(rf"output: results/(?!{results}/)", proc.stdout)
    for survey in ("decals", "gz2"):
        proc = run_snakemake(tmp_path, "-n", f"results/{results}/{survey}/embeddings/shard_0.h5", *grid[1:])
        embed = proc.stdout[proc.stdout.index("rule embed:"):]
        assert weights in embed[:embed.index("output:")]


def test_anomaly_scale_224_overlay_crops_at_224_and_takes_the_gpu_weights(tmp_path):
    import yaml

    config = yaml.safe_load((ROOT / "config/anomaly_scale_224.yaml").read_text())
    assert (config["preprocessing"]["resize_to"], config["preprocessing"]["crop_to"]) == (300, 224)  # W+22
    overlay = ("anomaly", "--configfile", str(ROOT / "config/config.yaml"), str(ROOT / "config/anomaly_scale_224.yaml"))
    proc = run_snakemake(tmp_path, "-n", *overlay)
    assert re.search(r"^anomaly_run\s+195$", proc.stdout, re.M)
    assert "resources/anomaly_scale/simulated/gz2/training_solutions_rev1.csv" in proc.stdout
    assert not re.search(r"output: results/(?!anomaly_scale_224/)", proc.stdout)
    # device/pretrain.sh asks for exactly the file the pretrain rule writes under this overlay
    model = "results/anomaly_scale_224/models/multi/model.weights.h5"
    proc = run_snakemake(tmp_path, "-n", model, *overlay[1:])
    assert re.search(r"^pretrain\s+1$", proc.stdout, re.M)
    proc = run_snakemake(tmp_path, "-n", "results/anomaly_scale_224/gz2/embeddings/shard_0.h5", *overlay[1:])
    embed = proc.stdout[proc.stdout.index("rule embed:"):]
    assert model in embed[:embed.index("output:")]
    # with the weights the GPU machine trained instead
    assert_grid_takes_weights(tmp_path, ("config.yaml", "anomaly_scale_224.yaml", "anomaly_scale_224_weights.yaml"),
                              "resources/device/anomaly_scale_224/model.weights.h5", "anomaly_scale_224")


def test_pretrain_large_overlay_builds_only_its_model_and_the_scale_grid_takes_it(tmp_path):
    import yaml

    default = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    large = yaml.safe_load((ROOT / "config/pretrain_large.yaml").read_text())
    # an independent draw of the population, larger than the scale overlay's survey
    assert large["seed"] != default["seed"]
    assert large["survey"]["simulated"]["decals_galaxies"] >= 3 * 16000
    model = "results/pretrain_large/models/multi/model.weights.h5"
    configs = ("--configfile", str(ROOT / "config/config.yaml"), str(ROOT / "config/pretrain_large.yaml"))
    proc = run_snakemake(tmp_path, "-n", model, *configs)
    assert re.search(r"^pretrain\s+1$", proc.stdout, re.M)
    assert re.search(r"^preprocess\s+24$", proc.stdout, re.M)
    assert "gz2" not in proc.stdout  # the model needs only the DECaLS-like survey
    assert not re.search(r"output: (results|resources)/(?!pretrain_large/)", proc.stdout)
    # the scale overlay's grid on that model
    assert_grid_takes_weights(tmp_path, ("config.yaml", "anomaly_scale.yaml", "anomaly_scale_large_model.yaml"),
                              model, "anomaly_scale_large_model")
