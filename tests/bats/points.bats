#!/usr/bin/env bats
# A points model through the wrappers, in the runtime under test (TG_RUNTIME_UNDER_TEST,
# default local): train.sh DIR with DIR/keypoints.json, then guess.sh's text, --json
# and --draw, guessDir.sh, and export.sh's formats. docker_points.bats runs the same
# checks through the Docker runtime.

bats_require_minimum_version 1.5.0

setup_file() {
  load test_helper
  load points_helper
  WORK="$BATS_FILE_TMPDIR/my work"
  mkdir "$WORK"
  export WORK
  make_points_work
  train_points_model
}

setup() {
  load test_helper
  load points_helper
}

# as_user CMD...: CMD in $WORK (the Docker tests' test user is you here).
as_user() {
  (cd "$WORK" && "$@")
}

@test "train.sh DIR trains a points model from DIR/keypoints.json and the photos under DIR/data" {
  check_points_trained
}

@test "guess.sh on a points model prints the box, then name x y score a point; --draw draws them" {
  check_points_text
}

@test "guess.sh --json on a points model gives image, box, score and keypoints; --draw keeps the user's file" {
  check_points_json_and_drawings
}

@test "guessDir.sh on a points model copies, draws and writes keypoints.json train reads; a rerun skips" {
  check_points_guessdir "sorted hands"
}

@test "export.sh on a points model writes TFLite float and int8 and Core ML; guessDir.sh sorts with int8 as guess.sh scores" {
  check_points_export
}
