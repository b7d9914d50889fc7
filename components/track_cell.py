from kfp import dsl

from ._image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def track_cell(study: dsl.Input[dsl.Artifact], features: dsl.Input[dsl.Dataset],
               selection: dsl.Input[dsl.Dataset], cell: dict, summary: str, evaluation: str,
               probe_params: dict, recipe: dict) -> str:
    """Log one method × budget × seed cell as a child MLflow run of the study.

    Args:
        study: The parent run's reference.
        features: The pool's features (for the 2-D selection plot).
        selection: The cell's selection artifact (logged as is).
        cell: ``{"method", "budget", "seed"}``.
        summary: The evaluation summary (JSON) from ``probe`` or ``evaluate``.
        evaluation: ``probe`` or ``finetune``.
        probe_params: The probe settings (logged when ``evaluation`` is ``probe``).
        recipe: The finetuning recipe overrides (logged when ``evaluation`` is ``finetune``).

    Returns:
        The cell's row for the study's table (JSON).
    """
    import json

    from active_finetuning.study import StudyRef, log_cell

    params = {"evaluation": evaluation,
              **({"probe": probe_params} if evaluation == "probe" else {"recipe": recipe})}
    row = log_cell(StudyRef.read(study.path), cell, selection.path, json.loads(summary), params,
                   features_uri=features.path)
    return json.dumps(row)
