#!/usr/bin/env bash
# Build the project's image with whichever of docker (BuildKit), podman or buildah is present.
#
#   image/build.sh                    CPU variant, tag ghcr.io/active-finetuning/active-finetuning:VERSION
#   VARIANT=cuda image/build.sh       CUDA variant (PyPI's torch), tag …:VERSION-cuda
#
# Settings (environment; `make image VAR=value` passes them):
#   VARIANT      cpu (default) or cuda
#   IMAGE        the tag (default: the repository of src/active_finetuning/kfp/image.py, VERSION[-cuda])
#   BASE_IMAGE   the base (default python:3.11-slim-bookworm); a local image works, see image/make-base.sh
#   ENGINE       docker, podman or buildah (default: the first found, in that order; docker only when its
#                daemon answers)
#   PIP_CONF     a pip configuration file for the build (a private index): passed as a build secret
#   CA_BUNDLE    CA certificates for the build's pip (a proxy's CA): a build secret; default: the file
#                SSL_CERT_FILE or PIP_CERT names, when set
# Neither secret is kept in any layer of the image.
set -euo pipefail
cd "$(dirname "$0")/.."

. image/settings.sh
engine="$(find_engine docker podman buildah)" || exit 2

args=(--build-arg "TORCH_INDEX_URL=$torch_index" --build-arg "VERSION=$version" -t "$image")
[ -n "${BASE_IMAGE:-}" ] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
[ -n "$ca_bundle" ] && args+=(--secret "id=ca-bundle,src=$ca_bundle")
[ -n "${PIP_CONF:-}" ] && args+=(--secret "id=pip-conf,src=$PIP_CONF")
case "$engine" in
  docker) export DOCKER_BUILDKIT=1; cmd=(docker build --network host) ;;
  # --format docker: the OCI format has no SHELL instruction; host network: no bridge needed to reach
  # the package index (podman's netavark fails where the build machine is itself a container)
  podman|buildah) cmd=("$engine" build --format docker --network host --layers) ;;
  *) echo "build.sh: ENGINE must be docker, podman or buildah, not '$engine'" >&2; exit 2 ;;
esac
# extra flags for the engine, e.g. IMAGE_BUILD_FLAGS="--runtime runc --ulimit nofile=20000:20000"
read -r -a extra <<< "${IMAGE_BUILD_FLAGS:-}"
echo "build.sh: $engine, $variant variant, $image${BASE_IMAGE:+ from $BASE_IMAGE}"
start=$(date +%s)
"${cmd[@]}" "${args[@]}" ${extra[@]+"${extra[@]}"} .
echo "build.sh: built $image in $(( $(date +%s) - start )) s"
