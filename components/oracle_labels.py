from kfp import dsl

from ._image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def oracle_labels(manifest: dsl.Input[dsl.Dataset], selection: dsl.Input[dsl.Dataset],
                  labels: dsl.Output[dsl.Dataset]):
    """Label the selected samples from the manifest's ground truth, as if annotated (budget studies).

    Args:
        manifest: The pool's manifest artifact, with a ``label`` column.
        selection: The selection artifact.
        labels: The labels artifact (``sample_id``, ``label``).
    """
    from active_finetuning.artifacts import read_selection
    from active_finetuning.labels import oracle_labels as oracle, write_labels
    from active_finetuning.manifest import read_manifest

    result = oracle(read_selection(selection.path), read_manifest(manifest.path))
    write_labels(result, labels.path)
    labels.metadata.update({"samples": len(result.sample_ids), "source": "oracle"})
