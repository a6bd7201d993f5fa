#!/usr/bin/env bats
# export.sh and --model: the deployable formats, written from DIR and run by guess,
# guessDir and evaluate.

bats_require_minimum_version 1.5.0

setup_file() {
  load test_helper
  TF="$BATS_FILE_TMPDIR/tf_files"
  train_small_classifier "$TF"
  bash "$REPO/export.sh" "$TF" >"$BATS_FILE_TMPDIR/export.out" 2>"$BATS_FILE_TMPDIR/export.err"
}

setup() {
  load test_helper
  TF="$BATS_FILE_TMPDIR/tf_files"
}

@test "export.sh writes the float and int8 TFLite models and the Core ML package, and prints the table" {
  cat "$BATS_FILE_TMPDIR/export.out" "$BATS_FILE_TMPDIR/export.err"
  [ -s "$TF/retrained_graph.tflite" ]
  [ -s "$TF/retrained_graph_int8.tflite" ]
  [ -d "$TF/retrained_graph.mlpackage" ]
  out=$(cat "$BATS_FILE_TMPDIR/export.out")
  [[ $out == *"Calibrating int8 on "*" training photos"* ]]
  [[ $out == *"Core ML spec read back: input 'image' 224x224 RGB, scale 0.00392157, bias 0.0, 2 labels in retrained_labels.txt order, outputs classLabel, classLabelProbs; running it needs macOS"* ]]
  grep -Eq '^pb +[0-9.]+% +[0-9.]+ +100\.0%$' <<<"$out"
  grep -Eq '^tflite +[0-9.]+% +[0-9.]+ +100\.0%$' <<<"$out"
  grep -Eq '^tflite-int8 +[0-9.]+% +[0-9.]+ +[0-9.]+%$' <<<"$out"
  grep -q '"formats": \[' "$TF/report/report.json"
  grep -q '<table id="formats">' "$TF/report/report.html"
  # The labels travel inside the .tflite too, as a packed associated file.
  "$REPO/.venv/bin/python" -m zipfile -l "$TF/retrained_graph_int8.tflite" | grep -q "^retrained_labels.txt "
}

@test "a successful export.sh prints neither TensorFlow's start-up lines nor the converter's and LiteRT's" {
  no_tf_noise <"$BATS_FILE_TMPDIR/export.err"
}

@test "evaluate.sh --model scores with each format and names it in the report" {
  for model in pb saved_model tflite tflite-int8; do
    run bash "$REPO/evaluate.sh" "$TF" "$TF/data" "$BATS_TEST_TMPDIR/$model" --model "$model"
    echo "$model: $output"
    [ "$status" -eq 0 ]
    [[ $output =~ Evaluation\ accuracy\ =\ [0-9.]+%\ \(N=24\) ]]
    grep -q "\"classifier\": \"$TF/$(case $model in pb) echo retrained_graph.pb ;; saved_model) echo saved_model ;;
      tflite) echo retrained_graph.tflite ;; *) echo retrained_graph_int8.tflite ;; esac)\"" "$BATS_TEST_TMPDIR/$model/report.json"
  done
}

@test "guess.sh --model tflite prints what the .pb prints; guessDir.sh --model tflite-int8 records the .tflite" {
  photo=$(first_photo elsa)
  pb=$(bash "$REPO/guess.sh" "$TF" "$photo" 2>/dev/null)
  run --separate-stderr bash "$REPO/guess.sh" "$TF" "$photo" --model tflite
  [ "$status" -eq 0 ]
  no_tf_noise <<<"$stderr"  # LiteRT's delegate notice included
  echo "$output"
  # The labels in the same order (the scores agree within 1e-4, checked in pytest).
  [ "$(awk -F ' [(]score' '{print $1}' <<<"$output")" = "$(awk -F ' [(]score' '{print $1}' <<<"$pb")" ]
  run bash "$REPO/guessDir.sh" "$TF" "$TF/data/elsa" "$BATS_TEST_TMPDIR/sorted" --model tflite-int8
  [ "$status" -eq 0 ]
  [[ $output == *"Copied 12 images into"* ]]
  digest=$(sha1sum <"$TF/retrained_graph_int8.tflite" | cut -c1-40)
  [ "$(grep -c "\"model\": \"$digest\"" "$BATS_TEST_TMPDIR/sorted/guesses.jsonl")" -eq 12 ]
}

