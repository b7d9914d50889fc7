"""Pipeline DAGs, shipped inside the package as ``active_finetuning.kfp.pipelines``.

* ``active_finetuning_pipeline`` (``study.py``): the budget study, oracle labels.
* ``select_for_annotation_pipeline`` and ``train_on_annotations_pipeline`` (``annotation.py``): the
  annotation loop around a labeling tool.

Each compiled spec is committed beside its module (``<name>.yaml``); ``active-finetuning compile``
rewrites them and a test fails when one is stale.
"""

from pathlib import Path

from .annotation import select_for_annotation_pipeline, train_on_annotations_pipeline
from .study import active_finetuning_pipeline

PIPELINES = {
    "active_finetuning_pipeline": active_finetuning_pipeline,
    "select_for_annotation_pipeline": select_for_annotation_pipeline,
    "train_on_annotations_pipeline": train_on_annotations_pipeline,
}
COMPILED = {name: Path(__file__).with_name(f"{name}.yaml") for name in PIPELINES}

__all__ = ["PIPELINES", "COMPILED", "active_finetuning_pipeline", "select_for_annotation_pipeline",
           "train_on_annotations_pipeline"]
