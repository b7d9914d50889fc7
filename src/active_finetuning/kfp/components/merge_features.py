from typing import List

from kfp import dsl

from ..image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def merge_features(shards: dsl.Input[List[dsl.Dataset]], features: dsl.Output[dsl.Dataset], publish_uri: str = ""):
    """Merge the features of every extraction shard into one features artifact, in manifest order.

    Args:
        shards: The features artifacts of all shards (collected from the extraction fan-out).
        features: The merged features artifact; its identity is the content hash of ids and values.
        publish_uri: Where to also write it (the labeling loop's features, re-used by the next run); empty: nowhere.
    """
    from active_finetuning.data import storage
    from active_finetuning.features.extraction import merge_features as merge

    merged = merge([shard.path for shard in shards], features.path)
    if publish_uri:
        storage.upload_file(features.path, publish_uri)
    features.metadata.update({"shards": len(shards), "model": merged.get("model", "")})
