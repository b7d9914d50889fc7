from kfp import dsl

from ..image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def export_for_annotation(manifest: dsl.Input[dsl.Dataset], selection: dsl.Input[dsl.Dataset],
                          tasks: dsl.Output[dsl.Artifact], annotation_format: str = "label-studio",
                          signed_urls: bool = False, label_studio_url: str = "", label_studio_project: int = 0):
    """Write the selected images, in pick order, as annotation tasks (Label Studio JSON or CSV).

    Args:
        manifest: The pool's manifest artifact.
        selection: The selection artifact.
        tasks: The task file to import into the annotation tool.
        annotation_format: ``label-studio`` (JSON task import) or ``csv``.
        signed_urls: Give ``gs://`` images as V4 signed HTTPS URLs (needs a signing identity).
        label_studio_url: A Label Studio server to push the tasks to; empty: only write the file.
        label_studio_project: The project there (the API key comes from ``LABEL_STUDIO_API_KEY``, a secret).
    """
    from active_finetuning.data.artifacts import read_selection
    from active_finetuning.data.manifest import read_manifest
    from active_finetuning.labels import export_for_annotation as export

    written = export(read_selection(selection.path), read_manifest(manifest.path), tasks.path,
                     format=annotation_format, signed_urls=signed_urls)
    tasks.metadata.update({"tasks": len(written), "format": annotation_format})
    if label_studio_url:
        from active_finetuning.labelstudio import LabelStudio

        pushed, present = LabelStudio(label_studio_url).push(label_studio_project, written)
        tasks.metadata.update({"pushed": pushed, "already_in_project": present, "project": label_studio_project})
