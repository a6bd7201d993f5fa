# shellcheck shell=bash
# The Docker runtime: the image (built or rebuilt from this checkout), the
# container's mounts, network, ports and GPUs, and the run itself. Sourced by
# scripts/lib.sh only when the Docker runtime is chosen, and by build.sh.

TG_IMAGE_NAME=${TG_IMAGE_NAME:-tensor-guess} # the image repository; tags are <version>-<variant>
TFHUB_HOST=https://tfhub.dev/

tg_version() {
  sed -n 's/^version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$TG_ROOT/pyproject.toml" | head -n 1
}

# source_hash: a digest of what the image is built from (.dockerignore's allow-list
# less the CA certificates); build.sh labels the image with it, and the wrappers
# rebuild an image whose label differs from the checkout.
source_hash() {
  (
    cd "$TG_ROOT" &&
      find docker/Dockerfile docker/entrypoint.sh requirements.txt src/tensorguess -type f \
        ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 |
      LC_ALL=C sort -z | xargs -0 sha1sum | sha1sum | cut -c1-40
  )
}

# use_gpu: whether to run the GPU image with --gpus all. TG_GPU=1 forces it (built
# on first use), 0 turns it off; by default (auto) yes when the GPU image is already
# here (built with VARIANT=gpu bash build.sh, or TG_IMAGE) and the engine lists an
# NVIDIA runtime, or the NVIDIA container toolkit's hook is installed and nvidia-smi
# sees a GPU. Auto never builds the GPU image (6.4 GB) by itself.
use_gpu() {
  case ${TG_GPU:-auto} in
    1) return 0 ;;
    0) return 1 ;;
    auto)
      docker image inspect "${TG_IMAGE:-$TG_IMAGE_NAME:$(tg_version)-gpu}" >/dev/null 2>&1 || return 1
      [[ " $(docker info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}' 2>/dev/null) " == *" nvidia "* ]] &&
        return 0
      command -v nvidia-container-runtime-hook >/dev/null && command -v nvidia-smi >/dev/null &&
        nvidia-smi -L >/dev/null 2>&1
      ;;
    *) die "TG_GPU must be auto, 1 or 0, not '${TG_GPU}'" 2 ;;
  esac
}

# ensure_image VARIANT: sets TG_IMAGE_CHOSEN to the image to run: $TG_IMAGE as it is,
# else tensor-guess:<version>-VARIANT, built now when missing and rebuilt when this
# checkout's sources differ from the ones it was built from (cached layers make
# that quick; its base image and baked module are kept unless BASE_IMAGE or
# BAKE_MODULE say otherwise).
ensure_image() {
  local variant=$1 image labels hash="" base="" baked=""
  if [[ -n ${TG_IMAGE:-} ]]; then
    docker image inspect "$TG_IMAGE" >/dev/null 2>&1 ||
      die "TG_IMAGE=$TG_IMAGE: no such image here (build one with bash build.sh, or unset TG_IMAGE)"
    TG_IMAGE_CHOSEN=$TG_IMAGE
    return 0
  fi
  image=$TG_IMAGE_NAME:$(tg_version)-$variant
  TG_IMAGE_CHOSEN=$image
  if ! labels=$(docker image inspect --format \
    '{{index .Config.Labels "io.tensorguess.source-hash"}}{{"\n"}}{{index .Config.Labels "io.tensorguess.base-image"}}{{"\n"}}{{index .Config.Labels "io.tensorguess.baked-module"}}' \
    "$image" 2>/dev/null); then
    say "building the Docker image $image (first use only, a few minutes)"
    build_image "$variant" "$image"
    return 0
  fi
  { read -r hash; read -r base; read -r baked; } <<<"$labels" || true
  # An image without the label was not built by build.sh: used as it is.
  [[ -z $hash || $hash == "$(source_hash)" ]] && return 0
  say "rebuilding the Docker image $image: the sources changed since it was built"
  BASE_IMAGE=${BASE_IMAGE:-$base} BAKE_MODULE=${BAKE_MODULE-$baked} build_image "$variant" "$image"
}

# build_image VARIANT IMAGE: build.sh, its output on stderr (stdout is the command's).
build_image() {
  VARIANT=$1 IMAGE_NAME=$TG_IMAGE_NAME bash "$TG_ROOT/build.sh" >&2 ||
    die "building the Docker image $2 failed (see above); without Docker Hub, build the base first: sudo bash scripts/local-base.sh"
}

