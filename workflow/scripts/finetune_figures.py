"""Adapter: Figs 7-9 of W+22 from the table of fine-tuned models."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import pandas as pd  # noqa: E402

from morphtools.finetune import BASE_INITIALISATIONS, DEPTHS  # noqa: E402
from morphtools.plots import (  # noqa: E402
    finetune_by_depth_figure,
    finetune_by_pretraining_figure,
    finetune_single_question_figure,
)
from morphtools.scripting import log_to  # noqa: E402

log = log_to(snakemake.log[0], "finetune_figures")
results = pd.read_csv(snakemake.input.results)
notes = [f"{init} not run: {why}" for init, why in snakemake.params.left_out.items()]
depth = snakemake.params.finetuned_depth
finetune_by_pretraining_figure(results, depth, snakemake.output.by_pretraining, notes)
singles = sorted(set(results["initialisation"]) - {"multi", *BASE_INITIALISATIONS})
finetune_single_question_figure(results, singles, depth, snakemake.output.single_question, notes)
finetune_by_depth_figure(results, list(DEPTHS), snakemake.params.depth_train_size, snakemake.output.by_depth, notes)
log.info("figures from %d models; single-question variants: %s", len(results), singles or "none")
