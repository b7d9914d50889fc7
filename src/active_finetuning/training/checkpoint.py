"""The finetuning checkpoint: one safetensors file (never pickle) with everything a resumed run needs
to continue bit for bit: weights, SGD momentum, the step, torch's random state (drop-path), the
GradScaler's state (float16 autocast), the epoch's running sums and the history so far."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..data import storage
from ..errors import InputError

CHECKPOINT_FILE = "checkpoint.safetensors"


@dataclass
class Progress:
    """Where a run stands: the next step, the current epoch's running sums, the finished epochs' metrics."""

    step: int = 0
    loss_sum: float = 0.0
    hits: int = 0
    seen: int = 0
    seconds: float = 0.0  # training time of the current epoch so far
    history: list = field(default_factory=list)


def checkpoint_bytes(model, optimizer, scaler, progress: Progress, fingerprint: str) -> bytes:
    import torch
    from safetensors.torch import save

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for index, param in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        buffer = optimizer.state.get(param, {}).get("momentum_buffer")
        if buffer is not None:
            tensors[f"momentum.{index}"] = buffer.detach().cpu().contiguous()
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    meta = {"progress": json.dumps(progress.__dict__), "fingerprint": fingerprint,
            "scaler": json.dumps(scaler.state_dict() if scaler is not None and scaler.is_enabled() else {})}
    return save(tensors, metadata=meta)


def read_checkpoint(uri: str, fingerprint: str) -> tuple[dict, Progress, dict]:
    """(tensors, progress, scaler state) of a checkpoint, checked to belong to this run."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    data = storage.read_bytes(uri)
    try:
        tensors = load_safetensors(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + header_len]).get("__metadata__", {})
        progress = Progress(**json.loads(meta["progress"]))
        scaler = json.loads(meta["scaler"])
    except (SafetensorError, ValueError, KeyError, TypeError, json.JSONDecodeError) as err:
        raise InputError(
            f"checkpoint {uri!r} is corrupt ({type(err).__name__}: {err}); delete it to restart from zero"
        ) from None
    if meta.get("fingerprint") != fingerprint:
        raise InputError(
            f"checkpoint {uri!r} belongs to another run (different model, weights, labels or recipe); "
            "delete it, or finetune into another --out"
        )
    return tensors, progress, scaler


def restore(uri: str, tensors: dict, scaler_state: dict, model, optimizer, scaler) -> None:
    import torch

    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise InputError(f"checkpoint {uri!r} does not fit the model ({err}); delete it") from None
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, param in enumerate(params):
        if f"momentum.{index}" in tensors:
            optimizer.state[param]["momentum_buffer"] = tensors[f"momentum.{index}"].to(param.device)
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    if scaler_state and scaler is not None and scaler.is_enabled():
        scaler.load_state_dict(scaler_state)
