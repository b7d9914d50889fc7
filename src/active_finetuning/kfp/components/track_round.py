from kfp import dsl

from ..image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def track_round(selection: dsl.Input[dsl.Dataset], labels: dsl.Input[dsl.Dataset], summary: str, model_name: str,
                recipe: dict, mlflow_tracking_uri: str, mlflow_experiment: str, labels_folder_uri: str = "") -> str:
    """Log one round of the labeling loop as an MLflow run: the labels bought so far and the score of
    the model trained on them (logging only; every number comes from upstream steps).

    Args:
        selection: The selection that was annotated.
        labels: The round's imported labels.
        summary: The evaluation summary (JSON) from ``evaluate``.
        model_name: The finetuned timm model.
        recipe: The finetuning recipe overrides.
        mlflow_tracking_uri: The MLflow server; empty: ``MLFLOW_TRACKING_URI`` if set, else nothing is logged.
        mlflow_experiment: The loop's experiment.
        labels_folder_uri: The folder of every round's labels (their union is the labeled set so far).

    Returns:
        The MLflow run id ("" when nothing was logged).
    """
    import json
    import os

    from active_finetuning.data.artifacts import read_sample_id_union
    from active_finetuning.study.rounds import log_round

    if not (mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")):
        return ""
    total = len(read_sample_id_union(labels_folder_uri, "labels")) if labels_folder_uri else None
    return log_round(mlflow_experiment, mlflow_tracking_uri or None, selection.path, labels.path, json.loads(summary),
                     {"model": model_name, "recipe": recipe}, labeled_total=total)
