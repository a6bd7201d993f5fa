# shellcheck shell=bash
# Shared by the files of Docker tests (docker.bats, docker_points.bats): the image
# under test made current, a workspace the test user can reach, and that user.
# Their setup_file calls docker_image_ready, docker_workspace, puts its photos in
# $WORK, then calls docker_test_user; their tests run the wrappers with as_user.

# docker_image_ready: skips the file under TG_TEST_DOCKER=0, fails (saying why)
# without an engine, and makes the image the wrappers use current with this
# checkout. A missing one is built here without a baked module (the tests mount
# theirs); a stale one is rebuilt by the wrappers' own rule, keeping its baked module.
docker_image_ready() {
  if [[ ${TG_TEST_DOCKER:-1} == 0 ]]; then
    skip "TG_TEST_DOCKER=0: Docker runtime tests opted out"
  fi
  # shellcheck source=scripts/lib.sh
  source "$REPO/scripts/lib.sh"
  # shellcheck source=scripts/lib/docker.sh
  source "$REPO/scripts/lib/docker.sh"
  if ! docker_answers; then
    echo "# the Docker tests need a Docker engine: $TG_DOCKER_WHY (TG_TEST_DOCKER=0 opts out)" >&3
    return 1
  fi
  SECONDS=0
  # Given EXTRA_CA_CERTS (behind a TLS-intercepting proxy), or by default the host's
  # own extra CAs when none are remembered yet, build.sh remembers them here, as
  # the caller, for the test user's builds below.
  ca_certs_to_stage "$REPO/docker/extra-ca/build" 2>/dev/null
  if [[ $TG_CA_FROM == given ]] || { [[ $TG_CA_FROM == host ]] && ((${#TG_CA_CERTS[@]})); } ||
    ! docker image inspect "$TG_IMAGE_NAME:$(tg_version)-cpu" >/dev/null 2>&1; then
    BAKE_MODULE='' VARIANT=cpu bash "$REPO/build.sh" >&2
  fi
  (TG_GPU=0 ensure_image cpu)
  echo "# image ready in ${SECONDS}s" >&3
}

# docker_workspace: TOP, a new folder under /tmp (not $TMPDIR: the test user must
# be able to reach it), and WORK="$TOP/my photos" (a path with a space) with its
# home folder, exported.
docker_workspace() {
  TOP=$(mktemp -d /tmp/tensor-guess-docker.XXXXXX)
  chmod 755 "$TOP"
  WORK="$TOP/my photos"
  mkdir -p "$WORK/home"
  export TOP WORK
}

# docker_test_user: root runs the tests as a throwaway user in the docker group (as
# CI does), given $TOP; anyone else runs them as themselves. Exports TEST_UID,
# TEST_GID and DOCKER_GID (empty when not root). Fails, saying why, when the user
# cannot be made or cannot read the repository and the module.
docker_test_user() {
  # The shared photos are read-only files: make the copies writable by their owner,
  # so that only a read-only mount can stop the container writing them.
  chmod -R u+w "$TOP"
  if ((EUID == 0)); then
    if ! getent group docker >/dev/null; then
      echo "# no docker group: the engine's socket must belong to group docker" >&3
      return 1
    fi
    id tg-docker-test >/dev/null 2>&1 ||
      useradd --system --user-group --no-create-home --shell /usr/sbin/nologin tg-docker-test
    TEST_UID=$(id -u tg-docker-test)
    TEST_GID=$(id -g tg-docker-test)
    DOCKER_GID=$(getent group docker | cut -d: -f3)
    chown -R "$TEST_UID:$TEST_GID" "$TOP"
    if ! setpriv --reuid "$TEST_UID" --regid "$TEST_GID" --clear-groups \
      test -r "$REPO/scripts/lib.sh" -a -r "$TFHUB_MODULE/saved_model.pb"; then
      echo "# the test user cannot read $REPO or $TFHUB_MODULE: keep them where others may read" >&3
      return 1
    fi
  else
    TEST_UID=$(id -u)
    TEST_GID=$(id -g)
    DOCKER_GID=""
  fi
  export TEST_UID TEST_GID DOCKER_GID
}

# as_user CMD...: CMD as the test user (in the docker group), in $WORK.
as_user() {
  if [[ -n $DOCKER_GID ]]; then
    (cd "$WORK" && setpriv --reuid "$TEST_UID" --regid "$TEST_GID" --groups "$DOCKER_GID" \
      env HOME="$WORK/home" "$@")
  else
    (cd "$WORK" && "$@")
  fi
}

# not_owned PATH: files and folders under PATH that are not the test user's.
not_owned() {
  find "$1" \( ! -uid "$TEST_UID" -o ! -gid "$TEST_GID" \) -print
}

# serve_as_user DIR: serve.sh DIR as the test user, on a free port, in the background in a
# session of its own, until it has said which model scores the camera's frames (its second
# line). Sets serve_port, serve_job and serve_pid (serve.sh's wrapper: SIGTERM stops it and its
# container) and serve_dir (its stdout, stderr and pid files; the caller's teardown kills what
# is left).
# shellcheck disable=SC2034  # serve_job and serve_pid are read by the tests that call this
serve_as_user() {
  serve_port=$("$REPO/.venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  serve_dir=$(mktemp -d "$WORK/serve XXXXXX")
  chown "$TEST_UID:$TEST_GID" "$serve_dir"
  # shellcheck disable=SC2016  # expanded by the inner bash, from its arguments
  as_user setsid bash -c 'echo $$ >"$1/pid"; exec bash "$2/serve.sh" "$4" --port "$3"' _ "$serve_dir" "$REPO" \
    "$serve_port" "$1" </dev/null >"$serve_dir/stdout" 2>"$serve_dir/stderr" 3>&- &
  serve_job=$!
  wait_until 180 grep -q '^Camera frames: ' "$serve_dir/stdout" || { cat "$serve_dir/stderr"; return 1; }
  serve_pid=$(cat "$serve_dir/pid")
}
