#!/usr/bin/env bats
# The Docker runtime through a real engine: train.sh, guess.sh, guessDir.sh and
# evaluate.sh run as a non-root user in the docker group, on paths with spaces,
# against the local runtime's results. Without an engine these tests fail;
# TG_TEST_DOCKER=0 opts out explicitly (they are then skipped).

bats_require_minimum_version 1.5.0

setup_file() {
  load test_helper
  load docker_helper
  docker_image_ready || return 1
  docker_workspace
  make_tf_files "$WORK/tf files" 8
  mkdir "$WORK/to sort"
  cp "$(first_photo elsa)" "$WORK/to sort/elsa one.jpg"
  cp "$(first_photo darth_vader)" "$WORK/to sort/vader.jpg"
  printf 'junk' >"$WORK/to sort/broken.png"
  docker_test_user || return 1
}

teardown_file() {
  [[ -z ${TOP:-} ]] || rm -rf "$TOP"
}

setup() {
  load test_helper
  load docker_helper
  # shellcheck source=scripts/lib.sh
  source "$REPO/scripts/lib.sh"
  # shellcheck source=scripts/lib/docker.sh
  source "$REPO/scripts/lib/docker.sh"
  export TG_RUNTIME=docker TG_GPU=0
}

teardown() {
  # serve.sh's wrapper (its client's death stops the container), whatever the outcome.
  if [[ -n ${serve_dir:-} ]]; then
    pid=$(cat "$serve_dir/pid" 2>/dev/null) && kill -9 "$pid" 2>/dev/null || true
  fi
  # The module server of the network test, whatever its outcome.
  [[ -z ${server:-} ]] || kill "$server" 2>/dev/null || true
  # A run of the signal tests, whatever their outcome: the wrapper (the client's
  # death stops the container), then whatever is left of the container.
  if [[ -n ${run_dir:-} ]]; then
    pid=$(cat "$run_dir/pid" 2>/dev/null) && kill -9 "$pid" 2>/dev/null || true
    wait_until 15 run_is_gone ||
      docker ps --all --quiet --filter "volume=$run_dir/tf" | xargs -r docker rm --force >/dev/null 2>&1 || true
  fi
}

# start_training [script]: train.sh as the test user on the long set, in the
# background, into $run_dir/tf (a new folder of theirs each time), in its own process
# group and with SIGINT at its default, as a terminal's foreground job; with
# `script`, on a terminal of its own (all three streams: the wrapper runs docker
# -it). Once the first bottlenecks are written, sets pid (the wrapper's, so the
# docker client's) and job (the background job, whose status is the wrapper's).
start_training() {
  run_dir=$(mktemp -d "$WORK/run XXXXXX")
  mkdir "$run_dir/tf"
  chown -R "$TEST_UID:$TEST_GID" "$run_dir"
  # shellcheck disable=SC2016  # expanded by the inner bash, from its arguments
  local command=(bash -c 'echo $$ >"$1/pid"; exec bash "$2/train.sh" "$1/tf" --image_dir "$3" --how_many_training_steps 10'
    _ "$run_dir" "$REPO" "$LONG_SET")
  if [[ ${1:-} == script ]]; then
    command=(script --quiet --flush --return --command "$(printf '%q ' "${command[@]}")" /dev/null)
  fi
  as_user setsid env --default-signal=INT "${command[@]}" </dev/null >"$run_dir/stdout" 2>"$run_dir/stderr" 3>&- &
  job=$!
  wait_for_bottlenecks "$run_dir/tf" "$run_dir/pid"
  pid=$(cat "$run_dir/pid")
}

# run_is_gone: no container has the run's folder mounted, running or not (--rm
# removed it), and no host process names that folder (the wrapper, the
# container's CLI, the terminal watcher) or watches the client (tail --pid).
run_is_gone() {
  [ -z "$(docker ps --all --quiet --filter "volume=$run_dir/tf")" ] &&
    [ -z "$(pgrep -f -- "$run_dir/tf")" ] && [ -z "$(pgrep -f -- "tail --pid=$pid ")" ]
}

# killed_in_the_middle: kill -9 of the docker client: within 15 s the container
# and everything that watched it are gone, and no bottleneck comes after. Sets
# died_with, the container's exit status as the engine recorded it.
killed_in_the_middle() {
  local written cid since
  # The one container of the run, of the image under test.
  cid=$(docker ps --quiet --filter "volume=$run_dir/tf" --filter "ancestor=$TG_IMAGE_NAME:$(tg_version)-cpu")
  [ "$(wc -w <<<"$cid")" -eq 1 ]
  [ "$(cat "/proc/$pid/comm")" = docker ]
  since=$(($(date +%s) - 1))
  kill -9 "$pid"
  SECONDS=0
  wait_until 15 run_is_gone
  echo "# gone ${SECONDS}s after the kill" >&3
  died_with=$(docker events --since "$since" --until "$(($(date +%s) + 1))" --filter "container=$cid" --filter event=die \
    --format '{{.Actor.Attributes.exitCode}}')
  written=$(bottlenecks_in "$run_dir/tf")
  [ "$written" -lt "$LONG_SET_SIZE" ]
  sleep 3
  [ "$(bottlenecks_in "$run_dir/tf")" -eq "$written" ]
}

