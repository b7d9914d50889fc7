"""Finetuning a pretrained timm model on the labeled selection (docs/methods.md §4, the papers' recipe).

:func:`finetune` builds the timm model with a new classifier for the label classes, trains it with
the recipe (a frozen :class:`~.recipe.Recipe`: SGD with momentum, cosine schedule with linear
warm-up, label smoothing, RandomResizedCrop + flip, optional repeated augmentation; every value a
parameter) and writes the **model** artifact to a directory or prefix URI:

* ``model.safetensors`` — the weights (never pickle);
* ``config.json`` — timm name, classes, preprocessing, the recipe, weights/labels/selection identity,
  the history and the training throughput.

One loader serves the whole run (its workers start once). ``checkpoint.safetensors`` is written there
every ``checkpoint_steps`` steps or ``checkpoint_seconds`` of training, and a retried call resumes from
it, mid-epoch too, so a preempted node does not restart from zero. The images and augmentations of a
step depend on the seed and the step alone (:mod:`.batches`) and the checkpoint carries the random
state, so on CPU a resumed run gives the same weights as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from typing import Any, Callable

import numpy as np

from .. import __version__
from ..data import storage
from ..errors import InputError
from ..seeding import derived_seed
from .batches import SeededItems, TrainingBatches
from .checkpoint import CHECKPOINT_FILE, Progress, checkpoint_bytes, read_checkpoint, restore
from .model import CONFIG_FILE, MODEL_FILE, MODEL_FORMAT, ManifestImages
from .recipe import Recipe, loss_class_weights, lr_scheduler, sgd


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


def _best_temperature(logits: np.ndarray, targets: np.ndarray, label_smoothing: float) -> float:
    """The T > 0 that minimises the label-smoothed cross-entropy of ``logits / T`` (a 1-D search)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    classes = logits.shape[1]
    smooth = np.full(logits.shape, label_smoothing / classes)
    smooth[np.arange(len(targets)), targets] += 1 - label_smoothing

    def loss(log_t: float) -> float:
        return float(-(smooth * log_softmax(logits / np.exp(log_t), axis=1)).sum(axis=1).mean())

    return float(np.exp(minimize_scalar(loss, bounds=(-5, 8), method="bounded").x))


def _probe_head(network, manifest, rows, targets, num_classes: int, data: dict, device, recipe: Recipe) -> None:
    """LP-FT (Kumar et al., ICLR 2022; docs/methods.md §4): start the new classifier from a logistic
    regression on the frozen model's features of the labeled images (evaluation preprocessing), so
    that finetuning starts from the probe's predictions instead of a random head's. The probe is
    fitted on standardised features and folded back (w = w_std / σ, b = b_std − Σ w_std · μ / σ),
    then divided by the temperature that best fits the label-smoothed targets."""
    import torch

    from ..features.extraction import pooled_pre_logits
    from .model import eval_transform, image_loader
    from .probe import ProbeParams, fit_linear_probe

    head = network.get_classifier() if hasattr(network, "get_classifier") else None
    if not isinstance(head, torch.nn.Linear):
        raise InputError(f"head_init='probe' needs a linear classifier; this model's is {type(head).__name__}")
    dataset = ManifestImages(manifest, rows, eval_transform(data))
    batches = [list(range(s, min(s + 64, len(rows)))) for s in range(0, len(rows), 64)]
    network.eval()
    with torch.inference_mode():
        features = torch.cat([pooled_pre_logits(network, images.to(device)).float().cpu()
                              for images, _, _ in image_loader(dataset, batches, 0, device)]).numpy()
    network.train()
    scaler, probe = fit_linear_probe(features, targets, ProbeParams(class_weight=recipe.class_weight))
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    weight = np.zeros((num_classes, features.shape[1]))
    bias = np.full(num_classes, -10.0)  # a class without labels: never predicted at the start
    if len(probe.classes_) == 2:  # scikit-learn keeps one row for two classes: logit(class 1) − logit(class 0)
        coef = np.vstack([-probe.coef_ / 2, probe.coef_ / 2])
        intercept = np.r_[-probe.intercept_ / 2, probe.intercept_ / 2]
    else:
        coef, intercept = probe.coef_, probe.intercept_
    weight[probe.classes_] = coef / scale
    bias[probe.classes_] = intercept - (coef * scaler.mean_ / scale).sum(axis=1)
    # a probe that separates the few labels has logits in the tens; gradients through such a head
    # wreck the backbone, so the head is cooled to the temperature that best fits the smoothed targets
    temperature = _best_temperature(features @ weight.T + bias, np.asarray(targets), recipe.label_smoothing)
    weight, bias = weight / temperature, bias / temperature
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
        if head.bias is not None:
            head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))


