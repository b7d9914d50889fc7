"""A study's report: the accuracy table (mean ± std over seeds), its Markdown, the accuracy-vs-budget
figure, and a selection drawn on the pool's principal plane.

Figures are matplotlib figures (Agg backend); the caller saves or logs them and closes them.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import InputError
from ..seeding import numpy_generator

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


def accuracy_figure(table, axis=None, title: str = "accuracy vs labeling budget"):
    """Mean top-1 accuracy against labeled samples, one line per method, ±1 std as a band; on a
    new figure, or on ``axis`` of the caller's (which then owns the figure)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.4, 4.2)) if axis is None else (axis.figure, axis)
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
    axis.set_xticks(counts, [f"{int(c):,}" for c in counts])  # the budgets themselves: whole sample counts
    axis.minorticks_off()
    axis.set_xlabel("labeled samples (budget)")
    axis.set_ylabel("top-1 accuracy (%)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return figure


def pca_2d(features: np.ndarray, max_fit: int = 20000, seed: int = 0) -> np.ndarray:
    """Rows (L2-normalised) projected on their first two principal components (scikit-learn's
    randomized PCA, fitted on at most ``max_fit`` rows)."""
    from sklearn.decomposition import PCA

    unit = features.astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    fit = unit if len(unit) <= max_fit else unit[numpy_generator(seed).choice(len(unit), max_fit, replace=False)]
    pca = PCA(n_components=2, svd_solver="randomized", random_state=seed).fit(fit)
    return pca.transform(unit).astype(np.float32)


def selection_figure(pool, selection, title: str = "", max_points: int = 20000, seed: int = 0,
                     labeled_rows: np.ndarray | None = None):
    """The pool in 2-D (PCA of L2-normalised features) with the selected samples marked by role and
    the already-labeled ones (``labeled_rows``) as crosses.

    ``selection.indices`` must be pool rows (``read_selection(uri, pool)``). Pool points are coloured
    by label when the pool has labels.
    """
    plt = _pyplot()
    xy = pca_2d(pool.features, seed=seed)
    shown = np.arange(len(xy))
    if len(shown) > max_points:
        shown = numpy_generator(seed).choice(len(xy), max_points, replace=False)
    figure, axis = plt.subplots(figsize=(6, 6))
    colours = pool.labels[shown] if pool.labels is not None else "lightgray"
    size = float(np.clip(4000 / len(shown), 4, 24))
    axis.scatter(xy[shown, 0], xy[shown, 1], s=size, c=colours, cmap="tab10" if pool.labels is not None else None,
                 alpha=0.35, linewidths=0, label=f"pool ({len(xy)})")
    if labeled_rows is not None and len(labeled_rows):
        axis.scatter(xy[labeled_rows, 0], xy[labeled_rows, 1], s=18, c="black", marker="x",
                     label=f"labeled ({len(labeled_rows)})")
    roles = np.asarray(selection.role).astype(str)
    for role, style in ROLE_STYLE.items():
        rows = selection.indices[roles == role]
        if len(rows):
            axis.scatter(xy[rows, 0], xy[rows, 1], edgecolors="black", linewidths=0.5,
                         **{**style, "label": f"{style['label']} ({len(rows)})"})
    axis.set_title(title or "selection on the pool (PCA)")
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_xlabel("principal component 1")
    axis.set_ylabel("principal component 2")
    first = axis.legend(loc="upper right", fontsize=8)
    if pool.labels is not None:  # a second legend: the pool's colours are its classes
        from matplotlib.lines import Line2D

        names = list(pool.metadata.get("classes") or [])
        cmap = plt.get_cmap("tab10")
        present = np.unique(pool.labels[shown])[:10]
        norm = plt.Normalize(vmin=pool.labels[shown].min(), vmax=max(pool.labels[shown].max(), 1))
        handles = [Line2D([], [], marker="o", linestyle="", color=cmap(norm(c)),
                          label=names[c] if c < len(names) else str(c)) for c in present]
        axis.add_artist(first)
        axis.legend(handles=handles, loc="lower right", fontsize=7, title="class", title_fontsize=7)
    figure.tight_layout()
    return figure


def accuracy_table(rows: Iterable[Mapping[str, Any]]):
    """A DataFrame, one row per method × budget: mean and std of accuracy over seeds, seed count."""
    import pandas as pd

    frame = pd.DataFrame(list(rows))
    if frame.empty:
        raise InputError("the study has no results; every cell failed or the grid was empty")
    grouped = frame.groupby(["method", "budget_count"], sort=True)["accuracy"]
    table = grouped.agg(mean="mean", std=lambda s: float(s.std(ddof=1)) if len(s) > 1 else 0.0,
                        seeds="count").reset_index()
    budgets = frame.drop_duplicates("budget_count").set_index("budget_count")["budget"]
    table.insert(2, "budget", table["budget_count"].map(budgets))
    return table


def markdown_table(table) -> str:
    """Accuracy (%) as mean ± std, methods as rows and budgets as columns."""
    counts = sorted(table["budget_count"].unique())
    label = {c: table.loc[table["budget_count"] == c, "budget"].iloc[0] for c in counts}
    header = "| method | " + " | ".join(
        f"{label[c]} ({c})" if str(label[c]) != str(c) else str(c) for c in counts) + " |"
    lines = [header, "| --- |" + " ---: |" * len(counts)]
    for method, group in table.groupby("method", sort=True):
        cells = []
        for count in counts:
            hit = group[group["budget_count"] == count]
            if hit.empty:
                cells.append("–")
            else:
                row = hit.iloc[0]
                fewer = f" (n={int(row['seeds'])})" if row["seeds"] < table["seeds"].max() else ""
                spread = f" ± {100 * row['std']:.2f}" if table["seeds"].max() > 1 else ""  # no spread of one
                cells.append(f"{100 * row['mean']:.2f}{spread}{fewer}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    seeds = int(table["seeds"].max())
    over = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
    return f"Top-1 accuracy (%) by method and labeling budget (samples), {over}.\n\n" + "\n".join(lines) + "\n"


def html_page(markdown: str, png: bytes) -> str:
    """The study's Markdown table and its PNG plot as one self-contained HTML page (the KFP UI shows
    HTML outputs inline; the image is a ``data:`` URL, so the page needs nothing else)."""
    import base64
    import html

    lines = [line for line in markdown.splitlines() if line.strip()]
    caption = html.escape(lines[0]) if lines and not lines[0].startswith("|") else ""
    rows = [[html.escape(cell.strip()) for cell in line.strip().strip("|").split("|")]
            for line in lines if line.startswith("|") and not set(line) <= set("|-: ")]
    head = "".join(f"<th>{cell}</th>" for cell in rows[0]) if rows else ""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows[1:])
    image = base64.b64encode(png).decode()
    return (f"<html><body><p>{caption}</p><table border=\"1\"><thead><tr>{head}</tr></thead><tbody>{body}"
            f"</tbody></table><p><img alt=\"accuracy against budget\" src=\"data:image/png;base64,{image}\"></p>"
            "</body></html>\n")