# labels_of DEST: guessDir's copies in DEST with the score left out of their names.
labels_of() {
  find "$1" -type f -printf '%f\n' | sed 's/--[0-9]*\././' | sort
}

@test "docker: train.sh with a relative DIR holding a space, as a non-root user; every output is theirs" {
  before=$(cd "$WORK/tf files/data" && find . -type f -exec sha1sum {} + | sort)
  run as_user bash "$REPO/train.sh" "tf files" --how_many_training_steps 20 --eval_step_interval 10 \
    --random_seed 1
  echo "$output"
  [ "$status" -eq 0 ]
  [[ $output == *"Step 19: Validation accuracy = "* ]]
  [[ $output =~ Final\ test\ accuracy\ =\ [0-9.]+%\ \(N=[0-9]+\) ]]
  [ -s "$WORK/tf files/retrained_graph.pb" ]
  [ "$(cat "$WORK/tf files/retrained_labels.txt")" = "$(printf 'darth vader\nelsa')" ]
  [ -f "$WORK/tf files/saved_model/saved_model.pb" ]
  [ -f "$WORK/tf files/train_log.json" ]
  [ "$(not_owned "$WORK")" = "" ]
  [ "$(cd "$WORK/tf files/data" && find . -type f -exec sha1sum {} + | sort)" = "$before" ]
}

@test "docker: the container cannot write into DIR/data, only into DIR" {
  # The wrapper's own mount declarations, and a container that tries to write.
  # shellcheck disable=SC2016  # expanded by the inner bash, from its arguments
  run as_user bash -c '
    source "$1/scripts/lib.sh"
    source "$1/scripts/lib/docker.sh"
    mount_train "$2"
    prepare_docker
    docker "${TG_DOCKER_RUN[@]}" --entrypoint /bin/sh "$TG_IMAGE_CHOSEN" -c "touch \"\$1/data/elsa/intruder.jpg\"" _ "$2" && exit 9
    docker "${TG_DOCKER_RUN[@]}" --entrypoint /bin/sh "$TG_IMAGE_CHOSEN" -c "touch \"\$1/written\"" _ "$2"
  ' _ "$REPO" "$WORK/tf files"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ $output == *"Read-only file system"* ]]
  [ ! -e "$WORK/tf files/data/elsa/intruder.jpg" ]
  [ -f "$WORK/tf files/written" ]
  [ "$(not_owned "$WORK/tf files/written")" = "" ]
  rm "$WORK/tf files/written"
}

@test "docker: guess.sh mounts DIR and the images read-only" {
  # shellcheck disable=SC2016  # expanded by the inner bash, from its arguments
  run as_user bash -c '
    source "$1/scripts/lib.sh"
    source "$1/scripts/lib/docker.sh"
    mount_guess "$2" "to sort/vader.jpg"
    prepare_docker
    docker "${TG_DOCKER_RUN[@]}" --entrypoint /bin/sh "$TG_IMAGE_CHOSEN" -c "touch \"\$1/x\"" _ "$2" && exit 9
    docker "${TG_DOCKER_RUN[@]}" --entrypoint /bin/sh "$TG_IMAGE_CHOSEN" -c "touch \"to sort/vader.jpg\"" && exit 9
    exit 0
  ' _ "$REPO" "$WORK/tf files"
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(grep -c 'Read-only file system' <<<"$output")" -eq 2 ]
}

@test "docker: guess.sh --json gives the local runtime's labels and scores" {
  run --separate-stderr as_user bash "$REPO/guess.sh" "tf files" "to sort/elsa one.jpg" "to sort/vader.jpg" --json
  echo "$stderr"
  [ "$status" -eq 0 ]
  in_docker=$output
  cd "$WORK"
  run --separate-stderr env TG_RUNTIME=local bash "$REPO/guess.sh" "tf files" "to sort/elsa one.jpg" "to sort/vader.jpg" --json
  [ "$status" -eq 0 ]
  "$REPO/.venv/bin/python" - "$in_docker" "$output" <<'EOF'
import json, sys
docker, local = (json.loads(text) for text in sys.argv[1:3])
assert [d["image"] for d in docker] == ["to sort/elsa one.jpg", "to sort/vader.jpg"], docker
assert [d["label"] for d in docker] == [d["label"] for d in local] == ["elsa", "darth vader"], (docker, local)
for d, l in zip(docker, local):
    assert d["image"] == l["image"] and d["scores"].keys() == l["scores"].keys(), (d, l)
    for label, score in d["scores"].items():
        assert abs(score - l["scores"][label]) <= 1e-4, (label, score, l["scores"][label])
EOF
}