# ca_certs_to_stage REMEMBERED: which extra CA certificates build.sh puts into the
# build context (REMEMBERED: docker/extra-ca/build, kept between builds), for a
# build behind a TLS-intercepting proxy. Into TG_CA_CERTS the files to copy there,
# into TG_CA_FROM where they come from:
#   given       EXTRA_CA_CERTS is set: its colon-separated PEM files; none when it is
#               empty (no extra CA, and later builds remember that). A file that
#               cannot be read or is not PEM stops the build: the user named it.
#   remembered  EXTRA_CA_CERTS is unset and REMEMBERED exists (an earlier build's
#               choice): kept as it is, nothing to copy.
#   host        neither: the CAs this host trusts beyond Debian's own, every *.crt
#               under TG_HOST_CA_DIR (default /usr/local/share/ca-certificates,
#               where update-ca-certificates takes them from; subfolders and links
#               included), in name order, so that a host which trusts its proxy
#               builds with nothing set. A file that cannot be read or is not PEM
#               is left out, saying so: it is not the user's choice.
# shellcheck disable=SC2034  # TG_CA_FROM is read by build.sh
ca_certs_to_stage() {
  local remembered=$1 cert certs=() host_dir=${TG_HOST_CA_DIR:-/usr/local/share/ca-certificates}
  TG_CA_CERTS=()
  if [[ -n ${EXTRA_CA_CERTS+x} ]]; then
    TG_CA_FROM=given
    IFS=: read -r -a certs <<<"$EXTRA_CA_CERTS"
    for cert in "${certs[@]}"; do
      [[ -n $cert ]] || continue
      [[ -f $cert && -r $cert ]] || die "EXTRA_CA_CERTS: cannot read '$cert'"
      grep -q -- '-----BEGIN CERTIFICATE-----' "$cert" || die "EXTRA_CA_CERTS: '$cert' is not a PEM certificate"
      TG_CA_CERTS+=("$cert")
    done
  elif [[ -d $remembered ]]; then
    TG_CA_FROM=remembered
  else
    TG_CA_FROM=host
    [[ -d $host_dir ]] || return 0
    mapfile -d '' -t certs < <(find -L "$host_dir" -type f -name '*.crt' -print0 2>/dev/null | LC_ALL=C sort -z)
    for cert in "${certs[@]}"; do
      if [[ ! -r $cert ]]; then
        say "leaving out the host's CA certificate $cert: it cannot be read"
      elif ! grep -q -- '-----BEGIN CERTIFICATE-----' "$cert"; then
        say "leaving out the host's CA certificate $cert: it is not a PEM certificate"
      else
        TG_CA_CERTS+=("$cert")
      fi
    done
  fi
  return 0
}

