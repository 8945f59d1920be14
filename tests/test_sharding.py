import os
import subprocess
import sys

import pandas as pd

from morphtools.sharding import assign_shards, shard_digest, shard_of


def test_shard_is_stable_across_processes():
    ids = ["J101010.10+101010.1", "J000000.00-000000.0", "123456"]
    here = [shard_of(i, 16) for i in ids]
    code = f"from morphtools.sharding import shard_of; print([shard_of(i, 16) for i in {ids!r}])"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == str(here)
    assert all(0 <= s < 16 for s in here)


def test_shards_are_balanced():
    shards = assign_shards([f"G{i}" for i in range(8000)], 8)
    counts = pd.Series(shards).value_counts()
    assert len(counts) == 8
    assert counts.min() > 850 and counts.max() < 1150


def test_digest_changes_only_for_the_shard_that_changes():
    cat = pd.DataFrame({"galaxy_id": [f"G{i}" for i in range(200)], "ra": range(200)})
    cat["shard"] = assign_shards(cat["galaxy_id"], 4)
    before = {s: shard_digest(r, "galaxy_id") for s, r in cat.groupby("shard")}
    added = pd.DataFrame({"galaxy_id": ["NEW"], "ra": [1.0], "shard": [shard_of("NEW", 4)]})
    after_cat = pd.concat([cat, added])
    after = {s: shard_digest(r, "galaxy_id") for s, r in after_cat.groupby("shard")}
    changed = {s for s in before if before[s] != after[s]}
    assert changed == {shard_of("NEW", 4)}
    # row order does not matter
    shuffled = cat.sample(frac=1, random_state=1)
    assert {s: shard_digest(r, "galaxy_id") for s, r in shuffled.groupby("shard")} == before
