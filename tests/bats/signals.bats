#!/usr/bin/env bats
# Signals through the wrappers, local runtime: a wrapper hands over to the Python
# (exec), so its pid is the work's, and a kill, a Ctrl-C or a SIGTERM of the
# wrapper reaches what fills the cache instead of a shell waiting on it. The
# Docker runtime's counterparts (client, tini, container) are in docker.bats.

bats_require_minimum_version 1.5.0

setup() {
  load test_helper
  DIR=$BATS_TEST_TMPDIR/run
  mkdir "$DIR"
}

teardown() {
  # Whatever went wrong, the run does not outlive its test.
  [[ -z ${pid:-} ]] || kill -9 "$pid" 2>/dev/null || true
}

# start_training: train.sh on the long set in the background, into $DIR, with
# SIGINT at its default as in a terminal's foreground job (bash makes background
# jobs ignore it, and Python then never raises KeyboardInterrupt); its pid in
# $pid once the first bottlenecks are written. fd 3 closed: bats waits for it.
start_training() {
  env --default-signal=INT bash "$REPO/train.sh" "$DIR" --image_dir "$LONG_SET" \
    --how_many_training_steps 10 >"$BATS_TEST_TMPDIR/stdout" 2>"$BATS_TEST_TMPDIR/stderr" 3>&- &
  pid=$!
  echo "$pid" >"$BATS_TEST_TMPDIR/pid"
  wait_for_bottlenecks "$DIR" "$BATS_TEST_TMPDIR/pid"
}

# stopped_in_the_middle: nothing of the run is left (the CLI's command line names
# $DIR), it had not extracted every photo, and no bottleneck comes after.
stopped_in_the_middle() {
  local written
  [ -z "$(pgrep -f -- "$DIR")" ]
  written=$(bottlenecks_in "$DIR")
  [ "$written" -lt "$LONG_SET_SIZE" ]
  sleep 3
  [ "$(bottlenecks_in "$DIR")" -eq "$written" ]
}

@test "every wrapper hands over to the Python: its pid is the wrapper's" {
  # A stand-in venv whose python prints its pid; its stamps say it is current.
  venv=$BATS_TEST_TMPDIR/venv
  mkdir -p "$venv/bin" "$DIR/src" "$DIR/labelled/a"
  printf '#!/bin/sh\necho "python $$"\n' >"$venv/bin/python"
  chmod +x "$venv/bin/python"
  sha1sum <"$REPO/requirements.txt" >"$venv/.stamp-requirements.txt"
  for wrapper in "train.sh $DIR" "guess.sh $DIR $REPO/test_data/circles.jpg" \
    "guessDir.sh $DIR $DIR/src $DIR/sorted" "evaluate.sh $DIR $DIR/labelled $DIR/report"; do
    # shellcheck disable=SC2016,SC2086  # expanded by the inner bash; words of $wrapper, none with spaces
    run env TG_VENV="$venv" bash -c 'echo "wrapper $$"; exec bash "$0" "$@"' "$REPO"/$wrapper
    echo "$wrapper: $output"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 2 ]
    [ "${lines[1]}" = "python ${lines[0]#wrapper }" ]
  done
}

@test "kill -9 of train.sh stops the work at once: nothing of it is left, the cache stops growing" {
  start_training
  # exec: no shell between the wrapper's pid and the work, so the kill is the work's.
  [[ $(cat "/proc/$pid/comm") == python* ]]
  sleep 1
  kill -9 "$pid"
  code=0
  wait "$pid" || code=$?
  [ "$code" -eq 137 ]
  stopped_in_the_middle
}

# signalled_in_the_middle SIGNAL STATUS MESSAGE: SIGNAL the wrapper in the middle of
# the work; it ends with STATUS, MESSAGE as its last line, no traceback, nothing left.
signalled_in_the_middle() {
  start_training
  kill "-$1" "$pid"
  code=0
  wait "$pid" || code=$?
  cat "$BATS_TEST_TMPDIR/stderr"
  [ "$code" -eq "$2" ]
  [ "$(tail -n 1 "$BATS_TEST_TMPDIR/stderr")" = "$3" ]
  run ! grep -q Traceback "$BATS_TEST_TMPDIR/stderr"
  stopped_in_the_middle
}

@test "SIGINT of train.sh (Ctrl-C) ends it cleanly: one line, status 130" {
  signalled_in_the_middle INT 130 "tensor-guess: interrupted"
}

@test "SIGTERM of train.sh ends it like Ctrl-C: one line, status 143" {
  signalled_in_the_middle TERM 143 "tensor-guess: terminated"
}
