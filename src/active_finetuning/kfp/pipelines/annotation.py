"""The annotation loop, for real labels instead of the study's oracle: two pipelines around the
annotation tool.

    select_for_annotation:  build-manifest ─► extract-features (shards) ─► merge ─► select ─► export-for-annotation
    (people annotate the exported tasks in Label Studio, or fill the CSV)
    train_on_annotations:   build-manifest ─► import-labels ─► finetune ─► evaluate ─► track-round (MLflow)

Run nightly on a growing pool, the loop keeps its state in two places the user names:
``features_cache_uri`` (the latest features: the next run extracts only new and changed images)
and ``labels_folder_uri`` (every round's labels: the next selection complements them).
"""


from kfp import dsl

from ..components import (
    build_manifest,
    evaluate,
    export_for_annotation,
    finetune,
    import_labels,
    track_round,
    select,
)

from ..placement import place
from .features import sharded_features


@dsl.pipeline(name="active-finetuning-select-for-annotation",
              description="Select a budget of samples to label and export them as annotation tasks.")
def select_for_annotation_pipeline(
    manifest_uri: str,
    budget: str,
    method: str = "activeft",
    seed: int = 0,
    model_name: str = "tf_efficientnet_lite0",
    weights_uri: str = "",
    num_shards: int = 2,
    image_size: int = 0,
    batch_size: int = 64,
    method_params: dict = {},
    annotation_format: str = "label-studio",
    signed_urls: bool = False,
    features_cache_uri: str = "",
    labeled_uri: str = "",
    label_studio_url: str = "",
    label_studio_project: int = 0,
) -> dsl.Dataset:
    """Extract features, select ``budget`` samples with ``method``, export them for annotation.

    Args:
        manifest_uri: The pool: a Parquet manifest, an image folder or a CSV/JSONL list (local or gs://).
        budget: A sample count ("500") or a percentage of the pool ("1%").
        method: The selection method (default ActiveFT: at or near the top on every check we ran; README, "Which method").
        seed: The selection seed.
        model_name: The timm model for the features.
        weights_uri: Its pretrained weights; empty: none.
        num_shards: Parallel feature-extraction tasks.
        image_size: Input size for extraction; 0: the model's own.
        batch_size: Images per forward pass.
        method_params: Per-method selection parameters, e.g. {"bilaf": {"num_cores": 250}}.
        annotation_format: "label-studio" (JSON task import) or "csv".
        signed_urls: Give gs:// images as signed HTTPS URLs in the tasks.
        features_cache_uri: A features file kept between runs: rows of unchanged images are re-used
            from it, and the new features are written back to it; empty: extract every image.
        labeled_uri: Samples already labeled (a labels artifact, or the folder train_on_annotations
            keeps every round's labels in): never selected again; empty: none.
        label_studio_url: A Label Studio server to push the tasks to (the API key from the
            ``label-studio`` secret); empty: the tasks file only.
        label_studio_project: The project the tasks go to.

    Returns:
        The selection (give its URI to train_on_annotations).
    """
    pool = place(build_manifest(source_uri=manifest_uri))
    features = sharded_features(pool.outputs["manifest"], model_name, weights_uri, num_shards, image_size,
                                batch_size, previous_features_uri=features_cache_uri, publish_uri=features_cache_uri)
    selection = place(select(features=features.outputs["features"], method=method, budget=budget, seed=seed,
                             method_params=method_params, labeled_uri=labeled_uri))
    # the loop's state lives outside the artifacts: writing the features cache and reading the labels
    # folder are not a cache key's business, so these two steps always run
    features.set_caching_options(enable_caching=False)
    selection.set_caching_options(enable_caching=False)
    place(export_for_annotation(manifest=pool.outputs["manifest"], selection=selection.outputs["selection"],
                                annotation_format=annotation_format, signed_urls=signed_urls,
                                label_studio_url=label_studio_url, label_studio_project=label_studio_project))
    return selection.outputs["selection"]


@dsl.pipeline(name="active-finetuning-train-on-annotations",
              description="Import the annotations of a selection, finetune the model on them, evaluate it.")
def train_on_annotations_pipeline(
    manifest_uri: str,
    test_manifest_uri: str,
    selection_uri: str,
    annotations_uri: str = "",
    model_name: str = "tf_efficientnet_lite0",
    weights_uri: str = "",
    recipe: dict = {},
    batch_size: int = 64,
    annotations_format: str = "auto",
    label_format: str = "auto",
    allow_partial: bool = False,
    labels_folder_uri: str = "",
    label_studio_url: str = "",
    label_studio_project: int = 0,
    mlflow_tracking_uri: str = "",
    mlflow_experiment: str = "labeling-loop",
) -> str:
    """Turn the annotation tool's export into labels, finetune on them, score on the test set.

    Args:
        manifest_uri: The pool the selection was made from.
        test_manifest_uri: The labeled test set.
        selection_uri: The selection artifact that was annotated (select_for_annotation's output).
        annotations_uri: The annotation export (Label Studio JSON, or CSV sample_id,label); with
            label_studio_url, where the pulled export is written (empty: beside the labels).
        model_name: The timm model to finetune.
        weights_uri: Its pretrained weights; empty: none.
        recipe: Finetuning recipe overrides, e.g. {"epochs": 30}.
        batch_size: Images per forward pass when evaluating.
        annotations_format: "auto", "label-studio" or "csv".
        label_format: "auto", "index" or "name": whether labels are class indices or class names.
        allow_partial: Accept an export that lacks some selected samples.
        labels_folder_uri: A folder keeping every round's labels (give it as select_for_annotation's
            labeled_uri); empty: none.
        label_studio_url: A Label Studio server to pull the annotated tasks from (the API key from
            the ``label-studio`` secret); empty: read annotations_uri.
        label_studio_project: The project to pull.
        mlflow_tracking_uri: The MLflow server that records each round (labels so far, accuracy);
            empty: MLFLOW_TRACKING_URI if the pods have it, else no tracking.
        mlflow_experiment: The loop's MLflow experiment.

    Returns:
        The evaluation summary (JSON).
    """
    pool = place(build_manifest(source_uri=manifest_uri))
    test = place(build_manifest(source_uri=test_manifest_uri))
    selection = dsl.importer(artifact_uri=selection_uri, artifact_class=dsl.Dataset, reimport=False)
    labels = place(import_labels(annotations_uri=annotations_uri, manifest=pool.outputs["manifest"],
                                 selection=selection.output, annotations_format=annotations_format, label_format=label_format,
                                 allow_partial=allow_partial, labels_folder_uri=labels_folder_uri,
                                 label_studio_url=label_studio_url, label_studio_project=label_studio_project))
    labels.set_caching_options(enable_caching=False)  # it writes the loop's labels folder
    model = place(finetune(manifest=pool.outputs["manifest"], labels=labels.outputs["labels"],
                           model_name=model_name, weights_uri=weights_uri, recipe=recipe))
    scored = place(evaluate(model=model.outputs["model"], test_manifest=test.outputs["manifest"],
                            batch_size=batch_size))
    place(track_round(selection=selection.output, labels=labels.outputs["labels"], summary=scored.outputs["Output"],
                      model_name=model_name, recipe=recipe, mlflow_tracking_uri=mlflow_tracking_uri,
                      mlflow_experiment=mlflow_experiment, labels_folder_uri=labels_folder_uri))
    return scored.outputs["Output"]
