"""Finetuning a pretrained timm model on the labeled selection (docs/methods.md §4, the papers' recipe).

:func:`finetune` builds the timm model with a new classifier for the label classes, trains it with
the recipe (a frozen :class:`Recipe`: SGD with momentum, cosine schedule with linear warm-up, label
smoothing, RandomResizedCrop + flip; every value a parameter) and writes the **model** artifact to a
directory or prefix URI:

* ``model.safetensors`` — the weights (never pickle);
* ``config.json`` — timm name, classes, preprocessing, the recipe, weights/labels/selection identity.

``checkpoint.safetensors`` is written there every ``checkpoint_every`` epochs (weights, optimizer
momentum, epoch, a fingerprint of the inputs) and a retried call resumes from it, so a preempted GPU
node does not restart from zero. Each epoch's randomness comes from ``(seed, epoch)`` alone, so a
resumed run on CPU gives the same weights as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal

import numpy as np

from .. import __version__
from ..data import storage
from ..errors import InputError
from ..params import Interval, Params, parameter
from ..seeding import derived_seed
from .model import (
    CONFIG_FILE,
    MODEL_FILE,
    MODEL_FORMAT,
    ManifestImages,
    image_loader,
)

CHECKPOINT_FILE = "checkpoint.safetensors"


@dataclass(frozen=True)
class Recipe(Params):
    """The finetuning recipe (§4: SGD m=0.9, wd 1e-4, cosine + warm-up, label smoothing 0.1, RRC + flip).

    Length: ``epochs`` passes over the labeled set (so the step count grows with its size), or, when
    ``steps`` is given, that many optimizer steps whatever the size.
    """

    epochs: int = parameter(100, Interval(int, 1), "passes over the labeled set")
    steps: int | None = parameter(None, Interval(int, 1), "optimizer steps instead of epochs")
    batch_size: int = parameter(64, Interval(int, 1), "images per step")
    lr: float = parameter(0.01, Interval(float, 0), "peak learning rate (SGD)")
    momentum: float = parameter(0.9, Interval(float, 0, 1, closed="left"), "SGD momentum")
    weight_decay: float = parameter(1e-4, Interval(float, 0), "L2 weight decay")
    warmup_fraction: float = parameter(0.05, Interval(float, 0, 1, closed="left"),
                                       "share of all steps warming up linearly from warmup_lr")
    warmup_lr: float = parameter(1e-6, Interval(float, 0), "learning rate at the first step")
    min_lr: float = parameter(1e-5, Interval(float, 0), "learning rate at the end of the cosine")
    label_smoothing: float = parameter(0.1, Interval(float, 0, 1, closed="left"), "label smoothing")
    clip_grad: float | None = parameter(2.0, Interval(float, 0, closed="neither"), "gradient norm clip; None: off")
    drop_path: float = parameter(0.1, Interval(float, 0, 1, closed="left"), "stochastic depth rate")
    head_init_std: float = parameter(0.01, Interval(float, 0),
                                     "the new classifier's weights ~ N(0, std²), bias 0 (0: zeros)")
    image_size: int | None = parameter(None, Interval(int, 8), "input size; None: the model's data config")
    crop_scale: tuple[float, float] = parameter((0.08, 1.0), Interval(float, 0, 1, closed="right"),
                                                "RandomResizedCrop's area range (low, high)")
    hflip: float = parameter(0.5, Interval(float, 0, 1), "horizontal flip probability")
    eval_crop_pct: float | None = parameter(None, Interval(float, 0, 1, closed="right"),
                                            "evaluation centre-crop share; None: the model's data config")
    interpolation: Literal["bicubic", "bilinear", "nearest"] | None = parameter(
        None, help="resize interpolation; None: the model's data config")
    amp: bool = parameter(True, help="mixed precision (CUDA only)")
    channels_last: bool = parameter(True, help="channels-last memory format (CUDA only)")
    checkpoint_every: int = parameter(1, Interval(int, 0), "epochs between checkpoints; 0: never")
    seed: int = parameter(0, Interval(int, 0), "the seed of shuffling, augmentation and the new classifier")
    num_workers: int = parameter(0, Interval(int, 0), "data-loading worker processes")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.crop_scale[0] <= self.crop_scale[1]:
            raise InputError(f"parameter 'crop_scale' must be (low, high) with low <= high, got {self.crop_scale!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Recipe":
        """The recipe from overrides as the CLI, YAML or KFP give them (strings, lists, whole floats)."""
        return cls.from_values("the finetuning recipe", **values)

    def steps_per_epoch(self, labeled: int) -> int:
        # the last partial batch is dropped (as DeiT does) unless the whole set is one batch
        return max(1, labeled // self.batch_size)

    def plan(self, labeled: int) -> tuple[int, int]:
        """(epochs, total optimizer steps) for a labeled set of this size."""
        per_epoch = self.steps_per_epoch(labeled)
        epochs = self.epochs if self.steps is None else math.ceil(self.steps / per_epoch)
        return epochs, epochs * per_epoch


def lr_scheduler(optimizer, recipe: Recipe, total: int):
    """timm's cosine schedule, per optimizer step: linear warm-up from ``warmup_lr`` over
    ``warmup_fraction`` of the steps, then cosine decay to ``min_lr`` (§4). Call
    ``step_update(step)`` before each step."""
    from timm.scheduler import CosineLRScheduler

    warmup = int(recipe.warmup_fraction * total)
    return CosineLRScheduler(optimizer, t_initial=max(1, total - warmup), lr_min=recipe.min_lr, warmup_t=warmup,
                             warmup_lr_init=recipe.warmup_lr, warmup_prefix=True, t_in_epochs=False)


def sgd(network, recipe: Recipe):
    """timm's optimizer factory: SGD with momentum (no Nesterov), no weight decay on biases and norms."""
    from timm.optim import create_optimizer_v2

    return create_optimizer_v2(network, opt="momentum", lr=recipe.lr, weight_decay=recipe.weight_decay,
                               momentum=recipe.momentum)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffling, augmentation and drop-path (epoch -1: the new classifier)."""
    return derived_seed(seed, epoch)


# ----------------------------------------------------------------------------------------------
# data


def preprocessing(model_config: dict, recipe: Recipe) -> dict:
    """The data config the model is trained and evaluated with (recipe overrides the model's)."""
    size = recipe.image_size or int(model_config["input_size"][-1])
    return {
        "image_size": size,
        "interpolation": recipe.interpolation or model_config.get("interpolation", "bicubic"),
        "mean": list(model_config["mean"]),
        "std": list(model_config["std"]),
        "crop_pct": recipe.eval_crop_pct or float(model_config.get("crop_pct", 0.875)),
    }


def train_transform(data: dict, recipe: Recipe):
    import torch
    from torchvision.transforms import InterpolationMode, v2

    return v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(data["image_size"], scale=tuple(recipe.crop_scale),
                             interpolation=InterpolationMode(data["interpolation"]), antialias=True),
        v2.RandomHorizontalFlip(recipe.hflip),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(data["mean"], data["std"]),
    ])