@test "docker: guess.sh prints the paths as given and exits 1 on an unreadable image" {
  run --separate-stderr as_user bash "$REPO/guess.sh" "tf files" "to sort/vader.jpg" "to sort/broken.png"
  [ "$status" -eq 1 ]
  [ "${lines[0]}" = "==> to sort/vader.jpg <==" ]
  [[ ${lines[1]} == "darth vader (score = "* ]]
  [[ $stderr == *"tensor-guess: skipping to sort/broken.png: "* ]]
}

@test "docker: guessDir.sh creates DEST for the user and sorts into it like the local runtime" {
  before=$(cd "$WORK/to sort" && sha1sum ./* | sort)
  run as_user bash "$REPO/guessDir.sh" "tf files" "to sort" "sorted, in docker"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ $output == *"Copied 2 images into $WORK/sorted, in docker (darth vader 1, elsa 1)"* ]]
  [ "$(not_owned "$WORK/sorted, in docker")" = "" ]
  [ "$(cd "$WORK/to sort" && sha1sum ./* | sort)" = "$before" ]
  cd "$WORK"
  TG_RUNTIME=local bash "$REPO/guessDir.sh" "tf files" "to sort" "$BATS_TEST_TMPDIR/sorted locally"
  # Same labels for the same files (copies are named by label and truncated score).
  [ "$(labels_of "sorted, in docker")" = "$(labels_of "$BATS_TEST_TMPDIR/sorted locally")" ]
}

@test "docker: evaluate.sh follows symlinked photos and writes DIR/report-<name> for the user" {
  mkdir -p "$WORK/held out"
  for class in darth_vader elsa; do
    mkdir "$WORK/held out/$class"
    find "$SHARED/datasets/superheroes/$class" -type f | sort | tail -n 3 |
      while read -r photo; do ln -s "$photo" "$WORK/held out/$class/"; done
  done
  chown -R -h "$TEST_UID:$TEST_GID" "$WORK/held out"
  run as_user bash "$REPO/evaluate.sh" "tf files" "held out"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ $output != *skipping* ]]
  [ -s "$WORK/tf files/report-held out/report.json" ]
  [ -s "$WORK/tf files/report-held out/report.html" ]
  [ "$(not_owned "$WORK/tf files/report-held out")" = "" ]
}

@test "docker: symlinks are followed to the end: a chain of links, a relative link through a symlinked folder" {
  # SRC is a symlinked folder; inside it, a link to a link (both outside any
  # mounted folder), a relative link whose `..` the host takes through SRC's real
  # place (the container, where SRC is a real folder, looks beside the link's name
  # for it), and a dangling link, left dangling.
  mkdir -p "$TOP/elsewhere/real src" "$TOP/elsewhere/vader store" "$TOP/hops" "$TOP/store"
  cp "$(first_photo elsa)" "$TOP/store/elsa.jpg"
  cp "$(first_photo darth_vader)" "$TOP/elsewhere/vader store/vader.jpg"
  ln -s "$TOP/store/elsa.jpg" "$TOP/hops/elsa.jpg"
  ln -s "$TOP/hops/elsa.jpg" "$TOP/elsewhere/real src/chain.jpg"
  ln -s "../vader store/vader.jpg" "$TOP/elsewhere/real src/vader.jpg"
  ln -s "../nothing here.jpg" "$TOP/elsewhere/real src/gone.jpg"
  ln -s "$TOP/elsewhere/real src" "$WORK/linked src"
  chown -R -h "$TEST_UID:$TEST_GID" "$TOP/elsewhere" "$TOP/hops" "$TOP/store" "$WORK/linked src"
  run as_user bash "$REPO/guessDir.sh" "tf files" "linked src" "sorted links"
  echo "$output"
  [[ $output == *"Copied 2 images into $WORK/sorted links (darth vader 1, elsa 1)"* ]]
  [[ $output == *"gone.jpg"* ]]
  [ "$(labels_of "$WORK/sorted links")" = "$(printf 'darth vader.jpg\nelsa.jpg\nguesses.jsonl')" ]
  # guess.sh, given the links themselves.
  run --separate-stderr as_user bash "$REPO/guess.sh" "tf files" "linked src/chain.jpg" "linked src/vader.jpg"
  echo "$stderr"
  [ "$status" -eq 0 ]
  [ "${lines[0]}" = "==> linked src/chain.jpg <==" ]
  [[ ${lines[1]} == "elsa (score = "* ]]
  [ "${lines[3]}" = "==> linked src/vader.jpg <==" ]
  [[ ${lines[4]} == "darth vader (score = "* ]]
}

@test "docker: guess.sh on 300 images of one folder mounts the folder once and scores them all" {
  mkdir "$WORK/many"
  for i in $(seq 200); do cp "$(first_photo elsa)" "$WORK/many/copy $i.jpg"; done
  for i in $(seq 100); do ln -s "$(first_photo elsa)" "$WORK/many/link $i.jpg"; done
  chown -R -h "$TEST_UID:$TEST_GID" "$WORK/many"
  cd "$WORK"
  # DIR, the folder, and the folder its links lead to.
  # shellcheck disable=SC2016  # expanded by the inner bash, from its arguments
  run as_user bash -c 'source "$1/scripts/lib.sh"; source "$1/scripts/lib/docker.sh"; shift; mount_guess "$@"; docker_mounts; printf "%s\n" "${TG_DOCKER_MOUNTS[@]}"' \
    _ "$REPO" "tf files" many/*.jpg
  [ "$status" -eq 0 ]
  [ "$(grep -c '^--mount$' <<<"$output")" -eq 3 ]
  run --separate-stderr as_user bash "$REPO/guess.sh" "tf files" many/*.jpg --json
  echo "$stderr"
  [ "$status" -eq 0 ]
  "$REPO/.venv/bin/python" - "$output" <<'EOF2'
import json, sys
guesses = json.loads(sys.argv[1])
assert len(guesses) == 300, len(guesses)
assert sorted(g["image"] for g in guesses) == sorted(
    [f"many/copy {i}.jpg" for i in range(1, 201)] + [f"many/link {i}.jpg" for i in range(1, 101)])
assert {g["label"] for g in guesses} == {"elsa"}, guesses
EOF2
}

@test "docker: a module URL not in the image gets the network once, then comes from the host's cache" {
  # A TF Hub-style server for the MobileNet in ../shared, on the engine's bridge.
  gateway=$(docker network inspect bridge --format '{{(index .IPAM.Config 0).Gateway}}')
  if [[ -z $gateway ]]; then
    # Docker 20.10 leaves the Gateway out when dockerd chose the bridge's address
    # itself: the address of the bridge's interface, then.
    bridge=$(docker network inspect bridge --format '{{index .Options "com.docker.network.bridge.name"}}')
    gateway=$(ip -4 -o addr show dev "${bridge:-docker0}" | sed -n 's/.* inet \([0-9.]*\).*/\1/p' | head -n 1)
  fi
  served="$BATS_TEST_TMPDIR/served"
  mkdir "$served"
  tar -C "$TFHUB_MODULE" --mode=u+w -czf "$served/mobilenet.tar.gz" .
  python3 -m http.server 0 --bind "$gateway" --directory "$served" >"$BATS_TEST_TMPDIR/http.log" 2>&1 &
  server=$!
  for _ in $(seq 50); do
    grep -q 'Serving HTTP' "$BATS_TEST_TMPDIR/http.log" && break
    sleep 0.1
  done
  port=$(sed -n 's/.* port \([0-9]*\) .*/\1/p' "$BATS_TEST_TMPDIR/http.log")
  url="http://$gateway:$port/mobilenet.tar.gz"
  train() {
    as_user env TFHUB_MODULE="$url" TFHUB_CACHE_DIR="$WORK/module cache" bash "$REPO/train.sh" "tf files" \
      --how_many_training_steps 2 --input_size 224 --output_graph "$WORK/url model/graph.pb" \
      --output_labels "$WORK/url model/labels.txt" --saved_model_dir "$WORK/url model/saved_model" \
      --bottleneck_dir "$WORK/url model/bottlenecks"
  }
  run train
  echo "$output"
  [ "$status" -eq 0 ]
  [[ $output == *"tensor-guess: $url is not in the image "*": the container gets network access to download it into $WORK/module cache"* ]]
  [ -s "$WORK/url model/graph.pb" ]
  [ "$(not_owned "$WORK/module cache")" = "" ]
  [ "$(not_owned "$WORK/url model")" = "" ]
  run train
  [ "$status" -eq 0 ]
  [[ $output != *"network access"* ]]
  [ "$(grep -c 'GET /mobilenet.tar.gz' "$BATS_TEST_TMPDIR/http.log")" -eq 1 ]
  # Cached: the module folder is mounted read-only and the network stays off.
  # shellcheck disable=SC2016  # expanded by the inner bash, from its arguments
  run as_user env TFHUB_MODULE="$url" TFHUB_CACHE_DIR="$WORK/module cache" bash -c '
    source "$1/scripts/lib.sh"; source "$1/scripts/lib/docker.sh"; mount_train "tf files"; prepare_docker; printf "%s\n" "${TG_DOCKER_RUN[@]}"' _ "$REPO"
  [[ $output == *$'--network\nnone'* ]]
  [[ $output == *"source=$WORK/module cache\",\"target=$WORK/module cache\",readonly"* ]]
}

@test "docker: the wrappers build a missing image and rebuild a stale one, saying so" {
  # Another repository name, so the real image stays; the layer cache makes the
  # builds quick.
  name=tg-docker-test-image
  image=$name:$(tg_version)-cpu
  docker image rm "$image" "$name:cpu" >/dev/null 2>&1 || true
  run --separate-stderr as_user env TG_IMAGE_NAME=$name BAKE_MODULE= bash "$REPO/guess.sh" "tf files" "to sort/vader.jpg"
  echo "$stderr"
  [ "$status" -eq 0 ]
  [[ $stderr == *"tensor-guess: building the Docker image $image (first use only, a few minutes)"* ]]
  [[ ${lines[0]} == "darth vader (score = "* ]]
  [ "$(docker image inspect --format '{{index .Config.Labels "io.tensorguess.source-hash"}}' "$image")" = "$(source_hash)" ]
  # Stale: the same image under a label from other sources, which the user also
  # tagged themselves: the rebuild takes the version tag, theirs stays.
  printf 'FROM %s\nLABEL io.tensorguess.source-hash=0000\n' "$image" | docker build --quiet --tag "$image" - >/dev/null
  docker tag "$image" "$name:known-good"
  stale=$(docker image inspect --format '{{.Id}}' "$image")
  run --separate-stderr as_user env TG_IMAGE_NAME=$name bash "$REPO/guess.sh" "tf files" "to sort/vader.jpg"
  tagged=$(docker image inspect --format '{{.Id}}' "$name:known-good" 2>&1) || true
  docker image rm "$image" "$name:cpu" "$name:known-good" >/dev/null 2>&1 || true
  echo "$stderr"
  [ "$status" -eq 0 ]
  [[ $stderr == *"tensor-guess: rebuilding the Docker image $image: the sources changed since it was built"* ]]
  [[ ${lines[0]} == "darth vader (score = "* ]]
  [ "$tagged" = "$stale" ]
}

@test "docker: TG_RUNTIME=docker without an engine is one clear error" {
  DOCKER_HOST=unix:///nonexistent run bash "$REPO/train.sh" "$WORK/tf files"
  [ "$status" -eq 1 ]
  [ "${#lines[@]}" -eq 1 ]
  [[ $output == "tensor-guess: TG_RUNTIME=docker but no Docker engine answers ("*"/nonexistent"*"); start dockerd or use TG_RUNTIME=local" ]]
}

@test "docker: TG_RUNTIME=auto without an engine runs locally" {
  cd "$WORK"
  DOCKER_HOST=unix:///nonexistent TG_RUNTIME=auto run --separate-stderr bash "$REPO/guess.sh" "tf files" "to sort/vader.jpg"
  [ "$status" -eq 0 ]
  [[ ${lines[0]} == "darth vader (score = "* ]]
}

@test "docker: a missing DIR or SRC fails before any container starts" {
  run as_user bash "$REPO/train.sh" "no such dir"
  [ "$status" -eq 1 ]
  [ "$output" = "tensor-guess: DIR '$WORK/no such dir' is not a folder" ]
  run as_user bash "$REPO/guessDir.sh" "tf files" "nothing here" out
  [ "$status" -eq 1 ]
  [ "$output" = "tensor-guess: SRC '$WORK/nothing here' is not a folder" ]
  [ ! -e "$WORK/out" ]
}

@test "docker: a path that would hide the image's own files is refused" {
  run as_user bash "$REPO/train.sh" "tf files" --bottleneck_dir /usr/lib/tensor-guess-cache
  [ "$status" -eq 1 ]
  [ "$output" = "tensor-guess: cannot give /usr/lib/tensor-guess-cache to the container: it would hide the image's own /usr; move it or use TG_RUNTIME=local" ]
}

@test "docker: an output folder that is a file is named as such, before any container starts" {
  echo mine >"$WORK/a file"
  chown "$TEST_UID:$TEST_GID" "$WORK/a file"
  run as_user bash "$REPO/evaluate.sh" "tf files" "to sort" "a file"
  [ "$status" -eq 1 ]
  [ "$output" = "tensor-guess: $WORK/a file exists and is not a folder; choose another report folder" ]
  run as_user bash "$REPO/guessDir.sh" "tf files" "to sort" "a file/sorted"
  [ "$status" -eq 1 ]
  [[ $output == *"mkdir: cannot create directory"*"Not a directory"* ]]
  [[ $output == *"tensor-guess: cannot create the folder $WORK/a file/sorted" ]]
  [ "$(cat "$WORK/a file")" = mine ]
  rm "$WORK/a file"
}

@test "docker: kill -9 of train.sh stops its container: its stdin closes, the CLI ends, --rm removes it" {
  start_training
  # No terminal: the silent pipe that keeps the container's stdin open.
  pgrep -f -- "tail --pid=$pid "
  killed_in_the_middle
  # Ended by the CLI's watchdog (watchdog.EXIT_STATUS), not killed.
  [ "$died_with" = 129 ]
  code=0
  wait "$job" || code=$?
  [ "$code" -eq 137 ]
}

@test "docker: kill -9 of train.sh on a terminal (docker run -it) stops its container too" {
  start_training script
  [[ $(ps -o args= -p "$pid") == *" --interactive --tty "* ]]
  killed_in_the_middle
  # Killed by the watcher's docker rm --force.
  [ "$died_with" = 137 ]
}

@test "docker: Ctrl-C and SIGTERM of train.sh reach the CLI through the client and tini: 130 and 143" {
  # Ctrl-C: SIGINT to the whole process group, the client and its stdin's tail,
  # which ignores it (were stdin to close first, the CLI would end without its
  # clean message).
  start_training
  kill -INT -- "-$pid"
  code=0
  wait "$job" || code=$?
  cat "$run_dir/stderr"
  [ "$code" -eq 130 ]
  [ "$(tail -n 1 "$run_dir/stderr")" = "tensor-guess: interrupted" ]
  run ! grep -q -e Traceback -e "the wrapper is gone" "$run_dir/stderr"
  wait_until 15 run_is_gone
  start_training
  kill -TERM "$pid"
  code=0
  wait "$job" || code=$?
  cat "$run_dir/stderr"
  [ "$code" -eq 143 ]
  run ! grep -q -e Traceback -e "the wrapper is gone" "$run_dir/stderr"
  wait_until 15 run_is_gone
}

@test "docker: build.sh trusts the host's extra CA certificates when EXTRA_CA_CERTS is unset and none are remembered" {
  # A stand-in for /usr/local/share/ca-certificates: certificates in subfolders, a
  # file that is not PEM, files that are not *.crt.
  host_ca="$BATS_TEST_TMPDIR/host ca"
  mkdir -p "$host_ca/proxy" "$host_ca/zz"
  printf -- '-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n' dGVuc29yLWd1ZXNzIHRlc3Q= \
    >"$host_ca/proxy/corp proxy.crt"
  cp "$host_ca/proxy/corp proxy.crt" "$host_ca/zz/second.crt"
  cp "$host_ca/proxy/corp proxy.crt" "$host_ca/other.pem"
  echo 'not a certificate' >"$host_ca/broken.crt"
  echo notes >"$host_ca/README"
  unset EXTRA_CA_CERTS
  TG_HOST_CA_DIR=$host_ca ca_certs_to_stage "$BATS_TEST_TMPDIR/nothing remembered" 2>"$BATS_TEST_TMPDIR/notes"
  [ "$TG_CA_FROM" = host ]
  [ "$(printf '%s\n' "${TG_CA_CERTS[@]}")" = "$(printf '%s\n' "$host_ca/proxy/corp proxy.crt" "$host_ca/zz/second.crt")" ]
  [ "$(cat "$BATS_TEST_TMPDIR/notes")" = "tensor-guess: leaving out the host's CA certificate $host_ca/broken.crt: it is not a PEM certificate" ]
  # EXTRA_CA_CERTS set, even empty, wins; so does an earlier build's choice.
  EXTRA_CA_CERTS='' TG_HOST_CA_DIR=$host_ca ca_certs_to_stage "$BATS_TEST_TMPDIR/nothing remembered"
  [ "$TG_CA_FROM" = given ]
  [ "${#TG_CA_CERTS[@]}" -eq 0 ]
  mkdir "$BATS_TEST_TMPDIR/remembered"
  TG_HOST_CA_DIR=$host_ca ca_certs_to_stage "$BATS_TEST_TMPDIR/remembered"
  [ "$TG_CA_FROM" = remembered ]
  [ "${#TG_CA_CERTS[@]}" -eq 0 ]

  # build.sh itself, in a copy of the checkout with nothing remembered, against a
  # stand-in engine that records what the build context holds.
  copy=$BATS_TEST_TMPDIR/checkout
  mkdir -p "$copy/scripts" "$copy/docker/extra-ca" "$copy/src" "$BATS_TEST_TMPDIR/bin"
  cp "$REPO/build.sh" "$REPO/pyproject.toml" "$REPO/requirements.txt" "$copy/"
  cp "$REPO/scripts/lib.sh" "$copy/scripts/"
  cp -r "$REPO/scripts/lib" "$copy/scripts/"
  cp "$REPO/docker/Dockerfile" "$REPO/docker/entrypoint.sh" "$copy/docker/"
  cp "$REPO/docker/extra-ca/.gitignore" "$copy/docker/extra-ca/"
  cp -r "$REPO/src/tensorguess" "$copy/src/"
  cat >"$BATS_TEST_TMPDIR/bin/docker" <<'EOF'
#!/usr/bin/env bash
case $1 in
  version) echo 20.10 ;;
  build) (cd "${!#}/docker/extra-ca" && find . -type f ! -name .gitignore -exec sha1sum {} + | sort) >"$CONTEXT_LOG" ;;
  image) [[ $* == *'{{.Size}}'* ]] && echo 1000000 || exit 1 ;;
