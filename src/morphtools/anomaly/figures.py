"""Figures of the anomaly experiments: RWS and accuracy against N (paper Figs 3 and 5),
2-D maps of the two feature spaces (Fig. 4) and random picks from the top of the CNN + GP
ranking (Fig. 6)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .methods import METHOD_LABELS  # noqa: E402

# the paper's colours: baseline black, CNN + GP blue, Ellipse + GP magenta, random red
METHOD_COLOURS = {"baseline": "black", "cnn_gp": "tab:blue", "ellipse_gp": "magenta", "random": "tab:red"}
METHOD_STYLES = {"baseline": "--", "cnn_gp": "-", "ellipse_gp": "-.", "random": ":"}


def curves_figure(curves: pd.DataFrame, prevalence: dict[str, float], path, title: str = "") -> None:
    """RWS (top row) and accuracy (bottom row) against N, one column per experiment; every
    run a thin trace, the mean of each method thick, the random expectation (the
    prevalence) a red dotted line. ``curves``: experiment, method, repeat, n, rws, accuracy."""
    experiments = list(dict.fromkeys(curves["experiment"]))
    fig, axes = plt.subplots(2, len(experiments), figsize=(4.2 * len(experiments), 6.4), squeeze=False)
    for col, experiment in enumerate(experiments):
        sub = curves[curves["experiment"] == experiment]
        for row, metric in enumerate(("rws", "accuracy")):
            ax = axes[row, col]
            for method, runs in sub.groupby("method", sort=False):
                colour, style = METHOD_COLOURS.get(method, "grey"), METHOD_STYLES.get(method, "-")
                for _, run in runs.groupby("repeat"):
                    ax.plot(run["n"], run[metric], color=colour, ls=style, lw=0.6, alpha=0.35)
                mean = runs.groupby("n")[metric].mean()
                ax.plot(mean.index, mean.to_numpy(), color=colour, ls=style, lw=2,
                        label=f"{METHOD_LABELS.get(method, method)} ({runs['repeat'].nunique()} runs)")
            ax.axhline(prevalence.get(experiment, np.nan), color="tab:red", ls=":", lw=1.5,
                       label="random expectation")
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("N (top-ranked galaxies)")
            ax.set_ylabel("rank weighted score" if metric == "rws" else "accuracy (top N)")
            if row == 0:
                ax.set_title(experiment)
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    ncol = max(1, min(len(labels), 2 * len(experiments)))
    rows = -(-len(labels) // ncol)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.035 * rows + 0.01, 1, 0.96 if title else 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def project_2d(features: np.ndarray, method: str = "umap", neighbours: int = 15, seed: int = 0) -> np.ndarray:
    """2-D map of standardised features: UMAP (as the paper) or the first two principal
    components (a fast stand-in for test-sized runs)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    X = StandardScaler().fit_transform(np.asarray(features, np.float64))
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(X)
    if method == "umap":
        import umap

        reducer = umap.UMAP(n_neighbors=min(neighbours, len(X) - 1), random_state=seed, n_jobs=1)
        return reducer.fit_transform(X)
    raise ValueError(f"unknown projection {method!r}")


def map_panel(ax, xy, colour, is_anomaly, rated, title, colour_label):
    order = np.argsort(colour)  # high values drawn last
    sc = ax.scatter(xy[order, 0], xy[order, 1], c=np.asarray(colour)[order], cmap="coolwarm", s=6, alpha=0.6,
                    linewidths=0)
    ax.scatter(xy[is_anomaly, 0], xy[is_anomaly, 1], c="red", s=10, label="anomalies")
    ax.scatter(xy[rated, 0], xy[rated, 1], c="black", s=10, marker="x", linewidths=0.8, label="rated by the user")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    plt.colorbar(sc, ax=ax, label=colour_label, shrink=0.8)


def map_figure(panels: list[dict], path, title: str = "") -> None:
    """Side-by-side maps; each panel: xy, colour, is_anomaly, rated, title, colour_label."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 5.4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        map_panel(ax, **panel)
    axes[0, 0].legend(loc="lower left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def top_figure(rows: list[dict], path, title: str = "") -> None:
    """One row per experiment of colour thumbnails; each row: name, thumbnails (k, t, t, 3),
    captions (k,), is_anomaly (k,). Anomalies get a green frame, the others a grey one."""
    n_cols = max(len(r["thumbnails"]) for r in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.6 * n_cols, 1.9 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row["thumbnails"]):
                ax.axis("off")
                continue
            ax.imshow(row["thumbnails"][c])
            colour = "limegreen" if row["is_anomaly"][c] else "grey"
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3)
            ax.set_title(row["captions"][c], fontsize=7)
            if c == 0:
                ax.set_ylabel(row["name"], fontsize=10)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
