# shellcheck shell=bash
# The local runtime: a venv beside the checkout holding the pinned requirements
# (sourced by scripts/lib.sh; the test runner and CI set it up through it too).

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
