"""Stable shards: a galaxy's shard depends only on its id and the shard count, so adding
or removing galaxies changes only the shards that hold them."""

from __future__ import annotations

import hashlib

import pandas as pd


def shard_of(galaxy_id: str, n_shards: int) -> int:
    """Shard number in [0, n_shards) from a BLAKE2b hash of the id (not Python's ``hash``,
    which is salted per process)."""
    digest = hashlib.blake2b(str(galaxy_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n_shards


def assign_shards(ids, n_shards: int) -> list[int]:
    return [shard_of(i, n_shards) for i in ids]


def shard_digest(rows: pd.DataFrame, id_column: str) -> str:
    """Content hash of one shard's catalogue rows, independent of row order: it changes
    exactly when a galaxy in the shard is added, removed or edited."""
    ordered = rows.sort_values(id_column).reset_index(drop=True)
    text = ordered.to_csv(index=False, float_format="%.10g")
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