def training_mode(network, recipe: Recipe) -> None:
    """``network.train()``, with its BatchNorm layers back in eval mode when the recipe freezes their
    statistics (docs/methods.md §4): they then normalise with the pretrained running mean and variance,
    as the frozen features a probe (or LP-FT's starting head) was fitted on, and never update them."""
    import torch

    network.train()
    if recipe.batchnorm == "frozen":
        for layer in network.modules():
            if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
                layer.eval()


def finetune(manifest, labels, model: str, weights: str | None = None, out: str | None = None,
             recipe: Recipe | None = None, device: str | None = None, model_overrides: dict | None = None,
             run=None, on_epoch_end: Callable[[int, dict], None] | None = None, progress: bool = True,
             **recipe_values) -> dict[str, Any]:
    """Finetune timm ``model`` (``weights``: see :mod:`..features.models`) on ``labels`` and write it to ``out``.

    ``recipe`` or keyword values of :class:`Recipe` set the recipe. ``run`` (a
    :class:`~active_finetuning.tracking.Run`) receives parameters, per-epoch metrics (loss, top-1,
    learning rate, images per second) and the model. Returns the model config (also written as
    ``config.json``).
    """
    import torch

    from ..data.manifest import manifest_rows
    from ..data.preprocessing import data_config
    from ..features.models import create_model, weights_identity
    from ..labels import check_labeled_set
    from ..progress import progress_bar
    from ..resources import default_loader_workers

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
                "classes": classes, "recipe": recipe.fingerprint_values(), "model_overrides": model_overrides}
    fingerprint = _fingerprint(**identity)
    config_uri, checkpoint_uri = storage.join(out, CONFIG_FILE), storage.join(out, CHECKPOINT_FILE)
    if storage.exists(config_uri) and storage.exists(storage.join(out, MODEL_FILE)):
        try:
            done = json.loads(storage.read_bytes(config_uri))
        except (json.JSONDecodeError, UnicodeDecodeError):
            done = {}
        if done.get("fingerprint") == fingerprint:  # a retried step whose work is already complete
            return done

    checkpoint = read_checkpoint(checkpoint_uri, fingerprint) if storage.exists(checkpoint_uri) else None
    train_overrides = dict(model_overrides)
    if recipe.drop_path > 0:
        train_overrides.setdefault("drop_path_rate", recipe.drop_path)
    torch.manual_seed(derived_seed(recipe.seed, "classifier"))
    try:
        network = create_model(model, weights=weights, num_classes=len(classes), **train_overrides)
    except TypeError as err:
        raise InputError(f"model {model!r} does not accept these options ({err}); set drop_path=0 or "
                         "change model_overrides") from None
    _init_head(network, recipe.head_init_std)
    torch.manual_seed(derived_seed(recipe.seed, "training"))  # drop-path's stream; checkpointed
    data = preprocessing(data_config(network), recipe)
    if recipe.head_init == "probe" and checkpoint is None:
        _probe_head(network, manifest, rows, labels.labels, len(classes), data, device, recipe)
    network = network.to(device)
    if cuda and recipe.channels_last:
        network = network.to(memory_format=torch.channels_last)
    optimizer = sgd(network, recipe)
    criterion = torch.nn.CrossEntropyLoss(weight=loss_class_weights(recipe, labels.labels, len(classes)),
                                          label_smoothing=recipe.label_smoothing).to(device)
    amp_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and recipe.amp and amp_dtype == torch.float16)

    labeled = len(labels)
    epochs, total_steps = recipe.plan(labeled)
    state = Progress()
    if checkpoint is not None:
        tensors, state, scaler_state = checkpoint
        restore(checkpoint_uri, tensors, scaler_state, network, optimizer, scaler)
    workers = default_loader_workers(device.type) if recipe.num_workers is None else recipe.num_workers
    per_epoch = recipe.steps_per_epoch(labeled)
    if run is not None:
        run.log_params({"model": model, "weights": weights or "random-init", "labeled": labeled,
                        "classes": len(classes), "epochs": epochs, "total_steps": total_steps,
                        "steps_per_epoch": per_epoch, "peak_lr": recipe.peak_lr, "loader_workers": workers,
                        "resumed_from_step": state.step, "recipe": asdict(recipe)})

    scheduler = lr_scheduler(optimizer, recipe, labeled)
    batches = TrainingBatches(recipe, labeled, start=state.step)
    dataset = SeededItems(ManifestImages(manifest, rows, train_transform(data, recipe), labels=labels.labels))
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers, pin_memory=cuda,
                                         prefetch_factor=4 if workers else None)
    bar = progress_bar(loader, "finetune", progress, total=len(batches), unit="step")
    training_mode(network, recipe)
    started = last_checkpoint = time.perf_counter()
    for images, targets, _ in bar:
        scheduler.step_update(state.step)
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        if cuda and recipe.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=cuda and recipe.amp):
            logits = network(images)
            loss = criterion(logits.float(), targets)
        if not torch.isfinite(loss):
            raise InputError(f"the training loss became {loss.item()} at step {state.step}; lower the recipe lr")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if recipe.clip_grad:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(network.parameters(), recipe.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        state.step += 1
        state.loss_sum += float(loss.detach()) * len(targets)
        state.hits += int((logits.argmax(1) == targets).sum())
        state.seen += len(targets)
        now = time.perf_counter()
        state.seconds += now - started
        started = now
        epoch_end = state.step % per_epoch == 0
        if epoch_end:
            epoch = state.step // per_epoch
            metrics = {"train_loss": state.loss_sum / state.seen, "train_top1": state.hits / state.seen,
                       "lr": optimizer.param_groups[0]["lr"], "epoch_seconds": state.seconds,
                       "images_per_second": state.seen / state.seconds}
            state.history.append({"epoch": epoch, **metrics})
            state.loss_sum, state.hits, state.seen, state.seconds = 0.0, 0, 0, 0.0
            bar.set_postfix(epoch=f"{epoch}/{epochs}", loss=f"{metrics['train_loss']:.3f}",
                            top1=f"{metrics['train_top1']:.2f}", refresh=False)
            if run is not None:
                run.log_metrics(metrics, step=epoch)
        due = (recipe.checkpoint_steps and state.step % recipe.checkpoint_steps == 0) or \
            (recipe.checkpoint_seconds and now - last_checkpoint >= recipe.checkpoint_seconds)
        if due and state.step < total_steps:
            storage.write_bytes(checkpoint_uri, checkpoint_bytes(network, optimizer, scaler, state, fingerprint))
            last_checkpoint = time.perf_counter()
            started += last_checkpoint - now  # writing a checkpoint is not training time
        if epoch_end and on_epoch_end is not None:  # after the checkpoint: a preempted run resumes from it
            on_epoch_end(epoch, state.history[-1])

    from safetensors.torch import save

    train_seconds = sum(h["epoch_seconds"] for h in state.history)
    images_seen = sum(h["images_per_second"] * h["epoch_seconds"] for h in state.history)
    weights_state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    config = {
        "format": MODEL_FORMAT, "library_version": __version__, "model": model,
        "num_classes": len(classes), "classes": classes, "image_size": data["image_size"], "data_config": data,
        "model_overrides": model_overrides, "recipe": asdict(recipe), "weights": weights,
        "weights_identity": identity["weights"], "labels_identity": identity["labels"],
        "labeled": labeled, "label_source": labels.metadata.get("source"),
        "selection": labels.metadata.get("selection"), "epochs": epochs, "steps": state.step,
        "peak_lr": recipe.peak_lr, "train_seconds": round(train_seconds, 3),
        "images_per_second": round(images_seen / train_seconds, 2) if train_seconds else None,
        "history": state.history, "fingerprint": fingerprint,
    }
    storage.write_bytes(storage.join(out, MODEL_FILE), save(weights_state, metadata={"format": "pt"}))
    text = json.dumps(config, indent=2) + "\n"
    storage.write_bytes(config_uri, text.encode())  # last: marks completion
    storage.delete(checkpoint_uri)
    if run is not None:
        run.log_metrics({"train_seconds": config["train_seconds"], "images_per_second": config["images_per_second"]
                         or 0.0})
        run.log_artifact(storage.join(out, MODEL_FILE), "model")
        run.log_artifact(config_uri, "model")
    return json.loads(text)
