#!/usr/bin/env bash
# `make test-image`: build the image (from a locally made Debian base when the registry's base cannot be
# pulled), then run the tests marked `image` against it: who it runs as, what its layers hold, the CLI
# and every component in it, and the budget-study pipeline end to end in its containers
# (kfp.local.DockerRunner over Docker's or podman's API). 10-30 minutes on 2 cores (most of it the build); not in CI's run.
#
# Settings: VARIANT (cpu|cuda), BASE_IMAGE, ENGINE, IMAGE, PIP_CONF, CA_BUNDLE as for image/build.sh;
# PYTHON (default .venv/bin/python) runs the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/image/containers.conf}"
python="${PYTHON:-.venv/bin/python}"

. image/settings.sh
engine="$(find_engine docker podman)" || exit 2

if [ "$variant" = cpu ] && ! "$python" - 2>/dev/null <<'PY'
import urllib.request
urllib.request.urlopen("https://download.pytorch.org/whl/cpu/torch/", timeout=20)
PY
then
  echo "test.sh: PyTorch's CPU wheel index does not answer from here: run with VARIANT=cuda (PyPI's torch)" >&2
  exit 2
fi

if [ -z "${BASE_IMAGE:-}" ]; then
  if "$engine" image exists python:3.11-slim-bookworm 2>/dev/null || "$engine" pull -q python:3.11-slim-bookworm >/dev/null 2>&1
  then BASE_IMAGE=python:3.11-slim-bookworm
  else
    BASE_IMAGE=localhost/debian-python:3.11-bookworm
    if ! "$engine" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
      echo "test.sh: python:3.11-slim-bookworm cannot be pulled; making $BASE_IMAGE with debootstrap"
      image/make-base.sh "$BASE_IMAGE"
    fi
  fi
fi
export BASE_IMAGE VARIANT="$variant" ENGINE="$engine" IMAGE="$image"
start=$(date +%s)
image/build.sh
built=$(( $(date +%s) - start ))
size=$("$engine" image inspect --format '{{.Size}}' "$image")

secrets="$ca_bundle${PIP_CONF:+:$PIP_CONF}"
start=$(date +%s)
ACTIVE_FINETUNING_IMAGE="$image" ACTIVE_FINETUNING_TEST_IMAGE="$image" ACTIVE_FINETUNING_TEST_SECRETS="$secrets" \
  "$python" -m pytest -m image -q -p no:cacheprovider --durations=5 tests
tested=$(( $(date +%s) - start ))
echo "test.sh: $image ($variant, from $BASE_IMAGE, $engine): build ${built} s, size $(( size / 1000000 )) MB, tests ${tested} s"
