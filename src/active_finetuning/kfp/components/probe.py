from kfp import dsl

from ..image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def probe(features: dsl.Input[dsl.Dataset], selection: dsl.Input[dsl.Dataset], labels: dsl.Input[dsl.Dataset],
          test_features: dsl.Input[dsl.Dataset], probe_params: dict, metrics: dsl.Output[dsl.Metrics],
          confusion: dsl.Output[dsl.ClassificationMetrics], report: dsl.Output[dsl.Artifact]) -> str:
    """Score a selection without finetuning: a linear probe and a kNN classifier on its features.

    Args:
        features: The pool's features artifact.
        selection: The selection artifact.
        labels: The labels of the selected samples.
        test_features: The test set's features (same model), with labels.
        probe_params: Overrides of the probe settings, e.g. ``{"C": 0.5, "k": 20}``.
        metrics: Scalar metrics for the KFP UI.
        confusion: The linear probe's confusion matrix for the KFP UI.
        report: Every metric as JSON.

    Returns:
        The summary handed to the study (JSON: accuracy, numeric metrics, confusion matrix).
    """
    from active_finetuning.data.artifacts import read_features, read_selection
    from active_finetuning.labels import read_labels
    from active_finetuning.study.cells import publish_result
    from active_finetuning.training.probe import ProbeParams
    from active_finetuning.training.probe import probe as run_probe

    result = run_probe(read_features(features.path), read_selection(selection.path),
                       read_features(test_features.path), labels=read_labels(labels.path),
                       params=ProbeParams.from_values(**probe_params))
    return publish_result(result, report.path, metrics, confusion)
