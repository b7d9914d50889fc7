from kfp import dsl

from ..image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def extract_features(manifest: dsl.Input[dsl.Dataset], model_name: str, weights_uri: str, shard_index: int,
                     num_shards: int, image_size: int, batch_size: int, features: dsl.Output[dsl.Dataset],
                     previous_features_uri: str = ""):
    """Extract the pooled features of one shard of a manifest with a pretrained timm model.

    Args:
        manifest: The manifest artifact of the pool.
        model_name: A timm model name, e.g. ``tf_efficientnet_lite0``.
        weights_uri: Pretrained weights (``.safetensors`` or ``.pth``, local or ``gs://``); empty: none.
        shard_index: Which of ``num_shards`` contiguous slices of the manifest, from 0.
        num_shards: How many shards the manifest is split into.
        image_size: Input size in pixels; 0 takes the model's own.
        batch_size: Images per forward pass.
        features: The features artifact of this shard (Parquet, float16, with model/weights metadata).
        previous_features_uri: Features of an earlier run (the labeling loop's): rows of unchanged
            images are copied from it, only new and changed images are extracted. Empty, or not
            written yet: every image is extracted.
    """
    from active_finetuning.data import storage
    from active_finetuning.data.manifest import read_manifest
    from active_finetuning.features.extraction import extract

    previous = previous_features_uri if previous_features_uri and storage.exists(previous_features_uri) else None
    done = extract(read_manifest(manifest.path), model=model_name, weights=weights_uri or None,
                   out=features.path, shard=(shard_index, num_shards), image_size=image_size or None,
                   batch_size=batch_size, progress=False, previous=previous)
    features.metadata.update({"samples": done.count, "extracted": done.extracted, "reused": done.reused,
                              "dim": done.dim, "model": model_name, "shard": f"{shard_index}/{num_shards}",
                              "seconds": round(done.seconds, 1)})
    if done.reuse_note:
        print(done.reuse_note)
