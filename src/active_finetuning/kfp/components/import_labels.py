from kfp import dsl

from ..image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def import_labels(annotations_uri: str, manifest: dsl.Input[dsl.Dataset], selection: dsl.Input[dsl.Dataset],
                  labels: dsl.Output[dsl.Dataset], annotations_format: str = "auto", allow_partial: bool = False,
                  label_format: str = "auto", labels_folder_uri: str = "", label_studio_url: str = "",
                  label_studio_project: int = 0):
    """Turn an annotation tool's export into the labels artifact, checked against the selection.

    Args:
        annotations_uri: A Label Studio export (JSON) or a CSV ``sample_id,label`` (index or class name);
            with ``label_studio_url``, where the pulled export is written (empty: nowhere).
        manifest: The pool's manifest artifact (its class names map names to indices).
        selection: The selection that was sent for annotation.
        labels: The labels artifact (``sample_id``, ``label``).
        annotations_format: ``auto``, ``label-studio`` or ``csv``.
        label_format: ``auto``, ``index`` or ``name``: whether labels are class indices or names (``auto``
            refuses a file where a number could be either, e.g. class folders named 1, 2, 10).
        allow_partial: Accept an export that lacks some selected samples.
        labels_folder_uri: A folder that keeps every round's labels (the labeling loop's): a copy is
            written there, named by the selection; the next selection never picks these samples again.
        label_studio_url: A Label Studio server to pull the annotated tasks from; empty: read ``annotations_uri``.
        label_studio_project: The project there (the API key comes from ``LABEL_STUDIO_API_KEY``, a secret).
    """
    from active_finetuning.data.artifacts import read_selection
    from active_finetuning.data.manifest import read_manifest
    from active_finetuning.labels import import_labels as load
    from active_finetuning.labels import write_labels

    annotated = read_selection(selection.path)
    if label_studio_url:
        import os

        from active_finetuning.labelstudio import LabelStudio

        annotations_uri = annotations_uri or os.path.join(os.path.dirname(labels.path), "annotations.json")
        LabelStudio(label_studio_url).save_export(label_studio_project, annotations_uri, annotated.sample_ids)
    result = load(annotations_uri, read_manifest(manifest.path), annotated,
                  format=annotations_format, allow_partial=allow_partial, label_format=label_format)
    write_labels(result, labels.path)
    if labels_folder_uri:
        from active_finetuning.data import storage

        storage.upload_file(labels.path, storage.join(labels_folder_uri, f"labels-{result.identity()}.parquet"))
    labels.metadata.update({"samples": len(result.sample_ids), "source": annotations_uri})
