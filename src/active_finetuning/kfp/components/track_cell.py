from kfp import dsl

from ..image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def track_cell(study: dsl.Input[dsl.Artifact], selection: dsl.Input[dsl.Dataset], diagnostics: dsl.Input[dsl.Artifact],
               plot: dsl.Input[dsl.Artifact], cell: dict, summary: str, evaluation: str, probe_params: dict,
               recipe: dict) -> str:
    """Log one method × budget × seed cell as a child MLflow run of the study (logging only: every
    number was computed by an upstream, cached step, so a retry recomputes nothing).

    Args:
        study: The parent run's reference.
        selection: The cell's selection artifact (logged as is).
        diagnostics: The selection's label-free diagnostics (JSON, from ``diagnose``).
        plot: The selection's PCA plot (PNG, from ``diagnose``).
        cell: ``{"method", "budget", "seed"}``.
        summary: The evaluation summary (JSON) from ``probe`` or ``evaluate``.
        evaluation: ``probe`` or ``finetune``.
        probe_params: The probe settings (logged when ``evaluation`` is ``probe``).
        recipe: The finetuning recipe overrides (logged when ``evaluation`` is ``finetune``).

    Returns:
        The cell's row for the study's table (JSON).
    """
    import json

    from active_finetuning.study.cells import StudyRef, log_cell

    params = {"evaluation": evaluation,
              **({"probe": probe_params} if evaluation == "probe" else {"recipe": recipe})}
    row = log_cell(StudyRef.read(study.path), cell, selection.path, json.loads(summary), params,
                   diagnostics_uri=diagnostics.path, plot_uri=plot.path)
    return json.dumps(row)
