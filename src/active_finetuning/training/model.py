"""The model artifact: a finetuned timm model's weights (``model.safetensors``, never pickle) and its
``config.json`` (timm name, classes, preprocessing, recipe, identities); loading it, the evaluation
transform it was trained with, and batched prediction over a manifest."""

from __future__ import annotations

import json

import numpy as np

from ..data import storage
from ..data.images import ManifestImages
from ..errors import InputError

MODEL_FILE = "model.safetensors"


CONFIG_FILE = "config.json"


MODEL_FORMAT = "active-finetuning/model"


def eval_transform(data: dict):
    """The evaluation preprocessing of a model artifact's ``data_config`` (the one of
    :mod:`~active_finetuning.data.preprocessing`, as for feature extraction): resize so that the
    centre crop is ``crop_pct`` of the short side, crop ``image_size``, normalise (docs/methods.md §4)."""
    from ..data.preprocessing import Preprocessing

    size = int(data["image_size"])
    return Preprocessing(image_size=(size, size), interpolation=data["interpolation"],
                         mean=tuple(data["mean"]), std=tuple(data["std"]), crop_pct=float(data["crop_pct"]))


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
    dataset = ManifestImages(manifest, range(len(manifest)), transform)
    batches = [list(range(s, min(s + batch_size, len(dataset)))) for s in range(0, len(dataset), batch_size)]
    model = model.to(device).eval()
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    outputs = []
    with torch.inference_mode(), torch.autocast(device.type, enabled=cuda):
        for images, _, _ in progress_bar(image_loader(dataset, batches, num_workers, device), "evaluate", progress,
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
