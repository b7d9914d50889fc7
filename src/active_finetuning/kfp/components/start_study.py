from typing import List

from kfp import dsl

from ..image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def start_study(experiment: str, tracking_uri: str, kfp_run_id: str, manifest_uri: str, test_manifest_uri: str,
                model_name: str, weights_uri: str, methods: List[str], budgets: List[str], seeds: List[int],
                evaluation: str, method_params: dict, probe_params: dict, recipe: dict,
                study: dsl.Output[dsl.Artifact]):
    """Open the study's parent MLflow run (the study's parameters on it); each cell logs a child run.

    Args:
        experiment: The MLflow experiment name.
        tracking_uri: The MLflow tracking URI; empty uses ``MLFLOW_TRACKING_URI`` (or a local store).
        kfp_run_id: The KFP run id, recorded as a tag.
        manifest_uri: The pool's source (logged).
        test_manifest_uri: The test set's source (logged).
        model_name: The timm model (logged).
        weights_uri: The pretrained weights (logged).
        methods: The study's methods (logged).
        budgets: The study's budgets (logged).
        seeds: The study's seeds (logged).
        evaluation: ``probe`` or ``finetune`` (logged).
        method_params: Per-method selection parameters (logged).
        probe_params: Probe settings (logged).
        recipe: Finetuning recipe overrides (logged).
        study: The parent run's reference (JSON), read by the cells and the report.
    """
    from active_finetuning.study.cells import start_study as start
    from active_finetuning.study.plan import plan_grid

    plan_grid(methods, budgets, seeds)  # fail before opening a run
    params = {"manifest_uri": manifest_uri, "test_manifest_uri": test_manifest_uri, "model_name": model_name,
              "weights_uri": weights_uri, "methods": methods, "budgets": budgets, "seeds": seeds,
              "evaluation": evaluation, "method_params": method_params, "probe_params": probe_params,
              "recipe": recipe}
    ref = start(experiment, params, tracking_uri=tracking_uri or None, kfp_run_id=kfp_run_id)
    ref.write(study.path)
    study.metadata.update({"mlflow_run_id": ref.run_id, "tracking_uri": ref.tracking_uri})
