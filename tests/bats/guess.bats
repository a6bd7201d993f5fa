#!/usr/bin/env bats

bats_require_minimum_version 1.5.0

setup_file() {
  load test_helper
  train_small_classifier "$BATS_FILE_TMPDIR/tf_files"
}

setup() {
  load test_helper
  TF="$BATS_FILE_TMPDIR/tf_files"
}

@test "guess.sh prints every label best first in label_image's format" {
  run --separate-stderr bash "$REPO/guess.sh" "$TF" "$(first_photo elsa)"
  [ "$status" -eq 0 ]
  [ "${#lines[@]}" -eq 2 ]
  [[ ${lines[0]} =~ ^elsa\ \(score\ =\ 0\.[0-9]{5}\)$ ]]
  [[ ${lines[1]} =~ ^darth\ vader\ \(score\ =\ 0\.[0-9]{5}\)$ ]]
}

@test "a successful guess.sh prints no TensorFlow start-up line on stderr" {
  run --separate-stderr bash "$REPO/guess.sh" "$TF" "$(first_photo elsa)"
  [ "$status" -eq 0 ]
  no_tf_noise <<<"$stderr"
}

@test "guess.sh heads each of several images, relative paths and a PNG included" {
  cp "$(first_photo darth_vader)" "$BATS_TEST_TMPDIR/vader.jpg"
  "$REPO/.venv/bin/python" -c "from PIL import Image; Image.open('$(first_photo elsa)').save('$BATS_TEST_TMPDIR/elsa.png')"
  cd "$BATS_TEST_TMPDIR"
  run --separate-stderr bash "$REPO/guess.sh" "$TF" vader.jpg elsa.png
  [ "$status" -eq 0 ]
  [ "${lines[0]}" = "==> vader.jpg <==" ]
  [[ ${lines[1]} == "darth vader (score = "* ]]
  [ "${lines[3]}" = "==> elsa.png <==" ]
  [[ ${lines[4]} == "elsa (score = "* ]]
}

@test "guess.sh --json gives every score" {
  run --separate-stderr bash "$REPO/guess.sh" "$TF" "$(first_photo elsa)" --json
  [ "$status" -eq 0 ]
  echo "$output" | "$REPO/.venv/bin/python" -c '
import json, sys
(doc,) = json.load(sys.stdin)
assert doc["label"] == "elsa" and set(doc["scores"]) == {"elsa", "darth vader"}, doc'
}

@test "guess.sh reports an unreadable image, scores the others and exits 1" {
  printf 'not a photo' >"$BATS_TEST_TMPDIR/notes.jpg"
  run bash "$REPO/guess.sh" "$TF" "$BATS_TEST_TMPDIR/notes.jpg" "$(first_photo elsa)"
  [ "$status" -eq 1 ]
  [[ $output == *"tensor-guess: skipping $BATS_TEST_TMPDIR/notes.jpg: not an image"* ]]
  [[ $output == *"elsa (score = "* ]]
}

@test "guess.sh without a trained graph says to train first" {
  mkdir "$BATS_TEST_TMPDIR/empty"
  run bash "$REPO/guess.sh" "$BATS_TEST_TMPDIR/empty" "$(first_photo elsa)"
  [ "$status" -eq 1 ]
  [[ $output == *"tensor-guess: cannot read"*"train first with train.sh"* ]]
}

@test "guess.sh --draw on a classes model says in one line that it is for points models" {
  run --separate-stderr bash "$REPO/guess.sh" "$TF" "$(first_photo elsa)" --draw "$BATS_TEST_TMPDIR/drawn"
  [ "$status" -eq 2 ]
  [ -z "$output" ]
  [ "$stderr" = "tensor-guess: --draw is for points models; $TF holds a classes model (guess prints its labels' scores)" ]
  # The Docker runtime makes a writable folder before the container starts; locally nothing is made.
  [[ $TG_RUNTIME != local ]] || [ ! -e "$BATS_TEST_TMPDIR/drawn" ]
}