# ----------------------------------------------------------------------------------------------
# model artifact


# ----------------------------------------------------------------------------------------------
# finetune


def _fingerprint(**parts) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _resolve_classes(labels, manifest) -> list[str]:
    manifest_classes = getattr(manifest, "classes", None)
    if labels.classes is not None and manifest_classes is not None and list(labels.classes) != list(manifest_classes):
        raise InputError(
            f"the labels name classes {list(labels.classes)} but the manifest {list(manifest_classes)}; "
            "import the labels against this manifest"
        )
    classes = labels.classes or manifest_classes
    if classes is None:
        top = int(labels.labels.max())
        if manifest.labels is not None:
            top = max(top, int(np.asarray(manifest.labels).max()))
        classes = [str(c) for c in range(top + 1)]
    return list(classes)


def _checkpoint_bytes(model, optimizer, epoch: int, step: int, fingerprint: str, history: list) -> bytes:
    from safetensors.torch import save

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for index, param in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        buffer = optimizer.state.get(param, {}).get("momentum_buffer")
        if buffer is not None:
            tensors[f"momentum.{index}"] = buffer.detach().cpu().contiguous()
    meta = {"epoch": str(epoch), "step": str(step), "fingerprint": fingerprint, "history": json.dumps(history)}
    return save(tensors, metadata=meta)


