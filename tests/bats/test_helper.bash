# shellcheck shell=bash
# Shared by the bats tests: where things are, and a small real photo set to train on.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=$(cd "$REPO/.." && pwd)/shared
export TFHUB_MODULE=$SHARED/models/mobilenet_v1_100_224/feature_vector
export TG_RUNTIME=${TG_RUNTIME_UNDER_TEST:-local}

# make_tf_files DIR [PER_CLASS]: DIR/data/<class>/ with the first PER_CLASS photos of each superhero.
make_tf_files() {
  local dir=$1 count=${2:-12} class
  for class in darth_vader elsa; do
    mkdir -p "$dir/data/$class"
    find "$SHARED/datasets/superheroes/$class" -type f | sort | head -n "$count" |
      while read -r photo; do cp "$photo" "$dir/data/$class/"; done
  done
}

# first_photo CLASS: a superheroes photo of CLASS that the small set above also holds.
first_photo() {
  find "$SHARED/datasets/superheroes/$1" -type f | sort | head -n 1
}

# train_small_classifier DIR: make_tf_files DIR, then train on it quietly, seeded.
train_small_classifier() {
  make_tf_files "$1"
  bash "$REPO/train.sh" "$1" --how_many_training_steps 100 --random_seed 1 >/dev/null
}

# A photo set big enough that train.sh is still extracting bottlenecks seconds
# after the first ones are written (1,635 photos; MobileNet v1 takes about 15 s
# for them on 2 cores): the signal tests stop a run in the middle of its work.
# shellcheck disable=SC2034  # read by the tests that load this file
LONG_SET=$SHARED/datasets/sign-digits LONG_SET_SIZE=1635

# bottlenecks_in DIR: how many feature vectors DIR/bottlenecks holds (its feature
# stores, read while a training may be writing them: SQLite's WAL lets it).
bottlenecks_in() {
  "$REPO/.venv/bin/python" - "$1/bottlenecks" <<'EOF'
import glob, sqlite3, sys
total = 0
for path in glob.glob(sys.argv[1] + "/*/features.sqlite"):
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
            total += db.execute("SELECT count(*) FROM vectors").fetchone()[0]
    except sqlite3.Error:
        pass  # not created yet
print(total)
EOF
}

# wait_for_bottlenecks DIR PIDFILE [SECONDS]: wait until DIR/bottlenecks holds a
# first feature vector, while the process whose pid is in PIDFILE (written by the
# command started) lives; default limit 300 s (a Docker image rebuild, TensorFlow's
# start-up). Fails, saying why, if it ends first or the time is up.
wait_for_bottlenecks() {
  local dir=$1 pidfile=$2 limit=${3:-300} pid="" i
  for ((i = 0; i < limit * 5; i++)); do
    (($(bottlenecks_in "$dir") > 0)) && return 0
    [[ -n $pid ]] || pid=$(cat "$pidfile" 2>/dev/null) || true
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      echo "# the run ended before writing a bottleneck" >&3
      return 1
    fi
    sleep 0.2
  done
  echo "# no bottleneck after ${limit}s" >&3
  return 1
}

# wait_until SECONDS CMD...: run CMD every 0.2 s until it succeeds; fails after SECONDS.
wait_until() {
  local limit=$1 i
  shift
  for ((i = 0; i < limit * 5; i++)); do
    "$@" && return 0
    sleep 0.2
  done
  return 1
}

# TF_NOISE: TensorFlow's start-up lines and the TFLite converter's and LiteRT's notices
# (src/tensorguess/stderr_noise.py keeps them off stderr); no_tf_noise: none on stdin.
TF_NOISE='absl::InitializeLog|oneDNN custom operations|^To enable the following instructions|^[IW][0-9]{4} [0-9:.]+ +[0-9]+ [a-z_]+\.cc:[0-9]+\]|^fully_quantize: |XNNPACK delegate|experimental_preserve_all_tensors|Statistics for quantized inputs|Running TensorFlow Graph Passes|Converting TF Frontend ==> MIL Ops|Running MIL .* pipeline'
no_tf_noise() {
  ! grep -E "$TF_NOISE"
}

# ours: the lines of $output (a bats `run`), all tensor-guess's (stderr_noise.py keeps
# TensorFlow's start-up notices off), into OURS; fails if a traceback is among them.
# shellcheck disable=SC2034,SC2154  # OURS is read by the tests; bats's run sets output
ours() {
  mapfile -t OURS < <([[ -z $output ]] || printf '%s\n' "$output")
  ! grep -q Traceback <<<"$output"
}
