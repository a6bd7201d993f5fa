#!/usr/bin/env bats
# serve.sh, local runtime: a real server on a free 127.0.0.1 port, started and
# stopped by each test; the Docker runtime's counterpart is in docker.bats.

bats_require_minimum_version 1.5.0

setup_file() {
  load test_helper
  DIR=$BATS_FILE_TMPDIR/tf
  train_small_classifier "$DIR"
  export DIR
}

setup() {
  load test_helper
}

teardown() {
  # Whatever went wrong, the server does not outlive its test.
  [[ -z ${pid:-} ]] || kill -9 "$pid" 2>/dev/null || true
}

# start_server ARGS...: serve.sh DIR ARGS... in the background, with SIGINT at its
# default as in a terminal's foreground job; pid (the wrapper's) and url once it
# says it serves. fd 3 closed: bats waits for it.
start_server() {
  env --default-signal=INT bash "$REPO/serve.sh" "$DIR" "$@" \
    >"$BATS_TEST_TMPDIR/stdout" 2>"$BATS_TEST_TMPDIR/stderr" 3>&- &
  pid=$!
  wait_until 120 grep -q '^Serving ' "$BATS_TEST_TMPDIR/stdout" || {
    cat "$BATS_TEST_TMPDIR/stderr"
    return 1
  }
  url=$(sed -n 's/^Serving .* at \(http:[^ ]*\) .*/\1/p' "$BATS_TEST_TMPDIR/stdout")
}

# stop_server SIGNAL: send it, wait; status into code.
stop_server() {
  kill "-$1" "$pid"
  code=0
  wait "$pid" || code=$?
  pid=""
}

@test "serve.sh: usage, a missing DIR and a bad flag are one line each, before a server starts" {
  run bash "$REPO/serve.sh"
  [ "$status" -eq 2 ]
  [[ ${lines[0]} == "Usage: bash serve.sh DIR [--port 8080] [--host 127.0.0.1] [flags]" ]]
  run bash "$REPO/serve.sh" --help
  [ "$status" -eq 0 ]
  [[ $output == *"POST /predict"* ]]
  run bash "$REPO/serve.sh" "$BATS_TEST_TMPDIR/nothing"
  [ "$status" -eq 1 ]
  [ "$output" = "tensor-guess: DIR '$BATS_TEST_TMPDIR/nothing' is not a folder" ]
  run bash "$REPO/serve.sh" "$DIR" --port -1
  [ "$status" -eq 2 ]
  [ "$output" = "tensor-guess: --port must be a TCP port, 0 to 65535, not -1" ]
}

@test "serve.sh serves on 127.0.0.1 what guess.sh says, one log line a request; SIGTERM stops it: 143" {
  start_server --port 0
  [[ $url == http://127.0.0.1:*/ ]]
  photo=$(first_photo elsa)
  run curl --silent --show-error --fail --data-binary "@$photo" "${url}predict"
  [ "$status" -eq 0 ]
  served=$output
  guessed=$(bash "$REPO/guess.sh" "$DIR" "$photo" --json)
  "$REPO/.venv/bin/python" - "$served" "$guessed" <<'PY'
import json, sys
served, guessed = json.loads(sys.argv[1]), json.loads(sys.argv[2])[0]
assert served["label"] == guessed["label"], (served, guessed)
assert all(abs(served["scores"][k] - v) <= 1e-5 for k, v in guessed["scores"].items())
PY
  run curl --silent "${url}labels"
  [ "$output" = '{"labels": ["darth vader", "elsa"]}' ]
  run curl --silent --output /dev/null --write-out '%{http_code}' --data-binary 'not a photo' "${url}predict"
  [ "$output" = 415 ]
  [ "$(grep -c '"POST /predict" 200 ' "$BATS_TEST_TMPDIR/stderr")" -eq 1 ]
  [ "$(grep -c '"POST /predict" 415 ' "$BATS_TEST_TMPDIR/stderr")" -eq 1 ]
  [ "$(grep -c '"GET /labels" 200 ' "$BATS_TEST_TMPDIR/stderr")" -eq 1 ]
  # The wrapper handed over to the Python (exec): the signal reaches the server.
  [[ $(ps -o args= -p "$pid") == *"-m tensorguess serve"* ]]
  stop_server TERM
  [ "$code" -eq 143 ]
  [ "$(tail -n 1 "$BATS_TEST_TMPDIR/stderr")" = "tensor-guess: terminated" ]
  run ! grep -q Traceback "$BATS_TEST_TMPDIR/stderr"
  run ! curl --silent --max-time 5 "${url}healthz"
}

@test "serve.sh: Ctrl-C stops it cleanly: 130; --host 0.0.0.0 says it is not the loopback address" {
  start_server --port 0 --host 0.0.0.0 --no_token
  grep -q 'tensor-guess: listening on 0.0.0.0, not on the loopback address' "$BATS_TEST_TMPDIR/stderr"
  run curl --silent --fail "${url}healthz"
  [ "$status" -eq 0 ]
  stop_server INT
  [ "$code" -eq 130 ]
  [ "$(tail -n 1 "$BATS_TEST_TMPDIR/stderr")" = "tensor-guess: interrupted" ]
}

@test "serve.sh started ignoring SIGINT (a background job, nohup) keeps serving through a Ctrl-C" {
  env --ignore-signal=INT bash "$REPO/serve.sh" "$DIR" --port 0 \
    >"$BATS_TEST_TMPDIR/stdout" 2>"$BATS_TEST_TMPDIR/stderr" 3>&- &
  pid=$!
  wait_until 120 grep -q '^Serving ' "$BATS_TEST_TMPDIR/stdout"
  url=$(sed -n 's/^Serving .* at \(http:[^ ]*\) .*/\1/p' "$BATS_TEST_TMPDIR/stdout")
  kill -INT "$pid"
  sleep 2
  run curl --silent --fail "${url}healthz"
  [ "$status" -eq 0 ]
  stop_server TERM
  [ "$code" -eq 143 ]
  [ "$(tail -n 1 "$BATS_TEST_TMPDIR/stderr")" = "tensor-guess: terminated" ]
}