# mount_option MODE PATH [SOURCE]: into REPLY, a --mount value binding SOURCE
# (default PATH) at PATH, quoted as CSV fields so that commas and quotes survive.
mount_option() {
  local target=${2//\"/\"\"} source=${3:-$2}
  source=${source//\"/\"\"}
  REPLY="type=bind,\"source=$source\",\"target=$target\""
  [[ $1 == ro ]] && REPLY+=,readonly
  return 0
}

# docker_mounts: TG_DOCKER_MOUNTS, the --mount options for TG_MOUNTS. Writable
# folders are created first (as the caller); a path asked for twice is writable if
# either asks; a mount inside another of the same mode is left out when the
# container would find the same place through the other (no symlink between them
# leading elsewhere: compared once resolved by the host, one realpath for all).
# Linear in the number of paths: each one looks for its nearest kept parent by
# walking up its own components.
docker_mounts() {
  local entry mode path parent pmode slashes what i paths=() real=()
  local -A want=() mounted=() source=()
  for entry in "${TG_MOUNTS[@]}"; do
    mode=${entry%%:*}
    path=${entry#*:}
    [[ ${want[$path]:-} == rw ]] || want[$path]=$mode
  done
  TG_DOCKER_MOUNTS=()
  ((${#want[@]})) || return 0
  # Shallowest first, so each path's enclosing mount is already decided.
  mapfile -d '' -t paths < <(for path in "${!want[@]}"; do
    slashes=${path//[^\/]/}
    printf '%04d %s\0' "${#slashes}" "$path"
  done | LC_ALL=C sort -z)
  paths=("${paths[@]#* }")
  for path in "${paths[@]}"; do
    if reserved_in_image "$path"; then
      die "cannot give $path to the container: it would hide the image's own $REPLY; move it or use TG_RUNTIME=local"
    fi
    if [[ ${want[$path]} == rw && ! -d $path ]]; then
      what=${TG_MOUNT_WHAT[$path]:-folder}
      if [[ -e $path || -L $path ]]; then
        die "$path exists and is not a folder; choose another $what"
      fi
      mkdir -p -- "$path" || die "cannot create the $what $path"
    fi
  done
  mapfile -d '' -t real < <(realpath -z -m -- "${paths[@]}")
  for ((i = 0; i < ${#paths[@]}; i++)); do
    path=${paths[i]}
    source[$path]=${TG_MOUNT_SOURCE[$path]:-${real[i]}}
  done
  for path in "${paths[@]}"; do
    mode=${want[$path]}
    parent=$path pmode=""
    while [[ $parent == /*/* ]]; do
      parent=${parent%/*}
      if [[ -n ${mounted[$parent]:-} ]]; then
        pmode=${want[$parent]}
        break
      fi
    done
    [[ $pmode == "$mode" && ${source[$path]} == "${source[$parent]%/}/${path#"$parent"/}" ]] && continue
    mounted[$path]=1
    mount_option "$mode" "$path" "${TG_MOUNT_SOURCE[$path]:-}"
    TG_DOCKER_MOUNTS+=(--mount "$REPLY")
  done
}

# module_access: TG_DOCKER_MODULE, the options giving the container train's module
# when it is a URL or handle. One baked into the image needs nothing; one in the
# host's module cache (shared with the local runtime) is mounted read-only;
# otherwise the cache is mounted writable and the container gets the network.
module_access() {
  TG_DOCKER_MODULE=(--network "${TG_DOCKER_NETWORK:-none}")
  [[ -n $TG_MODULE ]] || return 0
  local url=$TG_MODULE baked cache key
  [[ $url =~ ^https?:// ]] || url=$TFHUB_HOST${url#/}
  baked=$(docker image inspect --format '{{index .Config.Labels "io.tensorguess.baked-module"}}' "$TG_IMAGE_CHOSEN" 2>/dev/null) || baked=""
  [[ -n $baked && ! $baked =~ ^https?:// ]] && baked=$TFHUB_HOST${baked#/}
  [[ $url == "$baked" ]] && return 0
  cache=${TFHUB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tensor-guess/tfhub_modules}
  cache=$(abs_path "$cache")
  key=$(printf '%s' "$url" | sha1sum | cut -c1-40)
  if [[ -f $cache/$key/saved_model.pb ]]; then
    mount_input "$cache"
  else
    say "$url is not in the image $TG_IMAGE_CHOSEN: the container gets network access to download it into $cache"
    mount_output "$cache"
    TG_DOCKER_MODULE=()
  fi
  TG_DOCKER_MODULE+=(--env "TFHUB_CACHE_DIR=$cache")
}

# run_in_docker ARGS...: the CLI in a container, the docker client in place of the
# wrapper (exec): stderr as it comes, the container's exit status. The client
# passes SIGINT and SIGTERM on to the CLI (its signal proxy, then --init's tini),
# but nothing can pass on a SIGKILL, and a container outlives its client: so the
# container is also stopped when the client dies, however it dies.
#  - Without a terminal, the container's stdin is a pipe that stays open, silent,
#    while the client lives: `tail --pid` of the client (this shell's pid until the
#    exec), which ignores a Ctrl-C meant for the client and ends a second after
#    it. --interactive makes the attach "stdin once": once the client's connection
#    is gone the daemon closes that stdin, and the CLI, told by TG_EXIT_WITH_CLIENT,
#    stops at its end (src/tensorguess/watchdog.py).
#  - With one (-it), the daemon closes nothing when the client dies (a tty
#    container waits to be attached again), so a watcher on the host removes the
#    container, named after the client, once the client is gone; it ignores the
#    signals a terminal sends (Ctrl-C, hang-up), which reach the CLI through the
#    client, and after a normal end it finds the container already removed (--rm).
run_in_docker() {
  local client=$BASHPID name
  prepare_docker
  if ((TG_DOCKER_TTY)); then
    name=tensor-guess-$client-$RANDOM$RANDOM
    (
      trap '' INT QUIT TERM HUP
      tail --pid="$client" -f /dev/null
      docker rm --force "$name" || true
    ) </dev/null >/dev/null 2>&1 &
    exec docker "${TG_DOCKER_RUN[@]}" --name "$name" "$TG_IMAGE_CHOSEN" "$@" "${TG_DOCKER_CLI_ARGS[@]}"
  fi
  exec docker "${TG_DOCKER_RUN[@]}" --interactive --env TG_EXIT_WITH_CLIENT=1 "$TG_IMAGE_CHOSEN" "$@" \
    "${TG_DOCKER_CLI_ARGS[@]}" \
    < <(trap '' INT QUIT; exec tail --pid="$client" -f /dev/null </dev/null 2>/dev/null)
}

# prepare_docker: TG_IMAGE_CHOSEN (built or rebuilt if need be) and TG_DOCKER_RUN,
# the `docker run` options before it: the caller's uid and gid, the declared mounts
# at their own paths, the caller's working directory, no network unless a module
# must be downloaded, the GPUs when the GPU image is used, a terminal when the
# caller's three streams are one (then TG_DOCKER_TTY=1, else 0).
prepare_docker() {
  local variant=cpu name
  use_gpu && variant=gpu
  docker_publish
  ensure_image "$variant"
  module_access
  docker_mounts
  TG_DOCKER_RUN=(run --rm --init --pull never --user "$(id -u):$(id -g)" --workdir "$PWD"
    --cap-drop ALL --security-opt no-new-privileges --env "TG_UMASK=$(umask)")
  [[ $variant == gpu ]] && TG_DOCKER_RUN+=(--gpus all)
  # A terminal only when all three streams are one: progress bars then redraw in
  # place, and otherwise stdout and stderr stay apart.
  TG_DOCKER_TTY=0
  if [[ -t 0 && -t 1 && -t 2 ]]; then
    TG_DOCKER_TTY=1
    TG_DOCKER_RUN+=(--interactive --tty)
  fi
  for name in TFHUB_MODULE TF_CPP_MIN_LOG_LEVEL TF_ENABLE_ONEDNN_OPTS CUDA_VISIBLE_DEVICES \
    TF_FORCE_GPU_ALLOW_GROWTH; do
    [[ -n ${!name:-} ]] && TG_DOCKER_RUN+=(--env "$name=${!name}")
  done
  # serve's token: by name only, docker reading its value from its own environment, so that
  # the secret is not on a command line that `ps` shows.
  [[ -n ${TG_SERVE_TOKEN:-} ]] && TG_DOCKER_RUN+=(--env TG_SERVE_TOKEN)
  TG_DOCKER_RUN+=("${TG_DOCKER_MODULE[@]}" "${TG_DOCKER_PUBLISH[@]}" "${TG_DOCKER_MOUNTS[@]}")
}

# docker_publish: from TG_PUBLISH (publish_port), TG_DOCKER_NETWORK, TG_DOCKER_PUBLISH
# (the -p option; an IPv6 host in brackets) and TG_DOCKER_CLI_ARGS (the CLI listens on
# every address of the container, and shows the host's); all empty without a port.
TG_DOCKER_PUBLISH=()
TG_DOCKER_CLI_ARGS=()
docker_publish() {
  ((${#TG_PUBLISH[@]})) || return 0
  local host=${TG_PUBLISH[0]} port=${TG_PUBLISH[1]} bound
  [[ $port =~ ^[0-9]+$ ]] || return 0 # the CLI reports a bad --port
  ((port > 0)) || die "--port 0 (any free port) works with the local runtime only (TG_RUNTIME=local); give a port"
  bound=$host
  [[ $host == *:* ]] && bound="[$host]"
  TG_DOCKER_NETWORK=bridge
  TG_DOCKER_PUBLISH=(--publish "$bound:$port:$port")
  TG_DOCKER_CLI_ARGS=(--host 0.0.0.0 --shown_host "$host")
}