esac
EOF
  chmod +x "$BATS_TEST_TMPDIR/bin/docker"
  export CONTEXT_LOG=$BATS_TEST_TMPDIR/context
  build_copy() { env PATH="$BATS_TEST_TMPDIR/bin:$PATH" TG_HOST_CA_DIR="$host_ca" bash "$copy/build.sh"; }
  run build_copy
  echo "$output"
  [ "$status" -eq 0 ]
  [[ $output == *"tensor-guess: trusting 2 extra CA certificate file(s) during the build ($copy/docker/extra-ca/build, the host's from $host_ca)"* ]]
  digest=$(sha1sum <"$host_ca/proxy/corp proxy.crt")
  digest=${digest%% *}
  [ "$(cat "$CONTEXT_LOG")" = "$(printf '%s  ./build/%s\n' "$digest" 01-corp_proxy.crt "$digest" 02-second.crt)" ]
  # Remembered for the next build, which reads the host's folder no more.
  rm "$host_ca/zz/second.crt"
  run build_copy
  [ "$status" -eq 0 ]
  [ "$(wc -l <"$CONTEXT_LOG")" -eq 2 ]
  # EXTRA_CA_CERTS='' trusts none, and that is remembered too: no falling back on the host's.
  EXTRA_CA_CERTS='' build_copy
  [ ! -s "$CONTEXT_LOG" ]
  build_copy
  [ ! -s "$CONTEXT_LOG" ]
}

