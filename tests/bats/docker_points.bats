#!/usr/bin/env bats
# A points model through the Docker runtime, as a non-root user, as docker.bats runs
# the classes: train.sh DIR with DIR/keypoints.json, train.sh with --keypoints and
# --image_dir elsewhere (mounted read-only), then guess.sh's text, --json and --draw
# (its folder mounted writable), export.sh's formats and guessDir.sh, against the local
# runtime's points. points.bats runs the same checks locally. TG_TEST_DOCKER=0 skips them.

bats_require_minimum_version 1.5.0

setup_file() {
  load test_helper
  load docker_helper
  load points_helper
  docker_image_ready || return 1
  docker_workspace
  make_points_work
  docker_test_user || return 1
  export TG_RUNTIME=docker TG_GPU=0
  train_points_model
}

teardown_file() {
  [[ -z ${TOP:-} ]] || rm -rf "$TOP"
}

setup() {
  load test_helper
  load docker_helper
  load points_helper
  export TG_RUNTIME=docker TG_GPU=0
}

@test "docker: train.sh DIR trains a points model from DIR/keypoints.json; every output is the user's" {
  check_points_trained
  [ "$(not_owned "$WORK/hands model")" = "" ]
}

@test "docker: train.sh with --keypoints and --image_dir elsewhere reads them, mounted read-only" {
  as_user mkdir "points elsewhere"
  before=$(cd "$WORK/hands model/data" && find . -type f -exec sha1sum {} + | sort)
  run as_user bash "$REPO/train.sh" "points elsewhere" --keypoints "$WORK/hands model/keypoints.json" \
    --image_dir "$WORK/hands model/data" --point_epochs 1 --augment 0 --random_seed 1
  echo "$output"
  [ "$status" -eq 0 ]
  [[ $output == *"Training a points model on the points labelled in $WORK/hands model/keypoints.json"* ]]
  [ "$(cat "$WORK/points elsewhere/model_kind")" = points ]
  [ "$(not_owned "$WORK/points elsewhere")" = "" ]
  [ "$(cd "$WORK/hands model/data" && find . -type f -exec sha1sum {} + | sort)" = "$before" ]
  # What the wrapper mounts for them: the file and the photos, read-only.
  # shellcheck disable=SC2016  # expanded by the inner bash, from its arguments
  run as_user bash -c 'source "$1/scripts/lib.sh"; source "$1/scripts/lib/docker.sh"; shift
    mount_train "$@"; docker_mounts; printf "%s\n" "${TG_DOCKER_MOUNTS[@]}"' _ "$REPO" "points elsewhere" \
    --keypoints "$WORK/hands model/keypoints.json" --image_dir "$WORK/hands model/data"
  [[ $output == *"\"target=$WORK/hands model/keypoints.json\",readonly"* ]]
  [[ $output == *"\"target=$WORK/hands model/data\",readonly"* ]]
}

@test "docker: guess.sh on a points model prints the box, then name x y score a point; --draw is the user's" {
  check_points_text
  [ "$(not_owned "$WORK/new drawings")" = "" ]
}

@test "docker: guess.sh --json gives image, box, score and keypoints; --draw keeps the user's file" {
  check_points_json_and_drawings
  [ "$(not_owned "$WORK/drawn before")" = "" ]
}

@test "docker: guessDir.sh on a points model writes keypoints.json train reads; every output is the user's" {
  check_points_guessdir "sorted hands"
  [ "$(not_owned "$WORK/sorted hands")" = "" ]
}

@test "docker: guess.sh --json on a points model gives the local runtime's points" {
  cd "$WORK"
  run --separate-stderr as_user bash "$REPO/guess.sh" "hands model" "to guess"/* --json
  [ "$status" -eq 0 ]
  in_docker=$output
  run --separate-stderr env TG_RUNTIME=local bash "$REPO/guess.sh" "hands model" "to guess"/* --json
  [ "$status" -eq 0 ]
  same_points "$in_docker" "$output"
}

@test "docker: export.sh on a points model writes every format for the user; guessDir.sh sorts with int8 as guess.sh scores" {
  check_points_export
  [ "$(not_owned "$WORK/hands model")" = "" ]
  [ "$(not_owned "$WORK/sorted by int8")" = "" ]
}

@test "docker: guess.sh --model tflite-int8 on a points model gives the local runtime's points" {
  cd "$WORK"
  run --separate-stderr as_user bash "$REPO/guess.sh" "hands model" "to guess"/* --json --model tflite-int8
  [ "$status" -eq 0 ]
  in_docker=$output
  run --separate-stderr env TG_RUNTIME=local bash "$REPO/guess.sh" "hands model" "to guess"/* --json --model tflite-int8
  [ "$status" -eq 0 ]
  same_points "$in_docker" "$output"
}
