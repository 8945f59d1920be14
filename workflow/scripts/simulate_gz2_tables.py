"""Adapter: write the simulated GZ2-like Kaggle table and its truth table."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from morphtools.scripting import log_to  # noqa: E402
from morphtools.simulation.survey import simulate_gz2_tables  # noqa: E402

log = log_to(snakemake.log[0], "simulate_gz2_tables")
# the schema allows exactly simulate_gz2_tables' keyword names (mag_r_max, petro_r90_min)
truth = simulate_gz2_tables(snakemake.params.n_galaxies, snakemake.params.seed, dict(snakemake.output.items()),
                            **snakemake.params.selection)
log.info("simulated %d GZ2-like galaxies: %s", len(truth), truth["morph_class"].value_counts().to_dict())
