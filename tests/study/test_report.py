"""The study's table and figures."""


import numpy as np
import pytest

from tests.conftest import gaussian_mixture


def _rows():
    rows = []
    for method, base in (("activeft", 0.70), ("random", 0.60)):
        for count, budget in ((50, "1%"), (100, "2%")):
            for seed, noise in enumerate((-0.02, 0.0, 0.02)):
                rows.append({"method": method, "budget": budget, "budget_count": count, "seed": seed,
                             "accuracy": base + count / 1000 + noise})
    return rows


def test_accuracy_table_is_mean_and_std_over_seeds():
    from active_finetuning.study.report import accuracy_table, markdown_table

    table = accuracy_table(_rows())
    row = table[(table.method == "activeft") & (table.budget_count == 100)].iloc[0]
    assert row["mean"] == pytest.approx(0.80) and row["std"] == pytest.approx(0.02) and row["seeds"] == 3
    markdown = markdown_table(table)
    assert "| activeft | 75.00 ± 2.00 | 80.00 ± 2.00 |" in markdown
    assert "| method | 1% (50) | 2% (100) |" in markdown
    assert "mean ± std over 3 seeds" in markdown


def test_figures(tmp_path):
    from active_finetuning.data.artifacts import FeatureTable, Selection
    from active_finetuning.study.report import (
        accuracy_figure,
        accuracy_table,
        selection_figure,
    )

    table = accuracy_table(_rows())
    figure = accuracy_figure(table)
    figure.savefig(tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    ticks = figure.axes[0].get_xticks()
    assert list(ticks) == sorted(table["budget_count"].unique())  # the budgets, whole counts, no fractions
    features, labels = gaussian_mixture(200, 8, 4)
    pool = FeatureTable.from_array(features, labels=labels)
    rows = np.array([3, 50, 77, 120])
    selection = Selection(rows, pool.sample_ids[rows], np.array(["core", "core", "boundary", "boundary"]))
    pool.metadata["classes"] = ["ant", "bee", "cat", "dog"]
    figure = selection_figure(pool, selection, title="bilaf")
    axis = figure.axes[0]
    legends = [[t.get_text() for t in child.get_texts()] for child in axis.get_children()
               if type(child).__name__ == "Legend"]
    assert ["pool (200)", "core (2)", "boundary (2)"] in legends and ["ant", "bee", "cat", "dog"] in legends
    assert axis.get_xlabel() == "principal component 1" and axis.get_ylabel() == "principal component 2"


def test_pca_of_the_selection_plot_matches_exact_pca():
    from active_finetuning.study.report import pca_2d

    features, _ = gaussian_mixture(2000, 32, 6)
    projected = pca_2d(features)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    centred = unit - unit.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    exact = centred @ vectors[:, ::-1][:, :2]
    for i in range(2):
        assert abs(np.corrcoef(exact[:, i], projected[:, i])[0, 1]) > 0.999


def test_the_html_page_holds_the_table_and_the_plot():
    import base64

    from active_finetuning.study.report import html_page

    markdown = "Top-1 accuracy (%), one seed.\n\n| method | 8 |\n| --- | ---: |\n| kcenter | 41.00 |\n| <b> | 1 |\n"
    page = html_page(markdown, b"\x89PNG-bytes")
    assert "<th>method</th><th>8</th>" in page and "<td>kcenter</td><td>41.00</td>" in page
    assert "<td>&lt;b&gt;</td>" in page  # escaped
    assert base64.b64encode(b"\x89PNG-bytes").decode() in page and "---" not in page
