import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "Snakefile")]


def run_snakemake(workdir, *args, config="tiny.yaml", check=True, timeout=2400):
    cmd = SNAKEMAKE + ["-d", str(workdir), "--configfile", str(ROOT / "config" / config), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole DAG on config/tiny.yaml, run once per test session."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    run_snakemake(workdir, "--cores", "2")
    return workdir


@pytest.fixture
def tiny_run_copy(tiny_run, tmp_path):
    """A private copy of the finished run (results, cache and Snakemake's metadata)."""
    dest = tmp_path / "run"
    shutil.copytree(tiny_run, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def small_decals_survey(tmp_path_factory):
    """A small simulated DECaLS-like survey in the real formats (NSA FITS, GZ DECaLS vote
    table) with its catalogue after the paper's cuts: the stand-in services serve it."""
    import pandas as pd

    from morphtools.catalogue import SelectionCuts, build_decals_catalogue
    from morphtools.simulation.survey import simulate_decals_survey

    root = tmp_path_factory.mktemp("small_decals")
    out = {k: str(root / f"{k}.{'fits' if k == 'nsa' else 'csv'}")
           for k in ("nsa", "volunteers", "rare_features", "tags", "truth")}
    truth = simulate_decals_survey(90, 7, out)
    catalogue = build_decals_catalogue(out["nsa"], out["volunteers"], SelectionCuts(), 3)
    covered = set(truth.loc[~truth["no_coverage"], "iauname"])
    catalogue = catalogue[catalogue["galaxy_id"].isin(covered)].reset_index(drop=True)
    return {"root": root, "paths": out, "truth": pd.read_csv(out["truth"]), "catalogue": catalogue}
