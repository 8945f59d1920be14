"""Figures. Each function takes arrays and writes one image file; no workflow knowledge."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
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


def training_curves_figure(histories: dict, path) -> None:
    """Training and validation loss (mean per-galaxy Dirichlet-multinomial NLL, summed over
    the variant's questions) against epoch, one panel per pretrained variant; the epoch
    whose weights are kept (lowest validation loss) is marked."""
    names = list(histories)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        h = histories[name]
        ax.plot(h["epoch"], h["loss"], "o-", ms=3, label="training (augmented)")
        ax.plot(h["epoch"], h["val_loss"], "s-", ms=3, label="validation (centre crop)")
        if len(h):
            best = h.loc[h["val_loss"].idxmin()]
            ax.axvline(best["epoch"], color="0.6", ls=":", label=f"kept: epoch {int(best['epoch'])}")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss per galaxy")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def representation_check_figure(knn: dict, probe: dict, path) -> None:
    """Left: confusion matrix of the k-NN majority vote (rows: hidden class, normalised per
    row). Right: ROC curve of the linear ring probe, with the chance diagonal."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.3))
    cm = np.asarray(knn["confusion"], float)
    cm = cm / np.clip(cm.sum(1, keepdims=True), 1, None)
    ax1.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(knn["classes"]))
    ax1.set_xticks(ticks, knn["classes"], rotation=60, ha="right", fontsize=7)
    ax1.set_yticks(ticks, knn["classes"], fontsize=7)
    for i in ticks:
        for j in ticks:
            if cm[i, j] >= 0.05:
                ax1.text(j, i, f"{cm[i, j]:.2f}", ha="center", va="center", fontsize=6,
                         color="white" if cm[i, j] > 0.6 else "black")
    ax1.set_xlabel("predicted (neighbours' majority)")
    ax1.set_ylabel("hidden class")
    ax1.set_title(f"k-NN: accuracy {knn['accuracy']:.2f} (chance {knn['chance_majority_class']:.2f})", fontsize=9)
    ax2.plot(probe["fpr"], probe["tpr"], label=f"linear probe, AUC {probe['roc_auc']:.2f}")
    ax2.plot([0, 1], [0, 1], "k:", label="chance, AUC 0.50")
    ax2.set_xlabel("false positive rate")
    ax2.set_ylabel("true positive rate")
    ax2.set_title(f"rings: {probe['n_rings']} vs {probe['n_not_rings']} not-rings", fontsize=9)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def thumbnail_map_figure(xy: np.ndarray, centres: np.ndarray, thumbnails: np.ndarray, cell_size: float, path,
                         title: str = "", note: str = "") -> None:
    """Galaxy thumbnails on a 2-D map (paper Fig. 1). ``xy`` (n, 2) every galaxy's position,
    drawn as grey points; ``thumbnails`` (m, t, t, 3) uint8 drawn ``cell_size`` map units
    wide, centred on ``centres`` (m, 2): the centres of the grid cells the galaxies lie in
    (within half a cell of their own position), so thumbnails tile without hiding each
    other. With no galaxies, the figure carries ``note`` instead."""
    span = np.ptp(xy, axis=0) + 2 * cell_size if len(xy) else np.ones(2)
    aspect = float(np.clip(span[1] / span[0], 0.4, 2.5))  # the figure takes the map's shape
    fig, ax = plt.subplots(figsize=(11, 11 * aspect + 0.5) if aspect <= 1 else (11 / aspect, 11.5))
    if len(xy):
        ax.scatter(xy[:, 0], xy[:, 1], s=2, color="0.6", zorder=0, linewidths=0)
        half = 0.48 * cell_size  # a thin white gap between neighbouring thumbnails
        for (x, y), image in zip(centres, thumbnails, strict=True):
            ax.imshow(image, extent=(x - half, x + half, y - half, y + half), zorder=1, interpolation="lanczos")
        ax.set_xlim(xy[:, 0].min() - cell_size, xy[:, 0].max() + cell_size)
        ax.set_ylim(xy[:, 1].min() - cell_size, xy[:, 1].max() + cell_size)
        ax.set_aspect("equal")
    if note:
        ax.text(0.5, 0.5 if not len(xy) else 0.01, note, transform=ax.transAxes, ha="center",
                va="center" if not len(xy) else "bottom", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def galaxy_rows_figure(rows: list[list[np.ndarray]], path, row_labels: list[str] | None = None,
                       captions: list[list[str]] | None = None, marked: list[list[bool]] | None = None,
                       title: str = "", query_per_row: bool = True) -> None:
    """Rows of galaxy thumbnails (uint8 RGB), the first of each row the query, framed in
    green (paper Fig. 2); with ``query_per_row`` False only the very first image is a
    query (one search wrapped over several rows). ``marked[r][c]`` puts a small orange square on an image (e.g.
    'carries the query's tag'); ``captions`` go under the images, ``row_labels`` left of
    each row."""
    ncols = max(1, max((len(r) for r in rows), default=1))
    label_width = 1.6 if row_labels else 0.05  # inches left of the images
    width = 1.25 * ncols + label_width
    fig, axes = plt.subplots(len(rows), ncols, figsize=(width, 1.38 * len(rows) + 0.4), squeeze=False)
    for r, images in enumerate(rows):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c >= len(images):
                continue
            ax.imshow(images[c])
            if c == 0 and (query_per_row or r == 0):
                for spine in ax.spines.values():
                    spine.set_visible(True)
                    spine.set_color("#2ca02c")
                    spine.set_linewidth(3)
            if marked is not None and marked[r][c]:
                ax.add_patch(plt.Rectangle((0.04, 0.04), 0.14, 0.14, transform=ax.transAxes, color="#ff7f0e"))
            if captions is not None:
                ax.set_xlabel(captions[r][c], fontsize=6, labelpad=1)
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=8, rotation=0, ha="right", va="center", labelpad=4)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(wspace=0.04, hspace=0.25, left=label_width / width, right=0.995,
                        top=0.93 if title else 0.99, bottom=0.02)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _accuracy_lines(ax, results, group_column: str, x_column: str, order=None, styles=None):
    """One line per ``group_column`` value: mean test accuracy against ``x_column`` (log
    axis) with the spread over repeats (one standard deviation) as a band and each repeat
    as a dot."""
    for name in order or sorted(set(results[group_column])):
        sub = results[results[group_column] == name]
        if sub.empty:
            continue
        means = sub.groupby(x_column)["test_accuracy"].agg(["mean", "std"]).sort_index()
        xs = means.index.to_numpy(float)
        line, = ax.plot(xs, means["mean"], "o-", ms=4, label=str(name), **(styles or {}).get(name, {}))
        std = means["std"].fillna(0).to_numpy()
        ax.fill_between(xs, means["mean"] - std, means["mean"] + std, color=line.get_color(), alpha=0.15)
        ax.scatter(sub[x_column], sub["test_accuracy"], s=6, color=line.get_color(), alpha=0.5)
    ax.set_xscale("log")
    # label the sizes that were run, not the log axis' crowded minor ticks
    sizes = np.unique(results[x_column].to_numpy(float))
    if len(sizes):
        ax.set_xticks(sizes, [f"{x:g}" for x in sizes])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.axhline(0.5, color="0.6", ls=":", lw=1)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.3, 1.02)


