# syntax=docker/dockerfile:1
# The one image every pipeline component runs in: the active-finetuning package with kfp pinned to
# the version the components are compiled with, nothing installed at run time, a non-root user.
#
#   docker build -t ghcr.io/active-finetuning/active-finetuning:0.1.0 .                  # CPU
#   docker build -t ghcr.io/active-finetuning/active-finetuning:0.1.0-cuda \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .               # GPU
#
# The tag must match src/active_finetuning/kfp/image.py (IMAGE), or set ACTIVE_FINETUNING_IMAGE when compiling.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG KFP_VERSION=2.17.0
ARG VERSION=0.1.0

LABEL org.opencontainers.image.title="active-finetuning" \
      org.opencontainers.image.description="One-shot active finetuning (ActiveFT, BiLAF, baselines): library, CLI and Kubeflow Pipelines components" \
      org.opencontainers.image.source="https://github.com/active-finetuning/active-finetuning" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# A CUDA base image has no Python of its own: add the distribution's python3 there only.
# hadolint ignore=DL3008
RUN if ! python3 -c "import ensurepip, venv" 2>/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv \
    && useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin app

WORKDIR /opt/active-finetuning
COPY pyproject.toml README.md ./
COPY src/ src/

# torch from the CPU (or CUDA) wheel index first, then the package with kfp at the compiled version.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
    && pip install "/opt/active-finetuning[vision,gcs,tracking,labelstudio,kfp]" "kfp==${KFP_VERSION}" \
    && python -c "import kfp, active_finetuning; assert kfp.__version__ == '${KFP_VERSION}', kfp.__version__"

USER 10001:10001
WORKDIR /home/app
CMD ["active-finetuning", "--help"]
