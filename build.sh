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
#                          while building, for a TLS-intercepting proxy; never in
#                          the final image. Remembered (git-ignored, under
#                          docker/extra-ca/build/) for later builds, the wrappers'
#                          automatic rebuilds included; set and empty trusts none
#                          (remembered too). Unset with nothing remembered: the
#                          host's own extra CAs, every *.crt under
#                          /usr/local/share/ca-certificates (TG_HOST_CA_DIR),
#                          remembered the same way; rm -r docker/extra-ca/build
#                          goes back to that default
#   IMAGE_NAME=NAME        image repository (default: tensor-guess)
#
# Other arguments go to `docker build` as they are (--no-cache, --pull, ...).
# Example:
#   EXTRA_CA_CERTS=/usr/local/share/ca-certificates/proxy.crt BAKE_MODULE= ./build.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/lib.sh"
# shellcheck source=scripts/lib/docker.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/lib/docker.sh"

case "${1:-}" in
  -h | --help)
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
    exit 0
    ;;
esac

root=$TG_ROOT
variant="${VARIANT:-cpu}"
name="${IMAGE_NAME:-$TG_IMAGE_NAME}"
case "$variant" in
  cpu | gpu) ;;
  *) die "VARIANT must be cpu or gpu, not '$variant'" ;;
esac

version="$(tg_version)"
[[ -n "$version" ]] || die "no version found in $root/pyproject.toml"

command -v docker >/dev/null 2>&1 || die "docker is not installed"
docker_answers || die "no Docker engine answers ($TG_DOCKER_WHY)"

build_args=(--build-arg "VERSION=$version" --build-arg "VARIANT=$variant"
  --build-arg "SOURCE_HASH=$(source_hash)")
[[ -z "${BASE_IMAGE:-}" ]] || build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
# Set-but-empty is meaningful here: it turns the baked module off.
[[ -z "${BAKE_MODULE+x}" ]] || build_args+=(--build-arg "BAKE_MODULE=$BAKE_MODULE")

# Extra CA certificates travel in a git-ignored folder of the build context, which
# the Dockerfile's build stages trust. They stay there for the next build: the
# same certificates under the same names keep the pip layer cached, so a rebuild
# after a code change (the wrappers do it themselves) needs neither the network
# nor EXTRA_CA_CERTS again. One build at a time per checkout while it changes.
# Which ones: EXTRA_CA_CERTS, else those remembered, else the host's own extra CAs
# (ca_certs_to_stage in scripts/lib/docker.sh).
ca_dir="$root/docker/extra-ca/build"
ca_certs_to_stage "$ca_dir"
if [[ $TG_CA_FROM != remembered ]]; then
  # Staged apart and swapped in only when they differ from the remembered ones, so the
  # same certificates need no write access to the checkout (a test user's rebuild).
  staged="$(mktemp -d)"
  trap 'rm -rf -- "$staged"' EXIT
  n=0
  for cert in "${TG_CA_CERTS[@]}"; do
    n=$((n + 1))
    base="$(basename "$cert")"
    base="${base%.*}"
    # update-ca-certificates only reads *.crt
    cp -- "$cert" "$staged/$(printf '%02d' "$n")-${base//[^A-Za-z0-9._-]/_}.crt"
  done
  if [[ $TG_CA_FROM == host ]] && ((n == 0)); then
    : # nothing to trust and nothing to remember: a CA the host adds later still counts
  elif ! diff -r -q -- "$staged" "$ca_dir" >/dev/null 2>&1; then
    # An empty folder remembers an empty EXTRA_CA_CERTS: no extra CA, not even the host's.
    rm -rf -- "$ca_dir"
    if ! { mkdir -p "$ca_dir" && { ((n == 0)) || cp -- "$staged"/*.crt "$ca_dir"/; }; }; then
      [[ $TG_CA_FROM == host ]] || die "cannot remember the certificates in $ca_dir"
      # Only a default: a checkout this user cannot write still builds, as before.
      rm -rf -- "$ca_dir" 2>/dev/null || true
      say "cannot copy the host's CA certificates into $ca_dir; building without them"
    fi
  fi
fi
if [[ -d "$ca_dir" ]] && (($(find "$ca_dir" -name '*.crt' | wc -l))); then
  from=""
  [[ $TG_CA_FROM != host ]] || from=", the host's from ${TG_HOST_CA_DIR:-/usr/local/share/ca-certificates}"
  say "trusting $(find "$ca_dir" -name '*.crt' | wc -l) extra CA certificate file(s) during the build ($ca_dir$from)"
fi

tag="$name:$version-$variant"
previous="$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
SECONDS=0
# --force-rm: a failed step's container is removed too (the legacy builder keeps it).
docker build \
  --force-rm \
  --file "$root/docker/Dockerfile" \
  --tag "$tag" \
  --tag "$name:$variant" \
  "${build_args[@]}" \
  "$@" \
  "$root"

# The image this one replaces would be left dangling by every rebuild after a code
# change: remove it, but only when no tag names it any more (one the user gave it,
# `docker tag tensor-guess:cpu tensor-guess:known-good`, keeps it; removing it by ID
# would delete that tag with it). A container still using it makes docker refuse,
# and that is fine. Layers the new image shares stay.
if [[ -n "$previous" && "$previous" != "$(docker image inspect --format '{{.Id}}' "$tag")" &&
  "$(docker image inspect --format '{{len .RepoTags}}' "$previous" 2>/dev/null)" == 0 ]]; then
  docker image rm "$previous" >/dev/null 2>&1 || true
fi
size="$(docker image inspect --format '{{.Size}}' "$tag")"
say "built $tag (alias $name:$variant), $((size / 1000000)) MB, in ${SECONDS}s"