def _finish_with_notes(fig, path, notes):
    """Notes (e.g. arms left out, and why) in small print under the axes; save and close."""
    if notes:
        fig.text(0.01, 0.005, "\n".join(notes), fontsize=7, color="0.3", va="bottom")
    fig.tight_layout(rect=(0, 0.04 * len(notes), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def finetune_by_pretraining_figure(results, finetuned_depth: str, path, notes=()) -> None:
    """W+22 Fig. 7: ring test accuracy against the number of labelled training galaxies,
    one line per initialisation; left panel the frozen base (head only), right panel unfrozen
    to ``finetuned_depth``. ``results``: one row per model (initialisation, depth,
    train_size, test_accuracy)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, depth, title in ((axes[0], "frozen", "frozen base (head only)"),
                             (axes[1], finetuned_depth, f"fine-tuned (unfrozen to {finetuned_depth})")):
        sub = results[results["depth"] == depth]
        if sub.empty:
            ax.text(0.5, 0.5, f"no models at depth {depth!r}", ha="center", transform=ax.transAxes)
        else:
            _accuracy_lines(ax, sub, "initialisation", "train_size")
            ax.legend(fontsize=8, loc="lower right")
        ax.set_title(title)
        ax.set_xlabel("labelled training galaxies")
    _finish_with_notes(fig, path, notes)


def finetune_single_question_figure(results, single_questions, finetuned_depth: str, path, notes=()) -> None:
    """W+22 Fig. 8: the all-questions model ('multi') against models pretrained on one
    question each, fine-tuned to ``finetuned_depth``."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    order = ["multi", *single_questions]
    sub = results[(results["depth"] == finetuned_depth) & results["initialisation"].isin(order)]
    if not single_questions:
        ax.text(0.5, 0.5, "no single-question pretraining configured\n(pretraining.variants)", ha="center",
                transform=ax.transAxes)
    if not sub.empty:
        _accuracy_lines(ax, sub, "initialisation", "train_size", order=order,
                        styles={"multi": {"color": "k", "lw": 2}})
        ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"all questions vs one question (unfrozen to {finetuned_depth})")
    ax.set_xlabel("labelled training galaxies")
    _finish_with_notes(fig, path, notes)


def finetune_by_depth_figure(results, depths, train_size: int, path, notes=()) -> None:
    """W+22 Fig. 9: ring test accuracy against how deep the base is unfrozen ('frozen' =
    head only), one line per initialisation, at ``train_size`` labelled galaxies."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    sub = results[results["train_size"] == train_size].copy()
    present = [d for d in depths if d in set(sub["depth"])]
    if sub.empty or len(present) < 2:
        ax.text(0.5, 0.5, f"fewer than two depths run at {train_size} training galaxies", ha="center",
                transform=ax.transAxes)
    else:
        sub = sub[sub["depth"].isin(present)]
        sub["depth"] = pd_categorical(sub["depth"], present)
        sub = sub.sort_values("depth")
        for name, runs in sub.groupby("initialisation", sort=True, observed=True):
            means = runs.groupby("depth", observed=True)["test_accuracy"].agg(["mean", "std"])
            xs = np.array([present.index(d) for d in means.index])
            line, = ax.plot(xs, means["mean"], "o-", ms=4, label=name)
            ax.fill_between(xs, means["mean"] - means["std"].fillna(0), means["mean"] + means["std"].fillna(0),
                            color=line.get_color(), alpha=0.15)
            ax.scatter([present.index(d) for d in runs["depth"]], runs["test_accuracy"], s=6,
                       color=line.get_color(), alpha=0.5)
        ax.set_xticks(range(len(present)), present)
        ax.legend(fontsize=8, loc="lower right")
    ax.axhline(0.5, color="0.6", ls=":", lw=1)
    ax.set_ylim(0.3, 1.02)
    ax.set_xlabel("unfrozen from the output down to")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"accuracy by unfrozen depth ({train_size} labelled galaxies)")
    _finish_with_notes(fig, path, notes)


def pd_categorical(values, categories):
    import pandas as pd

    return pd.Categorical(values, categories=categories, ordered=True)
