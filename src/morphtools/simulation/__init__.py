"""The embedded default data source: a simulated DECaLS-like and GZ2-like survey.

Galaxies are drawn from a population with the paper's phenomena (``population``), rendered
as survey images (``render``) and shown to simulated volunteers (``votes``). Ground truth
is kept in its own table, apart from what the pipeline reads.
"""
