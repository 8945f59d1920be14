"""Adapter: the user's Kaggle GZ2 download -> its solutions table and an image index
(only the two needed inner zips are extracted; counts are checked)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from morphtools.archives import unpack_kaggle_gz2  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402

log = log_to(snakemake.log[0], "gz2_kaggle_unpack")
unpack_kaggle_gz2(snakemake.input.archive, snakemake.params.work_dir, snakemake.output.solutions,
                  snakemake.output.index, snakemake.params.expected_galaxies, log=log)
