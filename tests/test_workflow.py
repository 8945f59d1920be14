"""End to end: the whole DAG on config/tiny.yaml, partial rebuilds, lint and config errors."""

import re

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from conftest import ROOT, SNAKEMAKE, run_snakemake
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
            assert images.shape == (len(ids), 224, 224) and images.dtype == np.uint8
            assert thumbs.shape == (len(ids), 128, 128, 3)
            assert attrs["resize_to"] == 300 and attrs["crop_to"] == 224
            # real images, not blanks: a bright centre over a darker sky
            if len(ids):
                centre = images[:, 100:124, 100:124].mean()
                edge = images[:, :20, :20].mean()
                assert centre > edge + 20
            n_ok += len(ids)
        assert n_ok >= 0.95 * len(cat)
    assert (tiny_run / "results/figures/sample_galaxies.png").stat().st_size > 50_000




def dry_run_shards(workdir, rule):
    out = run_snakemake(workdir, "-n").stdout
    blocks = re.split(r"\n(?=rule |checkpoint )", out)
    shards = set()
    for block in blocks:
        if block.startswith(f"rule {rule}:"):
            m = re.search(r"shard=(\d+)", block)
            shards.add(int(m.group(1)))
    return shards


def test_catalogue_change_reruns_only_the_affected_shard(tiny_run_copy):
    workdir = tiny_run_copy
    nsa_path = workdir / "resources/simulated/decals/nsa_v1_0_1.fits"
    cat = pd.read_csv(workdir / "results/decals/catalogue.csv", dtype={"galaxy_id": str})
    victim = cat["galaxy_id"].iloc[0]
    full = Table.read(nsa_path)
    full.write(workdir / "nsa_full.fits")
    keep = np.array([name.strip() != victim for name in full["IAUNAME"]])
    full[keep].write(nsa_path, overwrite=True)

    # 1. removing a galaxy: rebuild the catalogue, then only its shard is due
    run_snakemake(workdir, "--cores", "1", "--allowed-rules", "decals_catalogue", "--", "results/decals/catalogue.csv")
    assert dry_run_shards(workdir, "decals_cutouts") == {shard_of(victim, 3)}
    assert dry_run_shards(workdir, "preprocess") == {shard_of(victim, 3)}
    assert dry_run_shards(workdir, "gz2_images") == set()
    run_snakemake(workdir, "--cores", "2")
    assert dry_run_shards(workdir, "decals_cutouts") == set()

    # 2. adding it back: only its shard reruns, and only its cutout is fetched anew
    Table.read(workdir / "nsa_full.fits").write(nsa_path, overwrite=True)
    run_snakemake(workdir, "--cores", "1", "--allowed-rules", "decals_catalogue", "--", "results/decals/catalogue.csv")
    assert dry_run_shards(workdir, "decals_cutouts") == {shard_of(victim, 3)}
    run_snakemake(workdir, "--cores", "2")
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
