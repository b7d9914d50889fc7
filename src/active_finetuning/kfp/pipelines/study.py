"""The budget-study pipeline: which selection method, at which labeling budget, gives the best model.

    manifests ─► extract features (ParallelFor over shards) ─► merge ─┐
    grid of method × budget × seed ─► ParallelFor: select ─► oracle labels ─► probe, or finetune ─► evaluate
                                                                    ─► child MLflow run ─► (Collected) report
"""

from typing import List

from kfp import dsl

from ..components import (
    build_manifest,
    diagnose,
    evaluate,
    extract_features,
    finetune,
    oracle_labels,
    plan_grid,
    probe,
    report,
    select,
    start_study,
    track_cell,
)

from ..placement import place
from .features import sharded_features

PIPELINE_NAME = "active-finetuning"
CELL_PARALLELISM = 8  # cells that run at once on a cluster


@dsl.pipeline(name=PIPELINE_NAME,
              description="One-shot active selection (ActiveFT, BiLAF, baselines) compared across labeling "
                          "budgets: extract features, select, label, probe or finetune, report in MLflow.")
def active_finetuning_pipeline(
    manifest_uri: str,
    test_manifest_uri: str,
    model_name: str = "tf_efficientnet_lite0",
    weights_uri: str = "",
    methods: List[str] = ["random", "kmeans", "activeft", "bilaf"],
    budgets: List[str] = ["1%", "2%"],
    seeds: List[int] = [0, 1, 2],
    evaluation: str = "probe",
    mlflow_experiment: str = "active-finetuning",
    mlflow_tracking_uri: str = "",
    num_shards: int = 2,
    image_size: int = 0,
    batch_size: int = 64,
    method_params: dict = {},
    probe_params: dict = {},
    recipe: dict = {},
    results_uri: str = "",
) -> str:
    """Compare selection methods across labeling budgets (mean ± std over seeds) and report in MLflow.

    Args:
        manifest_uri: The pool: a Parquet manifest, an image folder or a CSV/JSONL list (local or gs://).
        test_manifest_uri: The labeled test set, in the same forms.
        model_name: The timm model used for features and finetuning.
        weights_uri: Its pretrained weights (.safetensors/.pth, local or gs://); empty: none.
        methods: Selection methods to compare.
        budgets: Labeling budgets: counts ("500") or percentages of the pool ("1%").
        seeds: Seeds; every method × budget runs once per seed.
        evaluation: "probe" (linear probe + kNN on features, fast) or "finetune" (finetune, then evaluate).
        mlflow_experiment: The MLflow experiment of the parent and child runs.
        mlflow_tracking_uri: The MLflow tracking server; empty: MLFLOW_TRACKING_URI of the pods.
        num_shards: Parallel feature-extraction tasks.
        image_size: Input size for extraction; 0: the model's own.
        batch_size: Images per forward pass.
        method_params: Per-method selection parameters, e.g. {"activeft": {"iterations": 100}}.
        probe_params: Probe settings, e.g. {"C": 0.5}.
        recipe: Finetuning recipe overrides, e.g. {"epochs": 30}.
        results_uri: A folder that also receives the report's table, plot and rows; empty: none.

    Returns:
        The accuracy table (Markdown) of the report.
    """
    study = place(start_study(
        experiment=mlflow_experiment, tracking_uri=mlflow_tracking_uri, kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        manifest_uri=manifest_uri, test_manifest_uri=test_manifest_uri, model_name=model_name,
        weights_uri=weights_uri, methods=methods, budgets=budgets, seeds=seeds, evaluation=evaluation,
        method_params=method_params, probe_params=probe_params, recipe=recipe))
    grid = place(plan_grid(methods=methods, budgets=budgets, seeds=seeds, evaluation=evaluation))
    pool = place(build_manifest(source_uri=manifest_uri)).set_display_name("build-manifest (pool)")
    test = place(build_manifest(source_uri=test_manifest_uri)).set_display_name("build-manifest (test)")

    features = sharded_features(pool.outputs["manifest"], model_name, weights_uri, num_shards, image_size,
                                batch_size)
    test_features = place(extract_features(manifest=test.outputs["manifest"], model_name=model_name,
                                           weights_uri=weights_uri, shard_index=0, num_shards=1,
                                           image_size=image_size, batch_size=batch_size))
    test_features.set_display_name("extract-features (test)")

    # Inside the loop every value from an upstream task is an artifact or a loop item: kfp.local
    # replaces task-output *parameters* there with the loop item (docs/design.md, "Kubeflow Pipelines").
    with dsl.ParallelFor(items=grid.output, parallelism=CELL_PARALLELISM, name="cells") as cell:
        selection = place(select(features=features.outputs["features"], method=cell.method, budget=cell.budget,
                                 seed=cell.seed, method_params=method_params))
        diagnosed = place(diagnose(features=features.outputs["features"], selection=selection.outputs["selection"],
                                   seed=cell.seed))
        labels = place(oracle_labels(manifest=pool.outputs["manifest"], selection=selection.outputs["selection"]))
        with dsl.If(evaluation == "probe", name="probe"):
            probed = place(probe(features=features.outputs["features"], selection=selection.outputs["selection"],
                                 labels=labels.outputs["labels"], test_features=test_features.outputs["features"],
                                 probe_params=probe_params))
        with dsl.Else(name="finetune"):
            model = place(finetune(manifest=pool.outputs["manifest"], labels=labels.outputs["labels"],
                                   model_name=model_name, weights_uri=weights_uri, recipe=recipe))
            scored = place(evaluate(model=model.outputs["model"], test_manifest=test.outputs["manifest"],
                                    batch_size=batch_size))
        # The evaluation summary travels as a JSON parameter, not an artifact: kfp.local (kfp 2.17)
        # fails a dsl.OneOf over artifacts inside a ParallelFor ("Expected 1 artifact in
        # ArtifactSelectorSpec. Got: 2"); every number in it is also in the probe/evaluate report.
        tracked = place(track_cell(study=study.outputs["study"], selection=selection.outputs["selection"],
                                   diagnostics=diagnosed.outputs["report"], plot=diagnosed.outputs["plot"], cell=cell,
                                   summary=dsl.OneOf(probed.outputs["Output"], scored.outputs["Output"]),
                                   evaluation=evaluation, probe_params=probe_params, recipe=recipe))
    reported = place(report(study=study.outputs["study"], rows=dsl.Collected(tracked.output),
                            results_uri=results_uri))
    return reported.outputs["Output"]