@test "docker: the image holds none of the CA certificates its build trusted" {
  image=$TG_IMAGE_NAME:$(tg_version)-cpu
  # Those remembered for this checkout's builds, and the host's (the default).
  mapfile -t trusted < <(find "$REPO/docker/extra-ca/build" "${TG_HOST_CA_DIR:-/usr/local/share/ca-certificates}" \
    -name '*.crt' -type f 2>/dev/null)
  echo "# ${#trusted[@]} certificate file(s) to look for" >&3
  # No extra CA folder, no certificate settings (the build stages' PIP_CERT...).
  run docker run --rm --entrypoint /bin/sh "$image" -c \
    'find /usr/local/share/ca-certificates -mindepth 1; env | grep -i -e cert -e "^pip" || true'
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$output" = "" ]
  bundle=$BATS_TEST_TMPDIR/bundle.crt
  docker run --rm --entrypoint cat "$image" /etc/ssl/certs/ca-certificates.crt >"$bundle"
  grep -q -- '-----BEGIN CERTIFICATE-----' "$bundle"
  "$REPO/.venv/bin/python" - "$bundle" "${trusted[@]}" <<'EOF'
import re, sys

def bodies(path):
    text = open(path).read()
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text, re.S)
    return {re.sub(r"\s", "", block) for block in blocks}

