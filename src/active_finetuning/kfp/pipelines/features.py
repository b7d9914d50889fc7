"""The feature chain both kinds of pipeline share: the pool's features, extracted in shards side by side
and merged into one artifact."""

from kfp import dsl

from ..components import extract_features, merge_features, plan_shards
from ..placement import place


def sharded_features(manifest, model_name, weights_uri, num_shards, image_size, batch_size,
                     previous_features_uri=None, publish_uri=None):
    """plan-shards ─► ParallelFor: extract-features ─► merge-features; returns the merge task.

    ``previous_features_uri``: the last run's features, whose unchanged rows are reused;
    ``publish_uri``: where the merged features are also written for the next run (both: the labeling loop)."""
    reuse = {} if previous_features_uri is None else {"previous_features_uri": previous_features_uri}
    publish = {} if publish_uri is None else {"publish_uri": publish_uri}
    shards = place(plan_shards(num_shards=num_shards))
    with dsl.ParallelFor(items=shards.output, name="extract-shards") as shard_index:
        shard = place(extract_features(manifest=manifest, model_name=model_name, weights_uri=weights_uri,
                                       shard_index=shard_index, num_shards=num_shards, image_size=image_size,
                                       batch_size=batch_size, **reuse))
    return place(merge_features(shards=dsl.Collected(shard.outputs["features"]), **publish))
