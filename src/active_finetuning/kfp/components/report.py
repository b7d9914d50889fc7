from typing import List

from kfp import dsl

from ..image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def report(study: dsl.Input[dsl.Artifact], rows: List[str], results_uri: str,
           table: dsl.Output[dsl.Markdown], plot: dsl.Output[dsl.Artifact], page: dsl.Output[dsl.HTML]) -> str:
    """Compare budgets: accuracy by method × budget (mean ± std over seeds) and accuracy vs budget.

    Both go on the study's parent MLflow run and into the pipeline's outputs.

    Args:
        study: The parent run's reference.
        rows: Every cell's row (collected from the cells).
        results_uri: A folder (local or ``gs://``) that also receives the table, the plot and the
            rows as Parquet; empty: none.
        table: The accuracy table (Markdown).
        plot: Accuracy against budget per method (PNG).
        page: The table and the plot on one page, shown in the KFP run page (HTML).

    Returns:
        The Markdown table.
    """
    import json

    from pathlib import Path

    from active_finetuning.study.cells import StudyRef, finish_study
    from active_finetuning.study.report import html_page

    markdown = finish_study(StudyRef.read(study.path), [json.loads(r) for r in rows], table.path, plot.path,
                            results_uri=results_uri or None)
    plot.metadata["format"] = "png"
    Path(page.path).write_text(html_page(markdown, Path(plot.path).read_bytes()))
    return markdown
