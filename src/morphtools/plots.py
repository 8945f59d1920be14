"""Figures. Each function takes arrays and writes one image file; no workflow knowledge."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def sample_galaxies_figure(examples: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]],
                           surveys: tuple[str, ...], path, titles: dict[str, str] | None = None) -> None:
    """Grid of example galaxies: one row per class; for each survey and example, the
    survey colour image (uint8 RGB) beside the greyscale crop (uint8) the CNN sees.

    ``examples[class][survey]`` is a list of (colour, crop) pairs; missing ones stay blank.
    """
    classes = list(examples)
    per = max(len(v) for c in classes for v in examples[c].values()) or 1
    ncols = 2 * per * len(surveys)
    fig, axes = plt.subplots(len(classes), ncols, figsize=(1.3 * ncols, 1.4 * len(classes)), squeeze=False)
    for r, cls in enumerate(classes):
        for s, survey in enumerate(surveys):
            pairs = examples[cls].get(survey, [])
            for e in range(per):
                ax_colour = axes[r, (s * per + e) * 2]
                ax_crop = axes[r, (s * per + e) * 2 + 1]
                if e < len(pairs):
                    colour, crop = pairs[e]
                    ax_colour.imshow(colour)
                    ax_crop.imshow(crop, cmap="gray", vmin=0, vmax=255)
                if r == 0:
                    name = (titles or {}).get(survey, survey)
                    ax_colour.set_title(f"{name}\ncolour", fontsize=7)
                    ax_crop.set_title(f"{name}\ncrop", fontsize=7)
        axes[r, 0].set_ylabel(cls.replace("_", " "), fontsize=8, rotation=0, ha="right", va="center")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.subplots_adjust(wspace=0.03, hspace=0.05, left=0.09, right=0.995, top=0.93, bottom=0.01)
    fig.savefig(path, dpi=110)
    plt.close(fig)
