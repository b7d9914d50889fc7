from kfp import dsl

from ..image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def oracle_labels(manifest: dsl.Input[dsl.Dataset], selection: dsl.Input[dsl.Dataset],
                  labels: dsl.Output[dsl.Dataset]):
    """Label the selected samples from the manifest's ground truth, as if annotated (budget studies).

    Args:
        manifest: The pool's manifest artifact, with a ``label`` column.
        selection: The selection artifact.
        labels: The labels artifact (``sample_id``, ``label``).
    """
    from active_finetuning.data.artifacts import read_selection
    from active_finetuning.data.manifest import read_manifest
    from active_finetuning.labels import oracle_labels as oracle
    from active_finetuning.labels import write_labels

    result = oracle(read_selection(selection.path), read_manifest(manifest.path))
    write_labels(result, labels.path)
    labels.metadata.update({"samples": len(result.sample_ids), "source": "oracle"})
