"""Galaxy morphology tools from deep supervised representations (Walmsley et al. 2022).

The science lives here as plain functions and small classes; the Snakemake workflow under
``workflow/`` only adapts its inputs and outputs to them.
"""

__version__ = "0.1.0"
