"""Adapter: training and validation loss per epoch for every pretrained variant."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import pandas as pd  # noqa: E402

from morphtools.plots import training_curves_figure  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import atomic_path  # noqa: E402

log = log_to(snakemake.log[0], "training_curves")
histories = {v: pd.read_csv(p) for v, p in zip(snakemake.params.variants, snakemake.input.histories, strict=True)}
with atomic_path(snakemake.output.figure, suffix=".png") as tmp:
    training_curves_figure(histories, tmp)
