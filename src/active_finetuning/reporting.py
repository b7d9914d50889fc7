"""Figures of a study: accuracy against budget per method, and a selection drawn on the pool.

Both return matplotlib figures (Agg backend); the caller saves or logs them and closes them.
"""

from __future__ import annotations

import numpy as np

ROLE_STYLE = {  # BiLAF paper Fig. 4: cores and boundary samples drawn apart
    "core": dict(marker="*", s=90, c="tab:red", label="core"),
    "boundary": dict(marker="^", s=30, c="tab:orange", label="boundary"),
    "pick": dict(marker="o", s=24, c="tab:red", label="selected"),
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def accuracy_figure(table):
    """Mean top-1 accuracy against labeled samples, one line per method, ±1 std as a band."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for method, group in table.groupby("method", sort=True):
        group = group.sort_values("budget_count")
        x = group["budget_count"].to_numpy()
        mean = 100 * group["mean"].to_numpy()
        std = 100 * group["std"].to_numpy()
        axis.plot(x, mean, marker="o", label=method)
        axis.fill_between(x, mean - std, mean + std, alpha=0.15)
    counts = sorted(table["budget_count"].unique())
    if len(counts) > 1 and counts[-1] / max(counts[0], 1) >= 8:
        axis.set_xscale("log")
    axis.set_xlabel("labeled samples (budget)")
    axis.set_ylabel("top-1 accuracy (%)")
    axis.set_title("accuracy vs labeling budget")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return figure


def pca_2d(features: np.ndarray, max_fit: int = 20000, seed: int = 0) -> np.ndarray:
    """Rows (L2-normalised) projected on their first two principal components.

    A randomized range finder with power iterations (Halko et al. 2011) on at most ``max_fit`` rows:
    O(N·d) work, where a full SVD of a 4,000 × 1,280 pool takes a minute on two cores.
    """
    rng = np.random.default_rng(seed)
    unit = features.astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    fit = unit if len(unit) <= max_fit else unit[rng.choice(len(unit), max_fit, replace=False)]
    mean = fit.mean(axis=0)
    centred = fit - mean
    rank = min(10, *centred.shape)
    basis = np.linalg.qr(centred @ rng.standard_normal((centred.shape[1], rank)))[0]
    for _ in range(4):
        basis = np.linalg.qr(centred @ (centred.T @ basis))[0]
    _, _, components = np.linalg.svd(basis.T @ centred, full_matrices=False)
    return ((unit - mean) @ components[:2].T).astype(np.float32)


def selection_figure(pool, selection, title: str = "", max_points: int = 20000, seed: int = 0):
    """The pool in 2-D (PCA of L2-normalised features) with the selected samples marked by role.

    ``selection.indices`` must be pool rows (``read_selection(uri, pool)``). Pool points are coloured
    by label when the pool has labels.
    """
    plt = _pyplot()
    xy = pca_2d(pool.features, seed=seed)
    shown = np.arange(len(xy))
    if len(shown) > max_points:
        shown = np.random.default_rng(seed).choice(len(xy), max_points, replace=False)
    figure, axis = plt.subplots(figsize=(6, 6))
    colours = pool.labels[shown] if pool.labels is not None else "lightgray"
    size = float(np.clip(4000 / len(shown), 4, 24))
    axis.scatter(xy[shown, 0], xy[shown, 1], s=size, c=colours, cmap="tab10" if pool.labels is not None else None,
                 alpha=0.35, linewidths=0)
    roles = np.asarray(selection.role).astype(str)
    for role, style in ROLE_STYLE.items():
        rows = selection.indices[roles == role]
        if len(rows):
            axis.scatter(xy[rows, 0], xy[rows, 1], edgecolors="black", linewidths=0.5,
                         **{**style, "label": f"{style['label']} ({len(rows)})"})
    axis.set_title(title or "selection on the pool (PCA)")
    axis.set_xticks([])
    axis.set_yticks([])
    axis.legend(loc="best", fontsize=8)
    figure.tight_layout()
    return figure
