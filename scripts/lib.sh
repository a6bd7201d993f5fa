# shellcheck shell=bash
# Shared by the host wrappers: errors, usage, paths, and the one place where the
# runtime (a local venv, or a Docker container) is chosen and run. What each
# command reads and writes is declared through scripts/lib/mounts.sh, the local
# runtime is scripts/lib/local.sh, and the Docker runtime scripts/lib/docker.sh,
# sourced only when it is chosen (or by what builds the image).
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

# shellcheck source=scripts/lib/mounts.sh
source "$TG_ROOT/scripts/lib/mounts.sh"
# shellcheck source=scripts/lib/local.sh
source "$TG_ROOT/scripts/lib/local.sh"

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
    docker)
      # shellcheck source=scripts/lib/docker.sh
      source "$TG_ROOT/scripts/lib/docker.sh"
      run_in_docker "$@"
      ;;
  esac
}

# ---- the Docker engine (the runtime's choice asks it; the rest is scripts/lib/docker.sh)

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

