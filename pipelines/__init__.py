"""Pipeline DAGs, shipped inside the package as ``active_finetuning.pipelines``.

``active_finetuning_pipeline`` (``budget_study.py``) is the budget study; its compiled spec is
committed beside it as ``active_finetuning_pipeline.yaml`` (``active-finetuning compile`` rewrites it).
"""

from pathlib import Path

from .budget_study import active_finetuning_pipeline

COMPILED = {"active_finetuning_pipeline": Path(__file__).with_name("active_finetuning_pipeline.yaml")}

__all__ = ["active_finetuning_pipeline", "COMPILED"]
