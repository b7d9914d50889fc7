from kfp import dsl

from ..image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def finetune(manifest: dsl.Input[dsl.Dataset], labels: dsl.Input[dsl.Dataset], model_name: str,
             weights_uri: str, recipe: dict, model: dsl.Output[dsl.Model]):
    """Finetune the pretrained timm model on the labeled samples (safetensors + JSON config out).

    Args:
        manifest: The pool's manifest artifact (the images of the labeled samples).
        labels: The labels artifact.
        model_name: A timm model name.
        weights_uri: The pretrained weights (local or ``gs://``); empty: none.
        recipe: Overrides of the finetuning recipe, e.g. ``{"epochs": 50, "lr": 0.01}``; ``"preset"`` names a
            starting recipe (``"papers"``).
        model: The finetuned model (a folder: ``model.safetensors`` and ``config.json``).
    """
    from active_finetuning.data.manifest import read_manifest
    from active_finetuning.labels import read_labels
    from active_finetuning.training.finetune import finetune as train

    config = train(read_manifest(manifest.path), read_labels(labels.path), model=model_name,
                   weights=weights_uri or None, out=model.path, progress=False, **recipe)
    model.metadata.update({"model": model_name, "classes": len(config.get("classes", [])),
                           "train_seconds": config["train_seconds"], "images_per_second": config["images_per_second"]})
