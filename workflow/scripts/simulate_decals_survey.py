"""Adapter: write the simulated DECaLS-like survey tables."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from morphtools.scripting import log_to  # noqa: E402
from morphtools.simulation.survey import simulate_decals_survey  # noqa: E402

log = log_to(snakemake.log[0], "simulate_decals_survey")
truth = simulate_decals_survey(snakemake.params.n_galaxies, snakemake.params.seed, dict(snakemake.output.items()))
log.info("simulated %d DECaLS-like galaxies: %s", len(truth), truth["morph_class"].value_counts().to_dict())
