#!/usr/bin/env bats

setup_file() {
  load test_helper
  train_small_classifier "$BATS_FILE_TMPDIR/tf_files"
}

setup() {
  load test_helper
  TF="$BATS_FILE_TMPDIR/tf_files"
  LABELLED="$BATS_TEST_TMPDIR/held out"
  local class
  for class in darth_vader elsa; do
    mkdir -p "$LABELLED/$class"
    find "$SHARED/datasets/superheroes/$class" -type f | sort | tail -n 5 |
      while read -r photo; do ln -s "$photo" "$LABELLED/$class/"; done
  done
  printf 'junk' >"$LABELLED/elsa/broken.jpg"
}

@test "train.sh writes the report of its test split into DIR/report" {
  for name in report.json report.html confusion_matrix.png reliability.png training_curves.png; do
    [ -s "$TF/report/$name" ]
  done
}

@test "evaluate.sh with relative paths writes DIR/report-<name> and prints the summary" {
  cd "$BATS_TEST_TMPDIR"
  before=$(find "held out" -exec stat -c '%n %s %Y' {} + | sort)
  run bash "$REPO/evaluate.sh" "$TF" "held out"
  [ "$status" -eq 0 ]
  [[ $output =~ Evaluation\ accuracy\ =\ [0-9.]+%\ \(N=10\) ]]
  [[ $output == *"tensor-guess: skipping $LABELLED/elsa/broken.jpg: not an image"* ]]
  [[ $output == *"label        precision  recall     f1  support"* ]]
  # The table rows, to the support column.
  grep -Eq '^darth vader +[0-9.]+ +[0-9.]+ +[0-9.]+ +5$' <<<"$output"
  grep -Eq '^elsa +[0-9.]+ +[0-9.]+ +[0-9.]+ +5$' <<<"$output"
  for name in report.json report.html confusion_matrix.png reliability.png; do
    [ -s "$TF/report-held out/$name" ]
  done
  grep -q '"n": 10,' "$TF/report-held out/report.json"
  "$REPO/.venv/bin/python" -c '
import json, sys
per_class = json.load(open(sys.argv[1]))["per_class"]
assert per_class["darth vader"]["support"] == 5 and per_class["elsa"]["support"] == 5, per_class
' "$TF/report-held out/report.json"
  grep -q '"file": "elsa/broken.jpg"' "$TF/report-held out/report.json"
  [ "$(find "held out" -exec stat -c '%n %s %Y' {} + | sort)" = "$before" ]
}

@test "evaluate.sh into an OUT_DIR keeps the files it did not write" {
  mkdir -p "$BATS_TEST_TMPDIR/out"
  echo mine >"$BATS_TEST_TMPDIR/out/notes.txt"
  run bash "$REPO/evaluate.sh" "$TF" "$LABELLED" "$BATS_TEST_TMPDIR/out"
  [ "$status" -eq 0 ]
  [ "$(cat "$BATS_TEST_TMPDIR/out/notes.txt")" = mine ]
  [ -s "$BATS_TEST_TMPDIR/out/report.html" ]
  echo 'my page' >"$BATS_TEST_TMPDIR/out/report.html"
  run bash "$REPO/evaluate.sh" "$TF" "$LABELLED" "$BATS_TEST_TMPDIR/out"
  [ "$status" -eq 1 ]
  [[ $output == *"tensor-guess: $BATS_TEST_TMPDIR/out already holds report.html that tensor-guess did not write"* ]]
  [ "$(cat "$BATS_TEST_TMPDIR/out/report.html")" = 'my page' ]
}

@test "evaluate.sh names the folders that match no label" {
  mkdir -p "$LABELLED/Batman"
  run bash "$REPO/evaluate.sh" "$TF" "$LABELLED"
  [ "$status" -eq 1 ]
  # TensorFlow's start-up notice may come first; ours is one line.
  [ "$(grep '^tensor-guess:' <<<"$output")" = "tensor-guess: 1 folder(s) of $LABELLED match no label of the classifier: 'Batman' (label 'batman'); its labels are: darth vader, elsa" ]
}

@test "evaluate.sh with a missing LABELLED_DIR or the wrong arguments fails clearly" {
  run bash "$REPO/evaluate.sh" "$TF" "$BATS_TEST_TMPDIR/nothing"
  [ "$status" -eq 1 ]
  [ "$output" = "tensor-guess: LABELLED_DIR '$BATS_TEST_TMPDIR/nothing' is not a folder" ]
  run bash "$REPO/evaluate.sh" "$TF"
  [ "$status" -eq 2 ]
  [[ $output == *"Usage: bash evaluate.sh DIR LABELLED_DIR [OUT_DIR]"* ]]
}

@test "evaluate.sh refuses an OUT_DIR inside LABELLED_DIR before creating it" {
  # The wrapper refuses before choosing a runtime (the Docker one would create
  # OUT_DIR first): the same answer with a Docker runtime that cannot answer.
  for runtime in local docker; do
    run env TG_RUNTIME=$runtime DOCKER_HOST=unix:///nonexistent bash "$REPO/evaluate.sh" "$TF" "$LABELLED" "$LABELLED/report"
    [ "$status" -eq 2 ]
    [ "$output" = "tensor-guess: the report folder $LABELLED/report is inside $LABELLED; choose one outside it" ]
    [ ! -e "$LABELLED/report" ]
    run bash -c 'cd "$1" && TG_RUNTIME=$2 DOCKER_HOST=unix:///nonexistent bash "$3/evaluate.sh" "$4" . elsa/new' \
      _ "$LABELLED" "$runtime" "$REPO" "$TF"
    [ "$status" -eq 2 ]
    [ "$output" = "tensor-guess: the report folder $LABELLED/elsa/new is inside $LABELLED; choose one outside it" ]
    [ ! -e "$LABELLED/elsa/new" ]
  done
}

@test "evaluate.sh with an OUT_DIR that is a file says so" {
  echo mine >"$BATS_TEST_TMPDIR/a file"
  run bash "$REPO/evaluate.sh" "$TF" "$LABELLED" "$BATS_TEST_TMPDIR/a file"
  [ "$status" -eq 1 ]
  [ "$(grep '^tensor-guess:' <<<"$output")" = "tensor-guess: $BATS_TEST_TMPDIR/a file exists and is not a folder; choose another report folder" ]
  [ "$(cat "$BATS_TEST_TMPDIR/a file")" = mine ]
}
