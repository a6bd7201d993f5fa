# shellcheck shell=bash
# Shared by the host wrappers: errors, usage, paths, and the one place where the
# runtime (a local venv, or a Docker container) is chosen and run.
#
# A wrapper checks its arguments, declares what the command reads and writes,
# then runs the CLI:
#   check_usage 2 3 "$@"                  # -h/--help, argument count
#   mount_input "$dir"                    # the container may read it (read-only)
#   mount_output "$out"                   # the container may write into this folder
#   run_tensorguess evaluate "$dir" ...   # local venv or Docker; its status is ours
# (mount_train and mount_guess declare train's and guess's, flags included.)
# Docker mounts every declared path at the same path inside the container and
# runs in the caller's working directory, so the arguments need no rewriting and
# every path the command prints or records (guess's `==> IMAGE <==`, guesses.jsonl,
# train_log.json) reads the same as with the local runtime.

TG_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TG_VENV=${TG_VENV:-$TG_ROOT/.venv}
TG_IMAGE_NAME=${TG_IMAGE_NAME:-tensor-guess} # the image repository; tags are <version>-<variant>
TFHUB_HOST=https://tfhub.dev/

die() {
  printf 'tensor-guess: %s\n' "$1" >&2
  exit "${2:-1}"
}

say() {
  printf 'tensor-guess: %s\n' "$1" >&2
}

# usage SCRIPT: print the comment block at the top of SCRIPT (its usage text).
usage() {
  sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$1"
}