in_image = bodies(sys.argv[1])
for path in sys.argv[2:]:
    assert not bodies(path) & in_image, f"{path} is trusted in the final image"
EOF
}

# shellcheck disable=SC2154  # serve_port, serve_job and serve_pid are set by serve_as_user
@test "docker: serve.sh publishes its port on 127.0.0.1 only, scores like guess.sh; SIGTERM stops it and its container: 143" {
  serve_as_user "tf files"
  [ "$(head -n 1 "$serve_dir/stdout")" = "Serving $WORK/tf files/retrained_graph.pb at http://127.0.0.1:$serve_port/ (Ctrl-C stops)" ]
  # and which model scores the camera's frames (no .tflite exported here: the graph, and why)
  grep -q "^Camera frames: the graph (no retrained_graph.tflite; export.sh $WORK/tf files --format tflite" "$serve_dir/stdout"
  [ "$(wc -l <"$serve_dir/stdout")" -eq 2 ]
  run ! grep -q "not on the loopback address" "$serve_dir/stderr"
  # Published on the loopback address only: the engine's port map, and another address of this host.
  cid=$(docker ps --quiet --filter "publish=$serve_port" --filter "ancestor=$TG_IMAGE_NAME:$(tg_version)-cpu")
  [ "$(wc -w <<<"$cid")" -eq 1 ]
  [ "$(docker port "$cid")" = "$serve_port/tcp -> 127.0.0.1:$serve_port" ]
  other=$(hostname -I | tr ' ' '\n' | grep -v -e '^127\.' -e ':' -e '^$' | head -n 1)
  if [[ -n $other ]]; then
    run ! curl --silent --max-time 3 "http://$other:$serve_port/healthz"
  fi
  run curl --silent --show-error --fail --data-binary "@$WORK/to sort/elsa one.jpg" "http://127.0.0.1:$serve_port/predict"
  [ "$status" -eq 0 ]
  served=$output
  cd "$WORK"
  guessed=$(TG_RUNTIME=local bash "$REPO/guess.sh" "tf files" "to sort/elsa one.jpg" --json)
  "$REPO/.venv/bin/python" - "$served" "$guessed" <<'EOF'
import json, sys
served, guessed = json.loads(sys.argv[1]), json.loads(sys.argv[2])[0]
assert served["label"] == guessed["label"] == "elsa", (served, guessed)
assert all(abs(served["scores"][k] - v) <= 1e-4 for k, v in guessed["scores"].items()), (served, guessed)
EOF
  grep -q '"POST /predict" 200 ' "$serve_dir/stderr"
  kill -TERM "$serve_pid"
  code=0
  wait "$serve_job" || code=$?
  cat "$serve_dir/stderr"
  [ "$code" -eq 143 ]
  [ "$(tail -n 1 "$serve_dir/stderr")" = "tensor-guess: terminated" ]
  # shellcheck disable=SC2016  # expanded by the inner bash
  wait_until 15 bash -c '[ -z "$(docker ps --all --quiet --filter "publish=$1")" ]' _ "$serve_port"
  run as_user bash "$REPO/serve.sh" "tf files" --port 0
  [ "$status" -eq 1 ]
  [ "$output" = "tensor-guess: --port 0 (any free port) works with the local runtime only (TG_RUNTIME=local); give a port" ]
}

