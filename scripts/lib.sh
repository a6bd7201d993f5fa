# shellcheck shell=bash
# Shared by the host wrappers: errors, paths, and the one place the runtime is chosen.

TG_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TG_VENV=${TG_VENV:-$TG_ROOT/.venv}

die() {
  printf 'tensor-guess: %s\n' "$1" >&2
  exit "${2:-1}"
}

say() {
  printf 'tensor-guess: %s\n' "$1" >&2
}

# abs_path PATH: PATH made absolute (it need not exist yet; its parent should).
abs_path() {
  local path=$1
  if [[ -d $path ]]; then
    (cd "$path" && pwd)
  elif [[ -d $(dirname "$path") ]]; then
    printf '%s/%s\n' "$(cd "$(dirname "$path")" && pwd)" "$(basename "$path")"
  elif [[ $path == /* ]]; then
    printf '%s\n' "$path"
  else
    printf '%s/%s\n' "$PWD" "$path"
  fi
}

# require_dir PATH WHAT: die unless PATH is a folder.
require_dir() {
  [[ -d $1 ]] || die "$2 '$1' is not a folder"
}

# choose_runtime: prints local or docker, from TG_RUNTIME (auto, local, docker).
choose_runtime() {
  case ${TG_RUNTIME:-auto} in
    auto | local) echo local ;;
    docker) die "TG_RUNTIME=docker: the Docker runtime is not available in this version; use TG_RUNTIME=local" ;;
    *) die "TG_RUNTIME must be auto, local or docker, not '${TG_RUNTIME}'" 2 ;;
  esac
}

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

# run_tensorguess ARGS...: run the Python CLI in the chosen runtime; its status is ours.
run_tensorguess() {
  local runtime
  runtime=$(choose_runtime) || exit
  case $runtime in
    local)
      ensure_local_runtime
      PYTHONPATH="$TG_ROOT/src${PYTHONPATH:+:$PYTHONPATH}" "$TG_VENV/bin/python" -m tensorguess "$@"
      ;;
  esac
}

# usage SCRIPT: print the comment block at the top of SCRIPT (its usage text).
usage() {
  sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$1"
}
