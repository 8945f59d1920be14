"""Adapter: index the GZ DECaLS PNG zips by iauname (which zip, which member)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from morphtools.archives import index_gz_decals_pngs  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402

log = log_to(snakemake.log[0], "gz_decals_png_index")
index_gz_decals_pngs(snakemake.input.zips, snakemake.output.index, log=log)