@test "docker: no container is left behind" {
  [ "$(docker ps --all --quiet --filter "ancestor=$TG_IMAGE_NAME:$(tg_version)-cpu")" = "" ]
}

@test "docker: SRC inside DEST is sorted, a rerun skips what it sorted, guessDir's flags reach the CLI" {
  as_user mkdir -p "nested/in"
  as_user cp "to sort/elsa one.jpg" "to sort/vader.jpg" "nested/in/"
  run as_user bash "$REPO/guessDir.sh" "tf files" "nested/in" "nested" --batch_size 1
  echo "$output"
  [ "$status" -eq 0 ]
  [[ $output == *"Copied 2 images into $WORK/nested"* ]]
  run as_user bash "$REPO/guessDir.sh" "tf files" "nested/in" "nested"
  [[ $output == *"Skipped 2 photos of $WORK/nested/in already sorted into $WORK/nested"*"Copied 0 images"* ]]
  [ "$(find "$WORK/nested" -type f | wc -l)" -eq 5 ]
  [ "$(not_owned "$WORK/nested")" = "" ]
  run as_user bash "$REPO/guessDir.sh" "tf files" "nested/in" "nested" --batch_size 0
  [ "$status" -eq 2 ]
  [[ $output == *"tensor-guess: --batch_size must be at least 1, not 0"* ]]
}