# check_usage MIN MAX ARGS...: the wrappers' argument check. -h or --help first
# prints the usage text (the calling script's top comment) and exits 0; fewer than
# MIN or more than MAX arguments (MAX `-`: no limit) print it to stderr, exit 2.
check_usage() {
  local min=$1 max=$2
  shift 2
  case ${1:-} in
    -h | --help) usage "$0"; exit 0 ;;
  esac
  if (($# < min)) || { [[ $max != - ]] && (($# > max)); }; then
    usage "$0" >&2
    exit 2
  fi
}

# abs_path PATH: PATH made absolute (it need not exist yet; its parent should).
abs_path() {
  local path=$1
  if [[ -d $path ]]; then
    (cd "$path" && pwd)
  elif [[ -d $(dirname "$path") ]]; then
    printf '%s/%s\n' "$(cd "$(dirname "$path")" && pwd)" "$(basename "$path")"
  elif [[ $path == /* ]]; then
    clean_path "$path"
  else
    clean_path "$PWD/$path"
  fi
}

# clean_path ABSOLUTE: the path without empty, `.` and `..` parts, worked out on the
# text alone (a path that does not exist yet has no symlinks to follow).
clean_path() {
  clean_path_reply "$1"
  printf '%s\n' "$REPLY"
}

# clean_path_reply ABSOLUTE: clean_path, into REPLY (no subshell: it runs per symlink).
clean_path_reply() {
  local part parts kept=()
  IFS=/ read -r -a parts <<<"$1"
  for part in "${parts[@]}"; do
    case $part in
      "" | .) ;;
      ..) ((${#kept[@]} == 0)) || unset 'kept[${#kept[@]}-1]' ;;
      *) kept+=("$part") ;;
    esac
  done
  local IFS=/
  REPLY=/${kept[*]}
}

# in_dir DIR PATH: where the CLI puts a path given to a flag: relative paths are
# taken inside DIR.
in_dir() {
  if [[ $2 == /* ]]; then clean_path "$2"; else clean_path "$1/$2"; fi
}

# require_dir PATH WHAT: die unless PATH is a folder.
require_dir() {
  [[ -d $1 ]] || die "$2 '$1' is not a folder"
}

# ---- what a command reads and writes (used by the Docker runtime, ignored locally)

TG_MOUNTS=()     # "ro:PATH" (read-only) or "rw:PATH" (writable folder)
declare -gA TG_MOUNT_SOURCE=() # PATH: the host path to mount there, when not PATH itself
declare -gA TG_MOUNT_WHAT=()   # PATH: what a writable folder is, for messages ("report folder")
TG_MODULE=""     # train's feature extractor, when it is a URL or TF Hub handle

# mount_input PATH: the command reads PATH (a file or folder), and may not write it.
# A path that does not exist is left out: the CLI reports it as it would locally.
# Symlinks inside a folder (photos linked from elsewhere) would dangle in the
# container, so where they lead is mounted read-only too (see mount_links).
mount_input() {
  [[ -e $1 ]] || return 0
  local path
  path=$(abs_path "$1")
  TG_MOUNTS+=("ro:$path")
  [[ -d $path ]] || return 0
  mount_links "$path" < <(find -H "$path" -type l -printf '%Y\0%p\0%l\0' 2>/dev/null)
}

# mount_links INSIDE: read, NUL-separated, each symlink's kind once followed
# (find's %Y), path and text, and mount read-only what the container needs to
# follow it: a linked folder, or the folder holding a linked file; never a place
# inside INSIDE (mounted already, its own links are in the list) nor one that
# would hide the image's own. The container looks for the link's first hop where
# its text says (the link's folder is a real one there), so that is where the
# mount goes; its source is where the host's kernel finds it (`realpath`: through
# symlinked folders and `..`). A link to a link whose folder is outside is mounted
# as the file itself, resolved to the end. Dangling links and loops are left as
# they are: the CLI reports them unreadable, as it would locally.
mount_links() {
  local inside=$1 kind link text first folder i n
  local kinds=() links=() firsts=() asked=() real=()
  while IFS= read -r -d '' kind && IFS= read -r -d '' link && IFS= read -r -d '' text; do
    [[ $kind == [df] && -n $text ]] || continue
    # The first hop, as the container sees it.
    if [[ $text == /* ]]; then first=$text; else first=${link%/*}/$text; fi
    clean_path_reply "$first"
    first=$REPLY
    [[ -n $inside && ($first == "$inside" || $first == "$inside"/*) ]] && continue
    kinds+=("$kind") links+=("$link") firsts+=("$first")
    # Asked of realpath, two per link: the link to the end, and its first hop's folder.
    if [[ $text == */* ]]; then folder=${text%/*}; else folder=.; fi
    [[ $text == /* ]] || folder=${link%/*}/$folder
    asked+=("$link" "${folder:-/}")
  done
  n=${#links[@]}
  ((n)) || return 0
  # One realpath for them all (-m: an answer for each, in order).
  mapfile -d '' -t real < <(realpath -z -m -- "${asked[@]}")
  for ((i = 0; i < n; i++)); do
    local target=${real[2 * i]} first_dir=${real[2 * i + 1]} where source
    [[ -e $target ]] || continue
    first=${firsts[i]}
    if [[ ${kinds[i]} == d ]]; then
      where=$first source=$target
    elif [[ -L $first_dir/${first##*/} ]]; then
      where=$first source=$target # a chain of links: the file itself
    else
      where=${first%/*} source=$first_dir
      where=${where:-/}
    fi
    [[ -n $inside && ($where == "$inside" || $where == "$inside"/*) ]] && continue
    reserved_in_image "$where" && continue
    TG_MOUNTS+=("ro:$where")
    [[ $source == "$where" ]] || TG_MOUNT_SOURCE[$where]=$source
  done
}

# mount_output FOLDER [WHAT]: the command writes into FOLDER (WHAT, for messages:
# "report folder"; default "folder"). The Docker runtime creates it first, as the
# caller, so that it belongs to them.
mount_output() {
  local path
  path=$(abs_path "$1")
  TG_MOUNTS+=("rw:$path")
  [[ -z ${2:-} ]] || TG_MOUNT_WHAT[$path]=$2
}

# mount_train DIR ARGS...: declare what `train DIR ARGS...` reads and writes: DIR
# (writable) but not its photos DIR/data (read-only), path flags pointing
# elsewhere (relative ones are inside DIR, as the CLI takes them) and a local
# module folder; notes a module URL or handle in TG_MODULE. Flags are recognised
# spelled in full, as `--flag VALUE` or `--flag=VALUE`.
mount_train() {
  local dir=$1 arg name value module=${TFHUB_MODULE:-}
  shift
  mount_output "$dir"
  mount_input "$dir/data"
  while (($#)); do
    arg=$1
    shift
    [[ $arg == --?* ]] || continue
    name=${arg#--}
    if [[ $name == *=* ]]; then
      value=${name#*=}
      name=${name%%=*}
    else
      case $name in
        image_dir | labels_csv | tfhub_module | bottleneck_dir | output_graph | output_labels | \
          saved_model_dir | train_log | summaries_dir | report_dir)
          (($#)) || continue
          value=$1
          shift
          ;;
        *) continue ;;
      esac
    fi
    case $name in
      image_dir) mount_input "$(in_dir "$dir" "$value")" ;;
      # The CSV's folder: the photos it names are relative to it.
      labels_csv) mount_input "$(dirname "$(in_dir "$dir" "$value")")" ;;
      # Folders the CLI writes files into.
      bottleneck_dir | summaries_dir) mount_output "$(in_dir "$dir" "$value")" ;;
      report_dir) mount_output "$(in_dir "$dir" "$value")" "report folder" ;;
      # Files, and the SavedModel folder that the CLI swaps in whole (a rename
      # cannot replace a mount point): the folder that holds them is mounted.
      output_graph | output_labels | train_log | saved_model_dir)
        mount_output "$(dirname "$(in_dir "$dir" "$value")")" ;;
      tfhub_module) module=$value ;;
    esac
  done
  [[ -n $module ]] || module=$(default_module)
  if [[ $module =~ ^[a-z][a-z0-9+.-]*:// ]]; then
    TG_MODULE=$module
  elif [[ $module == /* ]]; then
    mount_input "$module"
  elif [[ -e $module ]]; then
    mount_input "$module"  # the CLI finds a relative folder from the working directory
  else
    TG_MODULE=$module  # a TF Hub handle such as google/imagenet/...
  fi
}

# mount_guess DIR ARGS...: declare what `guess DIR ARGS...` reads (all read-only):
# DIR, the images among ARGS, and --output_graph/--output_labels elsewhere. An
# image is given by its folder, mounted once however many images it holds (and
# worked out without a subshell per image: `guess.sh DIR photos/*.jpg` may name
# thousands); symlinked images add where they lead (mount_links).
mount_guess() {
  local dir=$1 arg images_only=0 links=() folder
  local -A seen=()
  shift
  mount_input "$dir"
  while (($#)); do
    arg=$1
    shift
    if ((!images_only)); then
      case $arg in
        --) images_only=1; continue ;;
        --output_graph=* | --output_labels=*) mount_input "$(in_dir "$dir" "${arg#*=}")"; continue ;;
        --output_graph | --output_labels)
          (($#)) || continue
          mount_input "$(in_dir "$dir" "$1")"
          shift
          continue
          ;;
        --final_tensor_name | --batch_size | --model | --engine | --ray_address | --ray_photos) (($#)) && shift; continue ;;
        -*) continue ;;
      esac
    fi
    [[ -e $arg ]] || continue # the CLI reports it
    # A folder, or a path whose `..` the kernel must resolve: as mount_input does.
    if [[ -d $arg || /$arg/ == */../* ]]; then
      mount_input "$arg"
      continue
    fi
    [[ $arg == /* ]] || arg=$PWD/$arg
    clean_path_reply "$arg"
    [[ -L $REPLY ]] && links+=("$REPLY")
    folder=${REPLY%/*}
    if [[ -z $folder ]]; then
      mount_input "$REPLY" # an image in / : not all of /
    elif [[ -z ${seen[$folder]:-} ]]; then
      seen[$folder]=1
      TG_MOUNTS+=("ro:$folder")
    fi
  done
  ((${#links[@]} == 0)) || mount_links "" < <(find "${links[@]}" -maxdepth 0 -printf '%Y\0%p\0%l\0' 2>/dev/null)
}

# mount_export DIR: declare what `export DIR` reads and writes: DIR (writable: the
# exported files, the report) and the photos the training's log names (read-only:
# int8 calibrates on its training photos, the accuracy table scores its test ones).
mount_export() {
  local dir=$1 value
  mount_output "$dir"
  [[ -f $dir/train_log.json ]] || return 0
  # train_log.json's flags, one per line (strict JSON, indent 1); a path holding a quote
  # or a backslash is escaped there and is not found: export then reports the photos missing.
  value=$(sed -n 's/^  "image_dir": "\([^"\\]*\)",\{0,1\}$/\1/p' "$dir/train_log.json" | head -n 1)
  [[ -z $value ]] || mount_input "$value"
  value=$(sed -n 's/^  "labels_csv": "\([^"\\]*\)",\{0,1\}$/\1/p' "$dir/train_log.json" | head -n 1)
  [[ -z $value ]] || mount_input "$(dirname "$value")"
}

# mount_serve DIR ARGS...: declare what `serve DIR ARGS...` reads (read-only): DIR
# and --output_graph/--output_labels elsewhere; and the address it listens on
# (--host, default 127.0.0.1; --port, default 8080), which the Docker runtime
# publishes on that same host address (see publish_port).
mount_serve() {
  local dir=$1 arg host=127.0.0.1 port=8080
  shift
  mount_input "$dir"
  while (($#)); do
    arg=$1
    shift
    case $arg in
      --output_graph=* | --output_labels=*) mount_input "$(in_dir "$dir" "${arg#*=}")" ;;
      --host=*) host=${arg#*=} ;;
      --port=*) port=${arg#*=} ;;
      --output_graph | --output_labels | --host | --port)
        (($#)) || continue
        case $arg in
          --host) host=$1 ;;
          --port) port=$1 ;;
          *) mount_input "$(in_dir "$dir" "$1")" ;;
        esac
        shift
        ;;
    esac
  done
  publish_port "$host" "$port"
}

# publish_port HOST PORT: the command serves on HOST:PORT. The Docker runtime then
# gives the container a network (the default bridge, instead of none), publishes the
# port on HOST only (`-p HOST:PORT:PORT`), and has the server listen on 0.0.0.0
# inside, saying HOST as its address; the local runtime needs nothing.
TG_PUBLISH=()
publish_port() {
  TG_PUBLISH=("$1" "$2")
}

# ---- the runtimes

# choose_runtime: sets TG_RUNTIME_CHOSEN to local or docker, from TG_RUNTIME:
# auto (default: Docker when an engine answers, else local), local or docker.
choose_runtime() {
  case ${TG_RUNTIME:-auto} in
    local) TG_RUNTIME_CHOSEN=local ;;
    auto) if docker_answers; then TG_RUNTIME_CHOSEN=docker; else TG_RUNTIME_CHOSEN=local; fi ;;
    docker)
      docker_answers ||
        die "TG_RUNTIME=docker but no Docker engine answers ($TG_DOCKER_WHY); start dockerd or use TG_RUNTIME=local"
      TG_RUNTIME_CHOSEN=docker
      ;;
    *) die "TG_RUNTIME must be auto, local or docker, not '${TG_RUNTIME}'" 2 ;;
  esac
}

# run_tensorguess ARGS...: run the Python CLI in the chosen runtime, in place of
# the wrapper (exec), so it must come last. The wrapper's pid is then the CLI's
# (locally) or the docker client's: a kill, a Ctrl-C or a SIGTERM reaches what
# does the work instead of a shell waiting on it, and its status is the wrapper's.
run_tensorguess() {
  choose_runtime
  case $TG_RUNTIME_CHOSEN in
    local)
      ensure_local_runtime
      export PYTHONPATH="$TG_ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
      exec "$TG_VENV/bin/python" -m tensorguess "$@"
      ;;
    docker) run_in_docker "$@" ;;
  esac
}

# ---- the local runtime

# stamp_of REQUIREMENTS: where the venv records which version of that file it holds.
stamp_of() {
  printf '%s/.stamp-%s\n' "$TG_VENV" "$(basename "$1")"
}

# ensure_local_runtime [REQUIREMENTS...]: a venv holding the pinned requirements.txt
# (and any extra requirements files, as the test runner passes), made on first use.
# shellcheck disable=SC2120  # the test runner passes its extra requirements
ensure_local_runtime() {
  local file missing=()
  for file in "$TG_ROOT/requirements.txt" "$@"; do
    [[ -x $TG_VENV/bin/python && -f $(stamp_of "$file") && $(cat "$(stamp_of "$file")") == "$(sha1sum <"$file")" ]] ||
      missing+=("$file")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ ! -x $TG_VENV/bin/python ]]; then
    local python=${TG_PYTHON:-python3}
    command -v "$python" >/dev/null || die "the local runtime needs python3 (3.10 or newer); install it or use Docker"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
      die "the local runtime needs Python 3.10 or newer; $python is $("$python" --version 2>&1)"
    say "setting up the local runtime in $TG_VENV (first use only, a few minutes)"
    "$python" -m venv "$TG_VENV" || die "could not create a venv in $TG_VENV (on Debian: apt-get install python3-venv)"
  fi
  for file in "${missing[@]}"; do
    say "installing pinned packages of $(basename "$file") into $TG_VENV"
    "$TG_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$file" ||
      die "installing $file into $TG_VENV failed (see pip's message above)"
    local digest
    digest=$(sha1sum <"$file")
    printf '%s\n' "$digest" >"$(stamp_of "$file")"
  done
}

# ---- the Docker runtime

# docker_answers: whether a Docker engine answers, within seconds and quietly. On
# failure TG_DOCKER_WHY says why, in one line.
docker_answers() {
  local out status=0
  if ! command -v docker >/dev/null; then
    TG_DOCKER_WHY="the docker command is not installed"
    return 1
  fi
  # `docker version` names the problem plainly (`docker info --format` does not on
  # Docker 20.10); the timeout covers an unreachable remote DOCKER_HOST.
  out=$(timeout 10 docker version --format '{{.Server.Version}}' 2>&1) || status=$?
  ((status == 0)) && return 0
  if ((status == 124)); then
    TG_DOCKER_WHY="docker version got no answer within 10 s"
  else
    TG_DOCKER_WHY=$(printf '%s\n' "$out" | grep -v '^[[:space:]]*$' | tail -n 1)
  fi
  return 1
}

tg_version() {
  sed -n 's/^version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$TG_ROOT/pyproject.toml" | head -n 1
}

# default_module: the CLI's default feature extractor (DEFAULT_MODULE in modules.py).
default_module() {
  sed -n 's/^DEFAULT_MODULE = "\(.*\)"$/\1/p' "$TG_ROOT/src/tensorguess/features/modules.py"
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

# reserved_in_image PATH: succeeds when mounting PATH would hide part of the image
# (the system, the venv, HOME); that part into REPLY (no subshell: it runs per path).
reserved_in_image() {
  local place
  for place in /bin /boot /dev /etc /home/tensorguess /lib /lib32 /lib64 /libx32 /opt/tensorguess \
    /proc /sbin /sys /usr; do
    if [[ $1 == "$place" || $1 == "$place"/* || $1 == / || $place == "$1"/* ]]; then
      REPLY=$place
      return 0
    fi
  done
  return 1
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
