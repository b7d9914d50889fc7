# The one image every pipeline component runs in: the active-finetuning package with kfp pinned to
# the version the components are compiled with, nothing installed at run time, a non-root user.
# `make image` builds it with docker (BuildKit), podman or buildah, whichever is present:
#
#   make image                        # CPU: torch from PyTorch's CPU wheel index   (…:0.1.0)
#   make image VARIANT=cuda           # CUDA: PyPI's torch, which bundles CUDA       (…:0.1.0-cuda)
#   make image BASE_IMAGE=localhost/debian-python:3.11-bookworm   # a local base (image/make-base.sh)
#
# Plain docker: `docker build -t ghcr.io/active-finetuning/active-finetuning:0.1.0 .` (CPU) and
# `--build-arg TORCH_INDEX_URL= -t …:0.1.0-cuda` (CUDA). The CUDA variant needs no CUDA base image: the
# nvidia-* wheels PyPI's torch depends on carry the CUDA runtime; the node needs only the driver.
# The tag must match src/active_finetuning/kfp/image.py (IMAGE), or set ACTIVE_FINETUNING_IMAGE when compiling.
#
# No `# syntax=` line: BuildKit then uses its built-in Dockerfile frontend instead of pulling one,
# so the build works without a registry (RUN --mount is built in since Docker 23; buildah has it too).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# Empty: take torch from the configured package index (PyPI's Linux torch is a CUDA build).
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

# A base image without Python (a CUDA or distroless-like base) gets the distribution's python3.
# hadolint ignore=DL3008
RUN if ! python3 -c "import ensurepip, venv" 2>/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv \
    && useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin app

# The build machine's package-index settings and CA bundle (a private index, a proxy's CA) reach pip as
# build secrets, mounted for the installing steps only: no layer keeps them (`make test-image` checks every
# layer).   --secret id=pip-conf,src=PIP_CONF   --secret id=ca-bundle,src=CA_BUNDLE   (both optional)
# torch first, in a layer of its own that a change of the project's source leaves cached: from the CPU wheel
# index, or (TORCH_INDEX_URL empty) the configured index. Every package is pinned: hadolint takes the
# optional --index-url for one.
# hadolint ignore=DL3013
RUN --mount=type=secret,id=pip-conf,target=/run/secrets/pip-conf \
    --mount=type=secret,id=ca-bundle,target=/run/secrets/ca-bundle \
    if [ -s /run/secrets/pip-conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip-conf; fi \
    && if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && pip install ${TORCH_INDEX_URL:+--index-url "${TORCH_INDEX_URL}"} \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
    && rm -rf /root/.cache /tmp/*

WORKDIR /opt/active-finetuning
COPY pyproject.toml README.md ./
COPY src/ src/

# then the package, with kfp at the version the components are compiled with
RUN --mount=type=secret,id=pip-conf,target=/run/secrets/pip-conf \
    --mount=type=secret,id=ca-bundle,target=/run/secrets/ca-bundle \
    if [ -s /run/secrets/pip-conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip-conf; fi \
    && if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && pip install "/opt/active-finetuning[vision,gcs,tracking,labelstudio,kfp]" "kfp==${KFP_VERSION}" \
    && python -c "import kfp, active_finetuning; assert kfp.__version__ == '${KFP_VERSION}', kfp.__version__" \
    && rm -rf /root/.cache /tmp/*

# Idle OpenMP threads spin ~30 µs, then sleep, in every component, as the command line sets them
# (src/active_finetuning/resources.py); last, so that tuning them rebuilds no layer. A pod's env overrides them.
ENV OMP_WAIT_POLICY=PASSIVE \
    GOMP_SPINCOUNT=3000

USER 10001:10001
WORKDIR /home/app
CMD ["active-finetuning", "--help"]