@test "docker: train.sh --labels_csv and evaluate.sh LABELS.csv see the photos beside the CSV" {
  # shellcheck disable=SC2016  # expanded by the inner shell, in $WORK; paths quoted (a photo's
  # name holds a comma)
  as_user bash -c 'mkdir -p "csv set/a" "csv set/b" && cp "tf files/data/elsa/"* "csv set/a/" &&
    cp "tf files/data/darth_vader/"* "csv set/b/" &&
    cd "csv set" && { echo "path,label"; for f in a/* b/*; do echo "\"$f\",${f%%/*}"; done; } >labels.csv'
  as_user mkdir "csv run"
  run as_user bash "$REPO/train.sh" "csv run" --labels_csv "$WORK/csv set/labels.csv" --how_many_training_steps 20
  echo "$output"
  [ "$status" -eq 0 ]
  [[ $output == *"Labels from $WORK/csv set/labels.csv (16 rows)"* ]]
  [[ $output == *"Found 16 files in 2 categories: a (8), b (8)"* ]]
  run as_user bash "$REPO/evaluate.sh" "csv run" "csv set/labels.csv"
  echo "$output"
  [ "$status" -eq 0 ]
  # Its training and validation photos are identical to training's; its test photos are not.
  [[ $output =~ Leaks:\ 1[0-4]\ of\ 16\ images\ are\ photos\ the\ classifier\ trained\ on\ \(1[0-4]\ identical ]]
  [ -f "$WORK/csv run/report-labels/report.json" ]
}

@test "docker: export.sh writes the int8 model for the user; guess.sh --model tflite-int8 labels as the local runtime" {
  run as_user bash "$REPO/export.sh" "tf files" --format tflite,tflite-int8
  echo "$output"
  [ "$status" -eq 0 ]
  [[ $output == *"Calibrating int8 on "*" training photos"* ]]
  [[ $output == *"Accuracy per format on the test split"* ]]
  [ -s "$WORK/tf files/retrained_graph_int8.tflite" ]
  [ "$(not_owned "$WORK/tf files")" = "" ]
  run --separate-stderr as_user bash "$REPO/guess.sh" "tf files" "to sort/elsa one.jpg" --model tflite-int8
  [ "$status" -eq 0 ]
  in_docker=$output
  cd "$WORK"
  run --separate-stderr env TG_RUNTIME=local bash "$REPO/guess.sh" "tf files" "to sort/elsa one.jpg" --model tflite-int8
  [ "$status" -eq 0 ]
  [ "$in_docker" = "$output" ]
}
