from kfp import dsl

from ..image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def build_manifest(source_uri: str, manifest: dsl.Output[dsl.Dataset]):
    """Build the manifest of an image pool: which images, their ids and (optional) labels.

    Args:
        source_uri: A Parquet manifest to validate, a folder of images (one sub-folder per class
            gives labels) or a CSV/JSONL list with a ``uri`` column; local path or ``gs://``.
        manifest: The manifest artifact (Parquet: ``sample_id``, ``uri`` and/or ``image``, ``label``).
    """
    from active_finetuning.data.manifest import build_manifest as build
    from active_finetuning.data.manifest import write_manifest

    pool = build(source_uri)
    write_manifest(pool, manifest.path)
    manifest.metadata.update({"samples": len(pool), "source": source_uri,
                              "classes": len(pool.classes) if pool.classes else 0})
