"""KFP components: one module per pipeline step, each a thin Lightweight Python component.

Every component runs in the project's image (``active_finetuning.kfp.image.IMAGE``) with nothing installed at run time;
its body imports the library and calls it, so ``kfp.local.SubprocessRunner`` runs the very same
components where the package is installed. Shipped inside the package as
``active_finetuning.kfp.components``.
"""

from .build_manifest import build_manifest
from .diagnose import diagnose
from .evaluate import evaluate
from .export_for_annotation import export_for_annotation
from .extract_features import extract_features
from .finetune import finetune
from .import_labels import import_labels
from .merge_features import merge_features
from .oracle_labels import oracle_labels
from .plan_grid import plan_grid
from .plan_shards import plan_shards
from .probe import probe
from .report import report
from .select import select
from .start_study import start_study
from .track_cell import track_cell
from .track_round import track_round

__all__ = [
    "build_manifest", "diagnose", "evaluate", "export_for_annotation", "extract_features", "finetune", "import_labels",
    "merge_features", "oracle_labels", "plan_grid", "plan_shards", "probe", "report", "select",
    "start_study", "track_cell", "track_round",
]
