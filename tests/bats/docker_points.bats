#!/usr/bin/env bats
# A points model through the Docker runtime, as a non-root user, as docker.bats runs
# the classes: train.sh DIR with DIR/keypoints.json, train.sh with --keypoints and
# --image_dir elsewhere (mounted read-only), then guess.sh's text, --json and --draw
# (its folder mounted writable), export.sh's formats and guessDir.sh, and serve.sh's camera
# frames through the exported files, against the local runtime's points. points.bats runs the
# same checks locally. TG_TEST_DOCKER=0 skips them.

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

teardown() {
  # serve.sh's wrapper (its client's death stops the container), whatever the outcome.
  if [[ -n ${serve_dir:-} ]]; then
    pid=$(cat "$serve_dir/pid" 2>/dev/null) && kill -9 "$pid" 2>/dev/null || true
  fi
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

# shellcheck disable=SC2154  # serve_port, serve_job and serve_pid are set by serve_as_user
@test "docker: serve.sh on an exported points model runs the camera's frames through its float files, as the local runtime does" {
  [ -s "$WORK/hands model/retrained_graph.tflite" ] # the export test's
  serve_as_user "hands model"
  cat "$serve_dir/stdout"
  grep -qx "Camera frames: $WORK/hands model/retrained_graph.tflite (TFLite float, of this graph)" "$serve_dir/stdout"
  # A 320x240 frame of a hand, located, then read in the box its answer gives (a model that locates
  # first): the local runtime's answers from the same files; /healthz names them.
  PYTHONPATH="$REPO/src" "$REPO/.venv/bin/python" - "$serve_port" "$WORK/hands model" "$WORK/to guess" <<'EOF'
import json, sys, urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from tensorguess.score.points import open_points_model
from tensorguess.serve.answers import Frame, PointsAnswers

port, folder, photos = int(sys.argv[1]), Path(sys.argv[2]), sorted(Path(sys.argv[3]).iterdir())
pixels = np.asarray(Image.open(photos[0]).convert("RGB").resize((320, 240)))


def served(query):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/predict/frame?width=320&height=240{query}",
                                     data=pixels.tobytes(), method="POST")
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


def xy(answer):
    return [[point["x"], point["y"]] for point in answer["keypoints"]]


with open_points_model(folder, "tflite") as lite:
    local = PointsAnswers(lite)
    located = served("")
    np.testing.assert_allclose(xy(located), xy(local.score_frames([Frame(pixels)])[0]), atol=1e-3)
    if "next_box" in located:
        box = located["next_box"]
        tracked = served("&box=" + ",".join(map(str, box)))
        np.testing.assert_allclose(xy(tracked), xy(local.score_frames([Frame(pixels, tuple(box))])[0]), atol=1e-3)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as answer:
        assert json.loads(answer.read())["camera_model"] == lite.digest
EOF
  grep -q '"POST /predict/frame?" 200 ' "$serve_dir/stderr"
  kill -TERM "$serve_pid"
  code=0
  wait "$serve_job" || code=$?
  [ "$code" -eq 143 ]
}
