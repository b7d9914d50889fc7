"""The finetuning recipe (docs/methods.md §4): one frozen :class:`Recipe` of declared parameters, the
named presets (:data:`RECIPES`, configs as data), and what follows from a recipe and a labeled-set
size: the epochs, the optimizer steps, the learning-rate schedule and the optimizer."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Literal

from ..errors import InputError
from ..params import Interval, Params, parameter


@dataclass(frozen=True)
class Recipe(Params):
    """The finetuning recipe (§4: SGD m=0.9, wd 1e-4, cosine + warm-up, label smoothing 0.1, RRC + flip).

    Length: ``epochs`` passes (an epoch is ``epoch_size`` images), or, when ``steps`` is given, the
    whole epochs that cover that many optimizer steps. The learning rate follows DeiT's linear rule,
    ``lr_base × batch_size / lr_base_size``, unless ``lr`` sets it outright.
    """

    epochs: int = parameter(100, Interval(int, 1), "passes over the labeled set")
    steps: int | None = parameter(None, Interval(int, 1), "optimizer steps instead of epochs")
    batch_size: int = parameter(64, Interval(int, 1), "images per step")
    lr: float | None = parameter(None, Interval(float, 0), "peak learning rate (SGD); None: the scaling rule")
    lr_base: float = parameter(0.01, Interval(float, 0), "peak learning rate at a batch of lr_base_size")
    lr_base_size: int = parameter(512, Interval(int, 1), "the batch size lr_base is given for")
    momentum: float = parameter(0.9, Interval(float, 0, 1, closed="left"), "SGD momentum")
    weight_decay: float = parameter(1e-4, Interval(float, 0), "L2 weight decay")
    warmup_epochs: float = parameter(5.0, Interval(float, 0),
                                     "epochs of linear warm-up from warmup_lr (at most half the steps)")
    warmup_lr: float = parameter(1e-6, Interval(float, 0), "learning rate at the first step")
    min_lr: float = parameter(1e-5, Interval(float, 0), "learning rate at the end of the cosine")
    label_smoothing: float = parameter(0.1, Interval(float, 0, 1, closed="left"), "label smoothing")
    clip_grad: float | None = parameter(2.0, Interval(float, 0, closed="neither"), "gradient norm clip; None: off")
    drop_path: float = parameter(0.1, Interval(float, 0, 1, closed="left"), "stochastic depth rate")
    class_weight: Literal["balanced"] | None = parameter(
        None, help="per-class weights of the loss: None (the papers), or 'balanced' (scikit-learn's rule: "
                   "labeled images / (classes with labels × the class's labels)) for long-tailed labeled sets")
    head_init: Literal["random", "probe"] = parameter(
        "random", help="the new classifier: random (the papers), or a linear probe fitted on the frozen "
                       "features of the labeled images first (LP-FT)")
    batchnorm: Literal["train", "frozen"] = parameter(
        "train", help="BatchNorm statistics: updated by the training batches (the papers), or frozen at the "
                      "pretrained ones (layers kept in eval mode; their scale and shift still train)")
    head_init_std: float = parameter(0.01, Interval(float, 0),
                                     "random head: weights ~ N(0, std²), bias 0 (0: zeros)")
    image_size: int | None = parameter(None, Interval(int, 8), "input size; None: the model's data config")
    crop_scale: tuple[float, float] = parameter((0.08, 1.0), Interval(float, 0, 1, closed="right"),
                                                "RandomResizedCrop's area range (low, high)")
    hflip: float = parameter(0.5, Interval(float, 0, 1), "horizontal flip probability")
    aug_repeats: int = parameter(1, Interval(int, 1),
                                 "repeated augmentation: each drawn image this many times in a row (DeiT: 3)")
    epoch_size: Literal["labeled", "deit"] = parameter(
        "labeled", help="images per epoch: the labeled set's size, or DeiT's max(1, n // 256) * 256")
    drop_last: bool = parameter(False, help="drop each epoch's last partial batch")
    eval_crop_pct: float | None = parameter(None, Interval(float, 0, 1, closed="right"),
                                            "evaluation centre-crop share; None: the model's data config")
    interpolation: Literal["bicubic", "bilinear", "nearest"] | None = parameter(
        None, help="resize interpolation; None: the model's data config")
    amp: bool = parameter(True, help="mixed precision (CUDA only)")
    channels_last: bool = parameter(True, help="channels-last memory format (CUDA only)")
    checkpoint_steps: int = parameter(0, Interval(int, 0), "optimizer steps between checkpoints; 0: off")
    checkpoint_seconds: float = parameter(600.0, Interval(float, 0),
                                          "seconds of training between checkpoints; 0: off")
    seed: int = parameter(0, Interval(int, 0), "the seed of shuffling, augmentation and the new classifier")
    num_workers: int | None = parameter(None, Interval(int, 0),
                                        "image-decoding processes; None: CPUs - 1 beside a GPU, CPUs // 8 on CPU")

    #: Fields that change how a run goes, never its result: left out of the run's fingerprint, so a
    #: retried step may resume with other values of them.
    RUNTIME = ("checkpoint_steps", "checkpoint_seconds", "num_workers")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.crop_scale[0] <= self.crop_scale[1]:
            raise InputError(f"parameter 'crop_scale' must be (low, high) with low <= high, got {self.crop_scale!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Recipe":
        """The recipe from overrides as the CLI, YAML or KFP give them (strings, lists, whole floats);
        ``preset`` names a :data:`RECIPES` entry that the other values override."""
        values = dict(values)
        preset = values.pop("preset", None)
        if preset is not None:
            if preset not in RECIPES:
                raise InputError(f"parameter 'preset' of the finetuning recipe must be one of {sorted(RECIPES)}, "
                                 f"got {preset!r}")
            values = {**RECIPES[preset], **values}
        return cls.from_values("the finetuning recipe", **values)

    def fingerprint_values(self) -> dict[str, Any]:
        """The fields that decide the trained weights."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.RUNTIME}

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else self.lr_base * self.batch_size / self.lr_base_size

    def epoch_images(self, labeled: int) -> int:
        """Images one epoch draws: the labeled set, or DeiT's repeated-augmentation sampler's
        ``max(1, n // 256) · 256`` summed over its processes (§4)."""
        return labeled if self.epoch_size == "labeled" else max(1, labeled // 256) * 256

    def steps_per_epoch(self, labeled: int) -> int:
        images = self.epoch_images(labeled)
        if self.drop_last and images >= self.batch_size:
            return images // self.batch_size
        return math.ceil(images / self.batch_size)

    def plan(self, labeled: int) -> tuple[int, int]:
        """(epochs, total optimizer steps) for a labeled set of this size."""
        per_epoch = self.steps_per_epoch(labeled)
        epochs = self.epochs if self.steps is None else math.ceil(self.steps / per_epoch)
        return epochs, epochs * per_epoch

    def warmup_steps(self, labeled: int) -> int:
        """``warmup_epochs`` in steps, never more than half the run (a short run still decays)."""
        _, total = self.plan(labeled)
        return min(total // 2, round(self.warmup_epochs * self.steps_per_epoch(labeled)))


#: Named recipes: a preset's values, overridden by any the user gives (``--recipe-preset``, or
#: ``preset`` in a recipe mapping). ``papers``: both papers' code (§4) on one process: a step of
#: 512 images (their 2 × 256), lr 0.01 at 512, 5 warm-up epochs, 3 repeated augmentations, DeiT's
#: epoch of max(1, n // 256) · 256 images, the last partial batch kept, 1000 epochs.
RECIPES: dict[str, dict[str, Any]] = {
    "papers": {"epochs": 1000, "batch_size": 512, "lr_base": 0.01, "lr_base_size": 512, "warmup_epochs": 5.0,
               "aug_repeats": 3, "epoch_size": "deit", "drop_last": False},
}


def loss_class_weights(recipe: Recipe, labels, num_classes: int):
    """The cross-entropy's class weights (docs/methods.md §4), ``None`` when the recipe has none.
    ``balanced`` is scikit-learn's ``compute_class_weight`` over the classes that have labels; a class
    without labels gets 1, the mean weight of a labeled image (it only enters label smoothing)."""
    if recipe.class_weight is None:
        return None
    import numpy as np
    import torch
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels)
    present = np.unique(labels)
    weights = np.ones(num_classes)
    weights[present] = compute_class_weight(recipe.class_weight, classes=present, y=labels)
    return torch.as_tensor(weights, dtype=torch.float32)


def lr_scheduler(optimizer, recipe: Recipe, labeled: int):
    """timm's cosine schedule, per optimizer step: linear warm-up from ``warmup_lr`` over
    ``warmup_epochs``, then cosine decay to ``min_lr`` (§4). Call ``step_update(step)`` before each step."""
    from timm.scheduler import CosineLRScheduler

    _, total = recipe.plan(labeled)
    warmup = recipe.warmup_steps(labeled)
    return CosineLRScheduler(optimizer, t_initial=max(1, total - warmup), lr_min=recipe.min_lr, warmup_t=warmup,
                             warmup_lr_init=recipe.warmup_lr, warmup_prefix=True, t_in_epochs=False)


def sgd(network, recipe: Recipe):
    """timm's optimizer factory: SGD with momentum (no Nesterov), no weight decay on biases and norms."""
    from timm.optim import create_optimizer_v2

    return create_optimizer_v2(network, opt="momentum", lr=recipe.peak_lr, weight_decay=recipe.weight_decay,
                               momentum=recipe.momentum)
