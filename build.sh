#!/usr/bin/env bash
# Usage: ./build.sh [DOCKER-BUILD-OPTIONS...]
#
# Build the tensor-guess image from docker/Dockerfile and tag it
#   tensor-guess:<version>-<variant>   version read from pyproject.toml
#   tensor-guess:<variant>             alias for the latest local build
#
# Environment:
#   VARIANT=cpu|gpu        cpu (default), or gpu for tensorflow[and-cuda]
#   BASE_IMAGE=NAME        a Debian bookworm image (default: the Dockerfile's,
#                          debian:bookworm-slim; scripts/local-base.sh builds one
#                          when Docker Hub cannot be reached)
#   BAKE_MODULE=URL        feature extractor baked into the image (default: the
#                          Dockerfile's Inception v3); set and empty bakes none
#   EXTRA_CA_CERTS=A:B     PEM CA certificates (colon-separated paths) to trust
#                          while building, for a TLS-intercepting proxy; they are
#                          not kept in the final image
#   IMAGE_NAME=NAME        image repository (default: tensor-guess)
#
# Other arguments go to `docker build` as they are (--no-cache, --pull, ...).
# Example:
#   EXTRA_CA_CERTS=/usr/local/share/ca-certificates/proxy.crt BAKE_MODULE= ./build.sh
set -euo pipefail

die() {
  printf 'tensor-guess: %s\n' "$*" >&2
  exit 1
}

case "${1:-}" in
  -h | --help)
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
    exit 0
    ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
variant="${VARIANT:-cpu}"
name="${IMAGE_NAME:-tensor-guess}"
case "$variant" in
  cpu | gpu) ;;
  *) die "VARIANT must be cpu or gpu, not '$variant'" ;;
esac

version="$(sed -n 's/^version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$root/pyproject.toml" | head -n 1)"
[[ -n "$version" ]] || die "no version found in $root/pyproject.toml"

command -v docker >/dev/null 2>&1 || die "docker is not installed"
docker info >/dev/null 2>&1 || die "no Docker engine answers"

build_args=(--build-arg "VERSION=$version" --build-arg "VARIANT=$variant")
[[ -z "${BASE_IMAGE:-}" ]] || build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
# Set-but-empty is meaningful here: it turns the baked module off.
[[ -z "${BAKE_MODULE+x}" ]] || build_args+=(--build-arg "BAKE_MODULE=$BAKE_MODULE")

# Extra CA certificates travel in a git-ignored folder of the build context,
# which the Dockerfile's build stages trust; removed again when we exit. Its name
# and file names are fixed so that the same certificates keep the layer cache
# (so: one build at a time per checkout when EXTRA_CA_CERTS is set).
ca_dir=""
cleanup() {
  if [[ -n "$ca_dir" ]]; then rm -rf -- "$ca_dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [[ -n "${EXTRA_CA_CERTS:-}" ]]; then
  ca_dir="$root/docker/extra-ca/build"
  rm -rf -- "$ca_dir"
  mkdir -p "$ca_dir"
  IFS=: read -r -a certs <<<"$EXTRA_CA_CERTS"
  n=0
  for cert in "${certs[@]}"; do
    [[ -n "$cert" ]] || continue
    [[ -f "$cert" && -r "$cert" ]] || die "EXTRA_CA_CERTS: cannot read '$cert'"
    grep -q -- '-----BEGIN CERTIFICATE-----' "$cert" ||
      die "EXTRA_CA_CERTS: '$cert' is not a PEM certificate"
    n=$((n + 1))
    base="$(basename "$cert")"
    base="${base%.*}"
    # update-ca-certificates only reads *.crt
    cp -- "$cert" "$ca_dir/$(printf '%02d' "$n")-${base//[^A-Za-z0-9._-]/_}.crt"
  done
  printf 'tensor-guess: trusting %d extra CA certificate file(s) during the build\n' "$n" >&2
fi

tag="$name:$version-$variant"
SECONDS=0
docker build \
  --file "$root/docker/Dockerfile" \
  --tag "$tag" \
  --tag "$name:$variant" \
  "${build_args[@]}" \
  "$@" \
  "$root"

size="$(docker image inspect --format '{{.Size}}' "$tag")"
printf 'tensor-guess: built %s (alias %s), %s MB, in %ss\n' \
  "$tag" "$name:$variant" "$((size / 1000000))" "$SECONDS" >&2
