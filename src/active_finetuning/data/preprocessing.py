"""One preprocessing: how an image becomes a model's input, from the model's timm data config.

:func:`data_config` reads the model's own record (timm's ``resolve_data_config``: input size,
interpolation, mean, std, crop percentage); :class:`Preprocessing` is the evaluation transform built
from it, the same for feature extraction and for scoring a finetuned model: timm's evaluation
geometry (resize so the crop is ``crop_pct`` of the short side, centre crop), PIL resizing, ImageNet
normalisation. It is written verbatim into every features artifact and model config, so what a
model was fed can always be reproduced. Training augmentation (random crops and flips) is the
recipe's, on top of the same normalisation (``training.finetune.train_transform``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError

RESIZE_MODES = ("pil", "tensor")
_PIL_FILTERS = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}
_TENSOR_MODES = {"nearest": "nearest", "bilinear": "bilinear", "bicubic": "bicubic"}


def data_config(model) -> dict:
    """The model's preprocessing record: ``input_size`` (C, H, W), ``interpolation``, ``mean``, ``std``, ``crop_pct``."""
    import timm.data

    config = timm.data.resolve_data_config({}, model=model)
    return {
        "input_size": tuple(int(v) for v in config["input_size"]),
        "interpolation": str(config["interpolation"]),
        "mean": tuple(float(v) for v in config["mean"]),
        "std": tuple(float(v) for v in config["std"]),
        "crop_pct": float(config.get("crop_pct", 1.0)),
    }


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input tensor; written verbatim into the features metadata.

    ``crop_pct=None`` resizes the whole image to ``image_size`` (§1); a value resizes the short
    side to ``image_size / crop_pct`` and takes the center crop (timm's evaluation transform).
    ``resize="tensor"`` resizes the float image with ``torch.nn.functional.interpolate`` and clamps
    it to [0, 1] (how the CIFAR-10 fixture features were made); ``"pil"`` resizes the 8-bit image
    with PIL.
    """

    image_size: tuple[int, int]
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "pil"
    crop_pct: float | None = None

    def __post_init__(self) -> None:
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise InputError(f"image_size must be a positive size (H, W), got {self.image_size!r}")
        if self.resize not in RESIZE_MODES:
            raise InputError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        allowed = _PIL_FILTERS if self.resize == "pil" else _TENSOR_MODES
        if self.interpolation not in allowed:
            raise InputError(f"interpolation {self.interpolation!r} is not available with resize={self.resize!r}; "
                             f"use one of {sorted(allowed)}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise InputError(f"mean and std need 3 values each, std > 0; got mean={self.mean!r} std={self.std!r}")
        if self.crop_pct is not None and not 0 < self.crop_pct <= 1:
            raise InputError(f"crop_pct must be in (0, 1] or None (no crop), got {self.crop_pct!r}")

    def as_metadata(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record["image_size"] = list(self.image_size)
        record["mean"], record["std"] = list(self.mean), list(self.std)
        return record

    def __call__(self, image):
        """An RGB PIL image -> a normalised float32 tensor (3, H, W)."""
        import torch

        height, width = self.image_size
        if self.crop_pct is not None:
            image = _resize_short_side_and_crop(image, height, width, self.crop_pct, _PIL_FILTERS[self.interpolation])
        if self.resize == "pil":
            if image.size != (width, height):
                image = image.resize((width, height), resample=_PIL_FILTERS[self.interpolation])
            x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
        else:
            x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
            if x.shape[1:] != (height, width):
                mode = _TENSOR_MODES[self.interpolation]
                options = {} if mode == "nearest" else {"align_corners": False}
                x = torch.nn.functional.interpolate(x[None], size=(height, width), mode=mode, **options)[0]
                x = x.clamp_(0.0, 1.0)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return x.sub_(mean).div_(std)


def _resize_short_side_and_crop(image, height: int, width: int, crop_pct: float, resample: int):
    scale_h, scale_w = int(height / crop_pct), int(width / crop_pct)
    w, h = image.size
    factor = max(scale_h / h, scale_w / w)
    image = image.resize((max(width, round(w * factor)), max(height, round(h * factor))), resample=resample)
    left, top = (image.size[0] - width) // 2, (image.size[1] - height) // 2
    return image.crop((left, top, left + width, top + height))


def preprocessing_for(model, image_size=None, interpolation: str | None = None, mean=None, std=None,
                      resize: str = "pil", crop_pct: float | None = None) -> Preprocessing:
    """The model's data config (:func:`data_config`) with the given parts overridden."""
    config = data_config(model)
    size = config["input_size"][1:] if image_size is None else _size_pair(image_size)
    return Preprocessing(
        image_size=tuple(int(v) for v in size),
        interpolation=interpolation or config["interpolation"],
        mean=tuple(float(v) for v in (mean if mean is not None else config["mean"])),
        std=tuple(float(v) for v in (std if std is not None else config["std"])),
        resize=resize, crop_pct=crop_pct,
    )


def _size_pair(image_size) -> tuple[int, int]:
    if isinstance(image_size, int):
        return (image_size, image_size)
    if isinstance(image_size, str):
        parts = image_size.lower().replace("x", ",").split(",")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise InputError(f"image_size must be N or HxW (e.g. 224 or 224x160), got {image_size!r}") from None
        return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])
    return tuple(int(v) for v in image_size)
