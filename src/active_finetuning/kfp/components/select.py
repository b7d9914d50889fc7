from kfp import dsl

from ..image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def select(features: dsl.Input[dsl.Dataset], method: str, budget: str, seed: int, method_params: dict,
           selection: dsl.Output[dsl.Dataset]):
    """Select a budget of samples to label from the pool's features with a registered method.

    Args:
        features: The pool's features artifact.
        method: ``activeft``, ``bilaf``, ``kmeans``, ``kcenter``, ``random`` or any registered method.
        budget: A sample count (``"500"``) or a percentage of the pool (``"1%"``).
        seed: The random seed; the same inputs and seed give a byte-identical selection.
        method_params: Per-method parameters, ``{"activeft": {"iterations": 100}}``; others ignored.
        selection: The selection artifact (``sample_id``, ``rank``, ``role``; every parameter in metadata).
    """
    from active_finetuning.data.artifacts import read_features, write_selection
    from active_finetuning.selection import select as run_select

    picks = run_select(read_features(features.path), budget, method, seed=seed, progress=False,
                       **method_params.get(method, {}))
    write_selection(picks, selection.path)
    selection.metadata.update({"method": method, "budget": int(picks.metadata["budget"]), "seed": seed,
                               "seconds": round(picks.seconds, 3)})
