# Sourced by image/build.sh and image/test.sh, so that both resolve the same settings the same way:
# variant, torch index, image tag, the CA bundle passed as a build secret, and the container engine.

variant="${VARIANT:-cpu}"
case "$variant" in
  cpu)  torch_index="https://download.pytorch.org/whl/cpu"; suffix="" ;;
  cuda) torch_index=""; suffix="-cuda" ;;
  *) echo "$(basename "$0"): VARIANT must be cpu or cuda, not '$variant'" >&2; exit 2 ;;
esac
version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' src/active_finetuning/__init__.py)"
repository="$(sed -n 's/^REPOSITORY = "\(.*\)"/\1/p' src/active_finetuning/kfp/image.py)"
image="${IMAGE:-$repository:$version$suffix}"
ca_bundle="${CA_BUNDLE:-${SSL_CERT_FILE:-${PIP_CERT:-}}}"
[ -n "$ca_bundle" ] && [ -f "$ca_bundle" ] || ca_bundle=""

# find_engine CANDIDATE…: ENGINE if set, else the first candidate present (docker only when its daemon answers)
find_engine() {
  if [ -n "${ENGINE:-}" ]; then echo "$ENGINE"; return; fi
  for candidate in "$@"; do
    if [ "$candidate" = docker ]; then
      command -v docker >/dev/null && docker info >/dev/null 2>&1 && { echo docker; return; }
    elif command -v "$candidate" >/dev/null; then
      echo "$candidate"; return
    fi
  done
  echo "$(basename "$0"): none of $* found (Debian: apt-get install podman buildah)" >&2
  return 2
}