def _read_checkpoint(uri: str, fingerprint: str) -> tuple[dict, int, int, list]:
    """(tensors, epoch, step, history) of a checkpoint, checked to belong to this run."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    data = storage.read_bytes(uri)
    try:
        tensors = load_safetensors(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + header_len]).get("__metadata__", {})
        epoch, step, history = int(meta["epoch"]), int(meta["step"]), json.loads(meta["history"])
    except (SafetensorError, ValueError, KeyError, json.JSONDecodeError) as err:
        raise InputError(
            f"checkpoint {uri!r} is corrupt ({type(err).__name__}: {err}); delete it to restart from zero"
        ) from None
    if meta.get("fingerprint") != fingerprint:
        raise InputError(
            f"checkpoint {uri!r} belongs to another run (different model, weights, labels or recipe); "
            "delete it, or finetune into another --out"
        )
    return tensors, epoch, step, history


def _restore(uri: str, tensors: dict, model, optimizer) -> None:
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise InputError(f"checkpoint {uri!r} does not fit the model ({err}); delete it") from None
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, param in enumerate(params):
        if f"momentum.{index}" in tensors:
            optimizer.state[param]["momentum_buffer"] = tensors[f"momentum.{index}"].to(param.device)


def _init_head(network, std: float) -> None:
    """Small initial logits: timm's own init of a new head gives logits large enough (loss ≈ 6 for 10
    classes on Lite0's pooled features) for the first gradients to wreck the pretrained backbone."""
    import torch

    head = network.get_classifier() if hasattr(network, "get_classifier") else None
    if isinstance(head, torch.nn.Linear):
        with torch.no_grad():
            if std > 0:
                head.weight.normal_(0.0, std)
            else:
                head.weight.zero_()
            if head.bias is not None:
                head.bias.zero_()


