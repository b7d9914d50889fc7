"""The ``active-finetuning`` command line: one sub-command per step, each a module of this package.

Only the chosen sub-command's module is imported, and it imports its heavy dependencies inside
``run``, so ``select`` never loads timm or mlflow. A module may define ``prefetch(argv)``, called
with the raw arguments before its parser is built: ``select`` starts reading its features there,
while torch loads.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import InputError
from ..resources import default_openmp_waiting

# Before torch (and its OpenMP runtime) loads: idle OpenMP threads spin briefly, then sleep. On a
# node shared with other work, threads that spin on steal the CPUs the working ones wait for (measured
# in benchmarks/RESULTS.md, "Thread defaults under load"). A choice the user made is kept.
default_openmp_waiting()

# name -> (module under active_finetuning.cli, one-line help)
# A new command adds one line here and one module beside this one.
COMMANDS: dict[str, tuple[str, str]] = {
    "manifest": ("manifest", "build a manifest from an image folder, a CSV/JSONL list or a Parquet file"),
    "extract": ("extract", "extract a timm model's features for the images of a manifest"),
    "merge-features": ("merge_features", "concatenate features shards into one features artifact"),
    "select": ("select", "select a budget of samples from a features artifact"),
    "methods": ("methods", "list the registered selection methods and their parameters"),
    "diagnose": ("diagnose", "label-free coverage diagnostics of a selection (JSON and a PCA plot)"),
    "demo": ("demo", "run the main job on the embedded default data set"),
    "export-for-annotation": ("export_for_annotation", "write the selected images as Label Studio tasks or CSV"),
    "import-labels": ("import_labels", "turn an annotation export into a labels artifact"),
    "oracle-labels": ("oracle_labels", "label a selection from the manifest's ground truth (studies)"),
    "finetune": ("finetune", "finetune a pretrained timm model on the labeled selection"),
    "evaluate": ("evaluate", "score a finetuned model on a test manifest"),
    "probe": ("probe", "linear probe and kNN on the selected samples' features"),
    "run": ("run", "run the budget-study pipeline on this machine (kfp.local)"),
    "compile": ("compile", "compile the budget-study pipeline to KFP v2 YAML"),
    "submit": ("submit", "upload the pipeline to Kubeflow Pipelines and start a run"),
    "schedule": ("schedule", "create a recurring run of the pipeline on Kubeflow Pipelines"),
}


def _top_parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in COMMANDS)
    parser = argparse.ArgumentParser(
        prog="active-finetuning",
        description="One-shot active finetuning: pick the samples worth labeling, finetune, evaluate.",
        epilog="commands (in the order of the work; `active-finetuning COMMAND --help` for each):\n"
               + "\n".join(f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND", help="the step to run (below)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        _top_parser().parse_args(argv or ["--help"])
        return 0
    name = argv[0]
    if name not in COMMANDS:
        _top_parser().parse_args(argv[:1])  # prints the choices and exits 2
    module = importlib.import_module(f".{COMMANDS[name][0]}", __package__)
    if hasattr(module, "prefetch"):
        module.prefetch(argv[1:])
    parser = argparse.ArgumentParser(prog=f"active-finetuning {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        _check_outputs(module, args)
        return int(module.run(args) or 0)
    except InputError as err:
        print(f"active-finetuning {name}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # what no check can foresee: a disk filling up, a permission changed meanwhile
        where = f": {err.filename}" if err.filename else ""
        print(f"active-finetuning {name}: error: {err.strerror or err}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        from ..progress import close_all

        close_all()
        print(f"active-finetuning {name}: interrupted; nothing was written under the output name", file=sys.stderr)
        return 130


def _check_outputs(module, args: argparse.Namespace) -> None:
    """Check every output a command declares (``OUTPUTS``: argument -> ``"file"`` or ``"folder"``)
    before any work, and that none is one of its declared ``INPUTS``."""
    from ..data import storage

    inputs = []
    for name in getattr(module, "INPUTS", ()):
        value = getattr(args, name, None)
        inputs.extend(value if isinstance(value, list) else [value] if value else [])
    for name, kind in getattr(module, "OUTPUTS", {}).items():
        value = getattr(args, name, None)
        if value:
            flag = "--" + name.removeprefix("param_").replace("_", "-")
            storage.check_output(value, flag, inputs, folder=kind == "folder")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
