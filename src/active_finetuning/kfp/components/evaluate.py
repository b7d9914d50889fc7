from kfp import dsl

from ..image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def evaluate(model: dsl.Input[dsl.Model], test_manifest: dsl.Input[dsl.Dataset], batch_size: int,
             metrics: dsl.Output[dsl.Metrics], confusion: dsl.Output[dsl.ClassificationMetrics],
             report: dsl.Output[dsl.Artifact]) -> str:
    """Score a finetuned model on the test manifest: top-1, top-5, macro-F1, confusion matrix.

    Args:
        model: The finetuned model.
        test_manifest: The test manifest artifact, with ground-truth labels.
        batch_size: Images per forward pass.
        metrics: Scalar metrics for the KFP UI.
        confusion: The confusion matrix for the KFP UI.
        report: Every metric as JSON.

    Returns:
        The summary handed to the study (JSON: accuracy, numeric metrics, confusion matrix).
    """
    from active_finetuning.data.manifest import read_manifest
    from active_finetuning.study.cells import publish_result
    from active_finetuning.training.evaluate import evaluate as score

    result = score(model.path, read_manifest(test_manifest.path), batch_size=batch_size, progress=False)
    return publish_result(result, report.path, metrics, confusion)
