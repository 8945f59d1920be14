"""The version of the simulated surveys' rendering, importable without numpy (the workflow
reads it at parse time).

Every simulated image records a digest of this version, the survey model, the galaxy's
truth row and the image's settings (:func:`morphtools.simulation.render.render_digest`).
The image rules keep an image only when its digest matches, so bump the version whenever a
change to the rendering changes pixels: images made by older code are then rendered again,
instead of surviving a rerun because their file exists.
"""

RENDER_VERSION = 2
