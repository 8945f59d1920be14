import functools
import os
import sys
from pathlib import Path

import pandas as pd
from snakemake.utils import validate

# the science package, importable without installing it (e.g. under --sdm conda)
sys.path.insert(0, str(Path(workflow.basedir).parent / "src"))
from morphtools.sharding import shard_digest  # noqa: E402


validate(config, schema="../schemas/config.schema.yaml")

RESULTS = config["results"]
RESOURCES = config["resources"]
SIM = f"{RESOURCES}/simulated"
SHARDS = list(range(config["shards"]))
SURVEYS = ["decals", "gz2"]
IMAGE_FORMAT = {"decals": "fits", "gz2": "jpeg"}


wildcard_constraints:
    shard=r"\d+",
    survey="|".join(SURVEYS),


def catalogue_checkpoint(survey):
    return {"decals": checkpoints.decals_catalogue, "gz2": checkpoints.gz2_catalogue}[survey]


def catalogue_input(survey):
    """The survey's catalogue as an input whose timestamp is ignored: a shard reruns when
    its own rows change (``shard_rows_digest``), not whenever any galaxy changes."""

    def catalogue(wildcards):
        return ancient(catalogue_checkpoint(survey).get().output.catalogue)

    return catalogue


@functools.lru_cache(maxsize=8)
def _shard_digests(path, mtime):
    cat = pd.read_csv(path, dtype={"galaxy_id": str})
    return {int(s): shard_digest(rows, "galaxy_id") for s, rows in cat.groupby("shard")}


def shard_rows_digest(survey):
    def digest(wildcards):
        path = catalogue_checkpoint(survey).get().output.catalogue
        return _shard_digests(path, os.path.getmtime(path)).get(int(wildcards.shard), "empty-shard")

    return digest


def shard_files(pattern, survey):
    return expand(pattern, survey=survey, shard=SHARDS)


def all_outputs():
    out = []
    for survey in SURVEYS:
        out += shard_files(f"{RESULTS}/{{survey}}/crops/shard_{{shard}}.h5", survey)
        out.append(f"{RESULTS}/{survey}/qa_summary.csv")
    out.append(f"{RESULTS}/figures/sample_galaxies.png")
    return out
