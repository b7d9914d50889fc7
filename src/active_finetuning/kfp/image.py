"""The one image every component runs in (built from the repository's Dockerfile).

Override with the environment variable ``ACTIVE_FINETUNING_IMAGE`` when compiling for your own
registry; the default tag is the package version, so a compiled pipeline names the image that
holds the library it was compiled against.
"""

from __future__ import annotations

import os

from active_finetuning import __version__

REPOSITORY = "ghcr.io/active-finetuning/active-finetuning"
IMAGE = os.environ.get("ACTIVE_FINETUNING_IMAGE") or f"{REPOSITORY}:{__version__}"
# Every component: our image, nothing installed at run time (docs/design.md, "Kubeflow Pipelines").
COMPONENT_OPTIONS = dict(base_image=IMAGE, install_kfp_package=False)
