from kfp import dsl

from ..image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def select(features: dsl.Input[dsl.Dataset], method: str, budget: str, seed: int, method_params: dict,
           selection: dsl.Output[dsl.Dataset], labeled_uri: str = ""):
    """Select a budget of samples to label from the pool's features with a registered method.

    Args:
        features: The pool's features artifact.
        method: ``activeft``, ``bilaf``, ``kmeans``, ``kcenter``, ``random`` or any registered method.
        budget: A sample count (``"500"``) or a percentage of the pool (``"1%"``).
        seed: The random seed; the same inputs and seed give a byte-identical selection.
        method_params: Per-method parameters, ``{"activeft": {"iterations": 100}}``; others ignored.
        selection: The selection artifact (``sample_id``, ``rank``, ``role``; every parameter in metadata).
        labeled_uri: Samples already labeled, never selected again and complemented by the new picks:
            a labels artifact, or a folder of them (every earlier round's); empty: none.
    """
    from active_finetuning.data.artifacts import read_features, read_sample_id_union, write_selection
    from active_finetuning.selection import select as run_select

    labeled = read_sample_id_union(labeled_uri, "labeled set") if labeled_uri else []
    picks = run_select(read_features(features.path), budget, method, seed=seed, progress=False,
                       labeled=labeled or None, **method_params.get(method, {}))
    write_selection(picks, selection.path)
    selection.metadata.update({"method": method, "budget": int(picks.metadata["budget"]), "seed": seed,
                               "already_labeled": len(labeled),
                               "seconds": round(picks.seconds, 3)})
