from kfp import dsl

from ..image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def diagnose(features: dsl.Input[dsl.Dataset], selection: dsl.Input[dsl.Dataset], seed: int,
             report: dsl.Output[dsl.Artifact], plot: dsl.Output[dsl.Artifact], metrics: dsl.Output[dsl.Metrics]):
    """Label-free diagnostics of a selection, computed beside it (cached: the same inputs, the same result).

    Coverage (the distance from every pool sample to its nearest selected one: mean and percentiles),
    the share of k-means pseudo-classes holding a selected sample, and the pool in 2-D (PCA) with the
    picks marked by role (BiLAF's cores and boundary samples apart).

    Args:
        features: The pool's features artifact.
        selection: The selection artifact.
        seed: The seed of the pseudo-classes' k-means and of the plot's subsample.
        report: Every diagnostic as JSON.
        plot: The PCA plot (PNG).
        metrics: The diagnostics as scalar metrics for the KFP UI.
    """
    from active_finetuning.data.artifacts import read_features, read_selection
    from active_finetuning.study.diagnostics import diagnose as compute, plot as draw, write_report

    pool = read_features(features.path)
    chosen = read_selection(selection.path)
    result = compute(pool, chosen, seed=seed)
    write_report(result, report.path)
    meta = chosen.metadata
    draw(pool, chosen, plot.path, seed=seed, title=f"{meta.get('method')}, budget {meta.get('budget_requested')}, "
                                                   f"seed {meta.get('seed')}")
    for name, value in result["metrics"].items():
        metrics.log_metric(name, value)