def finetune(manifest, labels, model: str, weights: str | None = None, out: str | None = None,
             recipe: Recipe | None = None, device: str | None = None, model_overrides: dict | None = None,
             run=None, on_epoch_end: Callable[[int, dict], None] | None = None, progress: bool = True,
             **recipe_values) -> dict[str, Any]:
    """Finetune timm ``model`` (``weights``: see :mod:`.models`) on ``labels`` and write it to ``out``.

    ``recipe`` or keyword values of :class:`Recipe` set the recipe. ``run`` (a
    :class:`~active_finetuning.tracking.Run`) receives parameters, per-epoch metrics and the model.
    Returns the model config (also written as ``config.json``).
    """
    import torch

    from ..data.manifest import manifest_rows
    from ..data.preprocessing import data_config
    from ..features.models import create_model, weights_identity
    from ..labels import check_labeled_set
    from ..progress import progress_bar

    if recipe is not None and recipe_values:
        raise InputError("give either recipe= or recipe keyword values, not both")
    recipe = recipe or Recipe.from_dict(recipe_values)
    if out is None:
        raise InputError("finetune needs out=, the model directory or URI to write")
    storage.check_output(out, "out", folder=True)
    check_labeled_set(labels.labels)
    rows = manifest_rows(manifest, list(labels.sample_ids), "the labels")
    classes = _resolve_classes(labels, manifest)
    if int(labels.labels.max()) >= len(classes):
        raise InputError(f"labels go up to {int(labels.labels.max())} but only {len(classes)} classes are known")
    model_overrides = dict(model_overrides or {})
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"

    identity = {"model": model, "weights": weights_identity(weights), "labels": labels.identity(),
                "classes": classes, "recipe": asdict(recipe), "model_overrides": model_overrides}
    fingerprint = _fingerprint(**identity)
    config_uri, checkpoint_uri = storage.join(out, CONFIG_FILE), storage.join(out, CHECKPOINT_FILE)
    if storage.exists(config_uri) and storage.exists(storage.join(out, MODEL_FILE)):
        try:
            done = json.loads(storage.read_bytes(config_uri))
        except (json.JSONDecodeError, UnicodeDecodeError):
            done = {}
        if done.get("fingerprint") == fingerprint:  # a retried step whose work is already complete
            return done

    checkpoint = _read_checkpoint(checkpoint_uri, fingerprint) if storage.exists(checkpoint_uri) else None
    train_overrides = dict(model_overrides)
    if recipe.drop_path > 0:
        train_overrides.setdefault("drop_path_rate", recipe.drop_path)
    torch.manual_seed(epoch_seed(recipe.seed, -1))  # the new classifier's initialisation
    try:
        network = create_model(model, weights=weights, num_classes=len(classes), **train_overrides)
    except TypeError as err:
        raise InputError(f"model {model!r} does not accept these options ({err}); set drop_path=0 or "
                         "change model_overrides") from None
    _init_head(network, recipe.head_init_std)
    data = preprocessing(data_config(network), recipe)
    network = network.to(device)
    if cuda and recipe.channels_last:
        network = network.to(memory_format=torch.channels_last)
    optimizer = sgd(network, recipe)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    amp_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and recipe.amp and amp_dtype == torch.float16)

    epochs, total_steps = recipe.plan(len(labels))
    start_epoch, step, history = 0, 0, []
    if checkpoint is not None:
        tensors, start_epoch, step, history = checkpoint
        _restore(checkpoint_uri, tensors, network, optimizer)
    if run is not None:
        run.log_params({"model": model, "weights": weights or "random-init", "labeled": len(labels),
                        "classes": len(classes), "epochs": epochs, "total_steps": total_steps,
                        "resumed_from_epoch": start_epoch, "recipe": asdict(recipe)})

    scheduler = lr_scheduler(optimizer, recipe, total_steps)
    dataset = ManifestImages(manifest, rows, train_transform(data, recipe), labels=labels.labels)
    per_epoch = recipe.steps_per_epoch(len(labels))
    started = time.perf_counter()
    bar = progress_bar(range(start_epoch, epochs), "finetune", progress, total=epochs - start_epoch, unit="epoch")
    for epoch in bar:
        epoch_started = time.perf_counter()
        torch.manual_seed(epoch_seed(recipe.seed, epoch))
        order = torch.randperm(len(dataset)).tolist()
        batches = [order[i * recipe.batch_size:(i + 1) * recipe.batch_size] for i in range(per_epoch)]
        network.train()
        loss_sum, hits, seen = 0.0, 0, 0
        for images, targets, _ in image_loader(dataset, batches, recipe.num_workers, device):
            scheduler.step_update(step)
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            if cuda and recipe.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=cuda and recipe.amp):
                logits = network(images)
                loss = criterion(logits.float(), targets)
            if not torch.isfinite(loss):
                raise InputError(f"the training loss became {loss.item()} at step {step}; lower the recipe lr")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if recipe.clip_grad:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(network.parameters(), recipe.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            loss_sum += float(loss.detach()) * len(targets)
            hits += int((logits.argmax(1) == targets).sum())
            seen += len(targets)
        metrics = {"train_loss": loss_sum / seen, "train_top1": hits / seen,
                   "lr": optimizer.param_groups[0]["lr"], "epoch_seconds": time.perf_counter() - epoch_started}
        history.append({"epoch": epoch + 1, **metrics})
        bar.set_postfix(loss=f"{metrics['train_loss']:.3f}", top1=f"{metrics['train_top1']:.2f}", refresh=False)
        if run is not None:
            run.log_metrics(metrics, step=epoch + 1)
        finished = epoch + 1 == epochs
        if recipe.checkpoint_every and (epoch + 1) % recipe.checkpoint_every == 0 and not finished:
            storage.write_bytes(checkpoint_uri, _checkpoint_bytes(network, optimizer, epoch + 1, step,
                                                                  fingerprint, history))
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, metrics)

    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    config = {
        "format": MODEL_FORMAT, "library_version": __version__, "model": model,
        "num_classes": len(classes), "classes": classes, "image_size": data["image_size"], "data_config": data,
        "model_overrides": model_overrides, "recipe": asdict(recipe), "weights": weights,
        "weights_identity": identity["weights"], "labels_identity": identity["labels"],
        "labeled": len(labels), "label_source": labels.metadata.get("source"),
        "selection": labels.metadata.get("selection"), "epochs": epochs, "steps": step,
        "train_seconds": round(time.perf_counter() - started, 3), "history": history, "fingerprint": fingerprint,
    }
    storage.write_bytes(storage.join(out, MODEL_FILE), save(state, metadata={"format": "pt"}))
    text = json.dumps(config, indent=2) + "\n"
    storage.write_bytes(config_uri, text.encode())  # last: marks completion
    storage.delete(checkpoint_uri)
    if run is not None:
        run.log_artifact(storage.join(out, MODEL_FILE), "model")
        run.log_artifact(config_uri, "model")
    return json.loads(text)
