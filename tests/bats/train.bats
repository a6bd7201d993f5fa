#!/usr/bin/env bats

bats_require_minimum_version 1.5.0

setup_file() {
  load test_helper
  WORK="$BATS_FILE_TMPDIR/my photos"
  make_tf_files "$WORK/tf files"
  export WORK
}

setup() {
  load test_helper
}

@test "train.sh with a relative DIR holding a space writes every output" {
  cd "$WORK"
  run bash "$REPO/train.sh" "tf files" --how_many_training_steps 30 --eval_step_interval 10 --random_seed 3
  [ "$status" -eq 0 ]
  [[ $output == *"Step 0: Train accuracy = "* ]]
  [[ $output == *"Step 29: Validation accuracy = "* ]]
  [[ $output =~ Final\ test\ accuracy\ =\ [0-9.]+%\ \(N=[0-9]+\) ]]
  [ -s "tf files/retrained_graph.pb" ]
  [ "$(cat "tf files/retrained_labels.txt")" = "$(printf 'darth vader\nelsa')" ]
  [ -f "tf files/saved_model/saved_model.pb" ]
  [ -f "tf files/train_log.json" ]
  ls "tf files/bottlenecks/"*/module.json
}

@test "a second train.sh computes no bottleneck and says so" {
  run bash "$REPO/train.sh" "$WORK/tf files" --how_many_training_steps 5
  [ "$status" -eq 0 ]
  [[ $output == *"Bottlenecks: 0 computed, 24 read from cache"* ]]
}

@test "a successful train.sh prints no TensorFlow start-up line on stderr" {
  run --separate-stderr bash "$REPO/train.sh" "$WORK/tf files" --how_many_training_steps 5
  [ "$status" -eq 0 ]
  no_tf_noise <<<"$stderr"
}

@test "train.sh --help documents retrain.py's flags" {
  run bash "$REPO/train.sh" "$WORK/tf files" --help
  [ "$status" -eq 0 ]
  for flag in --how_many_training_steps --learning_rate --train_batch_size --validation_batch_size \
    --test_batch_size --eval_step_interval --testing_percentage --validation_percentage \
    --print_misclassified_test_images --tfhub_module --bottleneck_dir --output_graph \
    --output_labels --final_tensor_name --random_seed --input_size; do
    [[ $output == *"$flag"* ]] || { echo "missing $flag"; return 1; }
  done
}

@test "train.sh on a missing DIR fails with one clear line" {
  run bash "$REPO/train.sh" "$WORK/nowhere"
  [ "$status" -ne 0 ]
  [ "$output" = "tensor-guess: DIR '$WORK/nowhere' is not a folder" ]
}

@test "train.sh with no arguments prints its usage and exits 2" {
  run bash "$REPO/train.sh"
  [ "$status" -eq 2 ]
  [[ $output == *"Usage: bash train.sh DIR [flags]"* ]]
}

@test "train.sh with a single category names the problem" {
  mkdir -p "$BATS_TEST_TMPDIR/one/data/cats"
  cp "$(first_photo elsa)" "$BATS_TEST_TMPDIR/one/data/cats/a.jpg"
  cp "$(first_photo darth_vader)" "$BATS_TEST_TMPDIR/one/data/cats/b.jpg"
  run bash "$REPO/train.sh" "$BATS_TEST_TMPDIR/one"
  [ "$status" -eq 1 ]
  [[ $output == *"tensor-guess: training needs at least 2 categories"*"'cats'"* ]]
}

@test "an unknown TG_RUNTIME is refused" {
  TG_RUNTIME=podman run bash "$REPO/train.sh" "$WORK/tf files"
  [ "$status" -eq 2 ]
  [[ $output == *"TG_RUNTIME must be auto, local or docker, not 'podman'"* ]]
}

@test "two train.sh on one DIR at once: one trains, the other is refused in one line, the model works" {
  work="$BATS_TEST_TMPDIR/work"
  make_tf_files "$work" 20
  bash "$REPO/train.sh" "$work" --how_many_training_steps 50 --random_seed 1 >"$BATS_TEST_TMPDIR/one" 2>&1 &
  one=$!
  bash "$REPO/train.sh" "$work" --how_many_training_steps 50 --random_seed 2 >"$BATS_TEST_TMPDIR/two" 2>&1 &
  two=$!
  codes=""
  wait "$one" || codes+=" one:$?"
  wait "$two" || codes+=" two:$?"
  # At most one was refused (the second may also have started after the first ended).
  [[ $codes != *one:*two:* ]]
  for run in $codes; do
    out="$BATS_TEST_TMPDIR/${run%%:*}"
    cat "$out"
    [ "${run#*:}" -eq 1 ]
    grep -q "^tensor-guess: another train.sh or export.sh (pid [0-9]*) is writing into $work; wait for it to end" "$out"
    ! grep -q Traceback "$out"
  done
  run bash "$REPO/guess.sh" "$work" "$(first_photo elsa)"
  [ "$status" -eq 0 ]
  [[ ${lines[-2]} == "elsa (score = "* || ${lines[-1]} == "elsa (score = "* ]]
  [ "$(bottlenecks_in "$work")" -eq 40 ]
}
