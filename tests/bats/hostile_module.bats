#!/usr/bin/env bats
# A feature-extractor module that runs code through train.sh: refused in one line before it
# loads, and run only with --trust_graph.

bats_require_minimum_version 1.5.0

setup_file() {
  load test_helper
  make_tf_files "$BATS_FILE_TMPDIR/tf_files" 6
  # A SavedModel whose __call__ reads /etc/hostname and writes it to a file of its choosing.
  PYTHONPATH="$REPO/src" "${TG_VENV:-$REPO/.venv}/bin/python" - "$BATS_FILE_TMPDIR" <<'EOF'
import sys
import tensorflow as tf
base = sys.argv[1]

class Hostile(tf.Module):
    def __init__(self):
        super().__init__()
        self.weights = tf.Variable(tf.ones([3, 8]))

    @tf.function(input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32)])
    def __call__(self, images):
        with tf.control_dependencies([tf.io.write_file(base + "/pwned", tf.io.read_file("/etc/hostname"))]):
            return tf.reduce_mean(images, [1, 2]) @ self.weights

tf.saved_model.save(Hostile(), base + "/hostile_module")
EOF
}

setup() {
  load test_helper
  TF="$BATS_FILE_TMPDIR/tf_files"
  MODULE="$BATS_FILE_TMPDIR/hostile_module"
}

# errors: the lines of $stderr (all tensor-guess's: TensorFlow's start-up notices are kept off,
# stderr_noise.py) into ERRORS; fails if a traceback is among them. (stdout has train's progress lines.)
errors() {
  # shellcheck disable=SC2154 # bats sets $stderr (run --separate-stderr)
  mapfile -t ERRORS < <([[ -z $stderr ]] || printf '%s\n' "$stderr")
  ! grep -q Traceback <<<"$stderr"
}

@test "train.sh refuses a module that reads and writes files, in one line, and nothing is written" {
  run --separate-stderr bash "$REPO/train.sh" "$TF" --tfhub_module "$MODULE" --how_many_training_steps 10
  [ "$status" -eq 1 ]
  errors
  [ "${#ERRORS[@]}" -eq 1 ]
  [[ ${ERRORS[0]} == "tensor-guess: refusing to load the module $MODULE: it holds operations that do more than compute on tensors (ReadFile, WriteFile; ReadFile in function '__inference___call___"* ]]
  [[ ${ERRORS[0]} == *"pass --trust_graph only if you trust whoever made it" ]]
  [ ! -e "$BATS_FILE_TMPDIR/pwned" ]
  [ "$(ls -A "$TF")" = data ]
  # The same module named by TFHUB_MODULE.
  TFHUB_MODULE=$MODULE run bash "$REPO/train.sh" "$TF" --how_many_training_steps 10
  [ "$status" -eq 1 ]
  [[ $output == *"tensor-guess: refusing to load the module $MODULE: "* ]]
  [ ! -e "$BATS_FILE_TMPDIR/pwned" ]
}

@test "train.sh --trust_graph runs the module it was told to trust" {
  # Its features (the mean colour, times a matrix of ones) are alike for every photo: the
  # automatic near-duplicate threshold is not what this test is about, so it is set.
  run bash "$REPO/train.sh" "$TF" --tfhub_module "$MODULE" --trust_graph --how_many_training_steps 10 \
    --random_seed 1 --near_duplicate_threshold 1
  [ "$status" -eq 0 ] || { echo "$output" | tail -5; return 1; }
  cmp "$BATS_FILE_TMPDIR/pwned" /etc/hostname
}