@test "a format not exported yet, and an unknown one, are one line each" {
  mkdir "$BATS_TEST_TMPDIR/bare"
  cp "$TF/retrained_graph.pb" "$TF/retrained_labels.txt" "$BATS_TEST_TMPDIR/bare/"
  run bash "$REPO/guess.sh" "$BATS_TEST_TMPDIR/bare" "$(first_photo elsa)" --model tflite-int8
  [ "$status" -eq 1 ]
  [[ $output == *"tensor-guess: $BATS_TEST_TMPDIR/bare/retrained_graph_int8.tflite does not exist; write it with export.sh $BATS_TEST_TMPDIR/bare --format tflite-int8"* ]]
  run bash "$REPO/export.sh" "$TF" --format onnx
  [ "$status" -eq 2 ]
  [[ $output == *"tensor-guess: --format takes a comma-separated list of tflite, tflite-int8, coreml, not 'onnx'"* ]]
  run bash "$REPO/guess.sh" "$TF" "$(first_photo elsa)" --model coreml
  [ "$status" -eq 2 ]
}

@test "train.sh --export tflite trains, then exports and tables it" {
  make_tf_files "$BATS_TEST_TMPDIR/tf" 6
  run bash "$REPO/train.sh" "$BATS_TEST_TMPDIR/tf" --how_many_training_steps 20 --export tflite
  echo "$output"
  [ "$status" -eq 0 ]
  [ -s "$BATS_TEST_TMPDIR/tf/retrained_graph.tflite" ]
  [ ! -e "$BATS_TEST_TMPDIR/tf/retrained_graph_int8.tflite" ]
  [[ $output == *"Accuracy per format on the test split"* ]]
  run bash "$REPO/train.sh" "$BATS_TEST_TMPDIR/tf" --export tflite,onnx
  [ "$status" -eq 2 ]
}

@test "export.sh gives the Docker runtime the photo folders in DIR/.train_inputs, skipping relative ones" {
  dir=$BATS_TEST_TMPDIR/model
  mkdir -p "$dir" "$BATS_TEST_TMPDIR/photos one" "$BATS_TEST_TMPDIR/csv set"
  # What train publishes: the folders it read, each ended by a NUL byte.
  printf '%s\0' "$BATS_TEST_TMPDIR/photos one" relative/photos "$BATS_TEST_TMPDIR/csv set" >"$dir/.train_inputs"
  # shellcheck disable=SC2016  # expanded by the inner bash, from its arguments
  run bash -c 'source "$1/scripts/lib.sh"; mount_export "$2"; printf "%s\n" "${TG_MOUNTS[@]}"' _ "$REPO" "$dir"
  [ "$status" -eq 0 ]
  [ "${lines[0]}" = "tensor-guess: ignoring 'relative/photos' in $dir/.train_inputs: not an absolute path" ]
  [ "${lines[1]}" = "rw:$dir" ]
  [ "${lines[2]}" = "ro:$BATS_TEST_TMPDIR/photos one" ]
  [ "${lines[3]}" = "ro:$BATS_TEST_TMPDIR/csv set" ]
  # A model trained before: DIR alone.
  rm "$dir/.train_inputs"
  run bash -c 'source "$1/scripts/lib.sh"; mount_export "$2"; printf "%s\n" "${TG_MOUNTS[@]}"' _ "$REPO" "$dir"
  [ "$output" = "rw:$dir" ]
}
