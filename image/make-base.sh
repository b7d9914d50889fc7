#!/usr/bin/env bash
# A Python 3.11 base image made from Debian packages, for machines that cannot pull from an image
# registry: debootstrap a minimal bookworm with python3 and venv, import it as a local image.
# The result stands in for python:3.11-slim-bookworm (the Dockerfile's default BASE_IMAGE).
#
#   image/make-base.sh [TAG]        default TAG: localhost/debian-python:3.11-bookworm
#
# Needs root, debootstrap and podman (or buildah). DEBIAN_MIRROR overrides the mirror (default: the
# one apt uses on this machine, else deb.debian.org).
set -euo pipefail

tag="${1:-localhost/debian-python:3.11-bookworm}"
engine="$(command -v podman || command -v buildah || true)"
[ -n "$engine" ] || { echo "make-base.sh: needs podman or buildah (apt-get install podman buildah)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "make-base.sh: needs debootstrap (apt-get install debootstrap)" >&2; exit 2; }

mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror="$(grep -hoE '^(URIs:|deb) +[a-z]+://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* \
            2>/dev/null | head -1 | awk '{print $2}' || true)"
  mirror="${mirror:-http://deb.debian.org/debian}"
fi

rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
echo "make-base.sh: debootstrap bookworm from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror" >/dev/null
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/*
# only the image's own sources: no proxy, mirror credentials or apt configuration of the build machine
echo "deb http://deb.debian.org/debian bookworm main" > "$rootfs/etc/apt/sources.list"
rm -f "$rootfs"/etc/apt/apt.conf.d/*proxy* "$rootfs"/etc/resolv.conf "$rootfs"/etc/hostname
ln -sf python3 "$rootfs/usr/bin/python"
if [ "$(basename "$engine")" = podman ]; then
  tar -C "$rootfs" -c . | podman import --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' - "$tag" >/dev/null 2>&1
else
  ctr="$(buildah from scratch)"
  buildah copy "$ctr" "$rootfs" / >/dev/null
  buildah config --cmd '["python3"]' --env LANG=C.UTF-8 "$ctr"
  buildah commit --rm "$ctr" "$tag" >/dev/null
fi
echo "make-base.sh: $tag ($( "$engine" run --rm "$tag" python3 --version 2>/dev/null || true))"
