"""Progress display for long per-galaxy loops: rate and ETA, to stderr (a rule's log)."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(desc: str, unit: str = "galaxy"):
    """A function ``(iterable, total) -> iterable`` that shows progress with rate and ETA;
    updates at most every 5 s so logs stay readable when not on a terminal."""

    def wrap(iterable, total=None):
        return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr,
                    mininterval=5.0, dynamic_ncols=False, ncols=100)

    return wrap


def progress_counter(total: int | None = None, desc: str = "", unit: str = "galaxy", **options):
    """A bar advanced by hand (``.update(n)``, ``.close()``), for loops over batches;
    same rate/ETA display and 5 s update interval as :func:`progress_bar`. ``options``
    go to tqdm (e.g. ``initial``, ``unit_scale`` for bytes)."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, mininterval=5.0,
                dynamic_ncols=False, ncols=100, **options)
