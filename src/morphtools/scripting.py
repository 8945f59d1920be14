"""Glue for the workflow's thin scripts: send logging and stderr (progress bars, warnings)
to the rule's log file."""

from __future__ import annotations

import logging
import sys


def log_to(path: str, name: str) -> logging.Logger:
    stream = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the job
    sys.stderr = stream
    logging.basicConfig(stream=stream, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    return logging.getLogger(name)
