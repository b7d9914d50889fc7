"""The model artifact: a finetuned timm model's weights (``model.safetensors``, never pickle) and its
``config.json`` (timm name, classes, preprocessing, recipe, identities); loading it, the evaluation
transform it was trained with, and batched prediction over a manifest."""

from __future__ import annotations

import json
import math
from typing import Sequence

import numpy as np

from ..data import storage
from ..errors import InputError

MODEL_FILE = "model.safetensors"


CONFIG_FILE = "config.json"


MODEL_FORMAT = "active-finetuning/model"


def interpolation_mode(name: str):
    from torchvision.transforms import InterpolationMode

    try:
        return InterpolationMode(name)
    except ValueError:
        raise InputError(f"interpolation {name!r} is unknown; use bicubic, bilinear or nearest") from None


def eval_transform(data: dict):
    """Resize to ``size / crop_pct`` then center-crop ``size`` (docs/methods.md §4: eval Resize + CenterCrop)."""
    import torch
    from torchvision.transforms import v2

    size = int(data["image_size"])
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(int(math.floor(size / data["crop_pct"])), interpolation=interpolation_mode(data["interpolation"]),
                  antialias=True),
        v2.CenterCrop(size),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(data["mean"], data["std"]),
    ])


class ManifestImages:
    """A map-style dataset: manifest rows → (transformed image, label)."""

    def __init__(self, manifest, rows: Sequence[int], labels: Sequence[int] | None, transform):
        self.manifest, self.rows, self.labels, self.transform = manifest, list(rows), labels, transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        from ..data.images import decode_image

        row = int(self.rows[index])
        image = decode_image(self.manifest.load_bytes(row), str(self.manifest.sample_ids[row]))
        label = -1 if self.labels is None else int(self.labels[index])
        return self.transform(image), label


def image_loader(dataset, batches, num_workers: int, device):
    import torch

    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                                       pin_memory=device.type == "cuda", persistent_workers=False)


def predict(model, manifest, transform, batch_size: int = 128, device=None, num_workers: int = 0,
            progress: bool = True) -> np.ndarray:
    """Logits (N × classes) of ``model`` for every manifest row, in manifest order."""
    import torch

    from ..progress import progress_bar

    device = device or torch.device("cpu")
    dataset = ManifestImages(manifest, range(len(manifest)), None, transform)
    batches = [list(range(s, min(s + batch_size, len(dataset)))) for s in range(0, len(dataset), batch_size)]
    model = model.to(device).eval()
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    outputs = []
    with torch.inference_mode(), torch.autocast(device.type, enabled=cuda):
        for images, _ in progress_bar(image_loader(dataset, batches, num_workers, device), "evaluate", progress,
                                      total=len(batches), unit="batch"):
            images = images.to(device, non_blocking=True)
            if cuda:
                images = images.contiguous(memory_format=torch.channels_last)
            outputs.append(model(images).float().cpu())
    return torch.cat(outputs).numpy()


def load_model(uri: str):
    """(model in eval mode, config) from a model artifact; mismatches and corrupt files are :class:`InputError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    from ..features.models import create_model

    config_uri = storage.join(uri, CONFIG_FILE)
    if not storage.exists(config_uri):
        raise InputError(f"{uri!r} is not a model artifact: it has no {CONFIG_FILE}; give the --out of finetune")
    try:
        config = json.loads(storage.read_bytes(config_uri))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{config_uri!r} is not valid JSON: {err}") from err
    for key in ("format", "model", "classes", "num_classes", "data_config"):
        if key not in config:
            raise InputError(f"{config_uri!r} has no {key!r}; it is not a finetune model config")
    if config["format"] != MODEL_FORMAT or config["num_classes"] != len(config["classes"]):
        raise InputError(
            f"{config_uri!r} is inconsistent: format {config['format']!r}, num_classes {config['num_classes']} "
            f"for {len(config['classes'])} class names"
        )
    try:
        state = load_safetensors(storage.read_bytes(storage.join(uri, MODEL_FILE)))
    except SafetensorError as err:
        raise InputError(f"{storage.join(uri, MODEL_FILE)!r} is corrupt ({err}); finetune again") from None
    model = create_model(config["model"], weights=None, num_classes=config["num_classes"],
                         **config.get("model_overrides", {}))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        detail = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected else
                  f"tensor {wrong[0]!r} has shape {tuple(state[wrong[0]].shape)}, the model needs "
                  f"{tuple(expected[wrong[0]].shape)}")
        raise InputError(
            f"the weights in {uri!r} do not match its config (model {config['model']!r}, "
            f"{config['num_classes']} classes): {detail}; the config and weights come from different runs"
        )
    model.load_state_dict(state)
    return model.eval(), config
