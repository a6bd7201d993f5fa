#!/usr/bin/env bats
# Hostile and broken input through the wrappers: graphs that would run as code, full
# disks, bad numbers, read-only caches, odd names and folders.

setup_file() {
  load test_helper
  train_small_classifier "$BATS_FILE_TMPDIR/tf_files"
  # A classifier-shaped graph that reads one file and writes another when it runs.
  mkdir -p "$BATS_FILE_TMPDIR/evil"
  cp "$BATS_FILE_TMPDIR/tf_files/retrained_labels.txt" "$BATS_FILE_TMPDIR/evil/"
  PYTHONPATH="$REPO/src" "$REPO/.venv/bin/python" - "$BATS_FILE_TMPDIR" <<'EOF'
import sys
import tensorflow as tf
base = sys.argv[1]
with tf.Graph().as_default() as graph:
    images = tf.compat.v1.placeholder(tf.float32, [None, 224, 224, 3], name="image_batch")
    mean = tf.reduce_mean(images, axis=[1, 2, 3])
    written = tf.io.write_file(base + "/leaked.txt", tf.io.read_file("/etc/hostname"))
    with tf.control_dependencies([written]):
        tf.nn.softmax(tf.stack([mean, -mean], axis=1), name="final_result")
open(base + "/evil/retrained_graph.pb", "wb").write(graph.as_graph_def().SerializeToString())
EOF
}

setup() {
  load test_helper
  TF="$BATS_FILE_TMPDIR/tf_files"
}

# ours: the lines of $output (all tensor-guess's: TensorFlow's start-up notices are kept
# off, stderr_noise.py) into OURS; fails if a traceback is among them.
ours() {
  mapfile -t OURS < <([[ -z $output ]] || printf '%s\n' "$output")
  ! grep -q Traceback <<<"$output"
}

# model_digest DIR: one digest of everything a training writes into DIR (not the cache).
model_digest() {
  (cd "$1" && find retrained_graph.pb retrained_labels.txt saved_model train_log.json report -type f \
    -print0 | LC_ALL=C sort -z | xargs -0 sha1sum | sha1sum)
}

@test "guess, guessDir and evaluate refuse a graph that reads and writes files, in one line" {
  evil="$BATS_FILE_TMPDIR/evil"
  run bash "$REPO/guess.sh" "$evil" "$(first_photo elsa)"
  [ "$status" -eq 1 ]
  ours
  [ "${#OURS[@]}" -eq 1 ]
  [[ ${OURS[0]} == "tensor-guess: refusing to run $evil/retrained_graph.pb: it holds operations that do more than compute on tensors (ReadFile, WriteFile; node "* ]]
  [[ ${OURS[0]} == *"pass --trust_graph only if you trust whoever made it" ]]
  run bash "$REPO/guessDir.sh" "$evil" "$(dirname "$(first_photo elsa)")" "$BATS_TEST_TMPDIR/out"
  [ "$status" -eq 1 ]
  [[ $output == *"refusing to run"* ]]
  run bash "$REPO/evaluate.sh" "$evil" "$SHARED/datasets/superheroes" "$BATS_TEST_TMPDIR/report"
  [ "$status" -eq 1 ]
  [[ $output == *"refusing to run"* ]]
  [ ! -e "$BATS_FILE_TMPDIR/leaked.txt" ]
  # The expert's flag reaches the CLI through every wrapper.
  mkdir "$BATS_TEST_TMPDIR/one"
  cp "$(first_photo elsa)" "$BATS_TEST_TMPDIR/one/"
  run bash "$REPO/guessDir.sh" "$evil" "$BATS_TEST_TMPDIR/one" "$BATS_TEST_TMPDIR/out" --trust_graph
  [ "$status" -eq 0 ]
  cmp "$BATS_FILE_TMPDIR/leaked.txt" /etc/hostname
}

@test "train.sh refuses each bad number before reading a photo, and the model stays as it was" {
  before=$(model_digest "$TF")
  for bad in "--learning_rate 0" "--learning_rate -1" "--learning_rate nan" "--learning_rate inf" \
    "--testing_percentage -1" "--validation_percentage 100.5" "--testing_percentage nan" \
    "--testing_percentage 50 --validation_percentage 50" "--train_batch_size 0" \
    "--validation_batch_size 0" "--test_batch_size -3" "--how_many_training_steps 0" \
    "--eval_step_interval 0" "--bottleneck_batch_size 0" "--input_size 0" "--random_seed -1"; do
    # shellcheck disable=SC2086 # each case is a flag and its value
    run bash "$REPO/train.sh" "$TF" $bad
    [ "$status" -eq 2 ] || { echo "$bad: status $status: $output"; return 1; }
    ours
    [ "${#OURS[@]}" -eq 1 ] || { echo "$bad: $output"; return 1; }
    [[ ${OURS[0]} == "tensor-guess: --"* ]] || { echo "$bad: $output"; return 1; }
  done
  run bash "$REPO/guess.sh" "$TF" "$(first_photo elsa)" --batch_size 0
  [ "$status" -eq 2 ]
  ours
  [ "${OURS[*]}" = "tensor-guess: --batch_size must be at least 1, not 0" ]
  [ "$(model_digest "$TF")" = "$before" ]
}

@test "a training that diverges keeps the old model, says why and exits 1" {
  before=$(model_digest "$TF")
  # Steps so large that the weights overflow float32 at once.
  run bash "$REPO/train.sh" "$TF" --learning_rate 1e38 --how_many_training_steps 50 --random_seed 1
  [ "$status" -eq 1 ]
  [[ $output == *"tensor-guess: training diverged at step 0 (cross entropy nan): nothing was written, $TF/retrained_graph.pb is as it was; try a smaller --learning_rate than 1e+38"* ]]
  [ "$(model_digest "$TF")" = "$before" ]
}

@test "train_log.json, report.json and guesses.jsonl are strict JSON" {
  run bash "$REPO/guessDir.sh" "$TF" "$(dirname "$(first_photo elsa)")" "$BATS_TEST_TMPDIR/out"
  [ "$status" -eq 0 ]
  "$REPO/.venv/bin/python" - "$TF/train_log.json" "$TF/report/report.json" "$BATS_TEST_TMPDIR/out/guesses.jsonl" <<'EOF'
import json, sys
def refuse(name):
    raise SystemExit(f"not strict JSON: {name}")
for path in sys.argv[1:]:
    text = open(path).read()
    docs = text.splitlines() if path.endswith(".jsonl") else [text]
    for doc in docs:
        json.loads(doc, parse_constant=refuse)
EOF
}

# fill_and_sort FREE_KB...: in a private mount namespace, sort 20 small photos into a
# 1 MiB tmpfs left with FREE_KB free, check the manifest and the copies, give it room,
# sort again and check that everything is sorted exactly once. Prints one line a case.
fill_and_sort() {
  unshare --user --map-root-user --mount bash -euo pipefail -s "$@" <<'EOF'
dest=$BATS_TEST_TMPDIR/disk
mkdir -p "$dest"
mount -t tmpfs -o size=1m tmpfs "$dest"
for free in "$@"; do
  rm -rf "${dest:?}"/*
  head -c $(( (1024 - free) * 1024 )) /dev/zero >"$dest/filler" 2>/dev/null || true
  status=0
  out=$(bash "$REPO/guessDir.sh" "$TF" "$SRC" "$dest/sorted" 2>&1) || status=$?
  "$REPO/.venv/bin/python" "$CHECK" "$SRC" "$dest/sorted" partial || { echo "$free: $out"; exit 1; }
  rm "$dest/filler"
  again=$(bash "$REPO/guessDir.sh" "$TF" "$SRC" "$dest/sorted" 2>&1)
  "$REPO/.venv/bin/python" "$CHECK" "$SRC" "$dest/sorted" complete || { echo "$free: $again"; exit 1; }
  echo "free ${free}k: status $status: $(printf '%s\n' "$out" | grep -o 'DEST is full.*stopped after [0-9]* of [0-9]* photos' || echo none)"
done
EOF
}

@test "a disk that fills while guessDir runs: whole records, every copy recorded, a rerun completes" {
  SRC="$BATS_TEST_TMPDIR/photos"
  mkdir -p "$SRC"
  find "$SHARED/datasets/sign-digits/3" -type f | sort | head -n 20 | xargs -I{} cp {} "$SRC/"
  CHECK="$BATS_TEST_TMPDIR/check.py"
  cat >"$CHECK" <<'EOF'
import json, os, sys
src, dest, expect = sys.argv[1:]
if not os.path.exists(os.path.join(dest, "guesses.jsonl")):
    sys.exit(0 if expect == "partial" else "no manifest")
text = open(os.path.join(dest, "guesses.jsonl"), "rb").read().decode()
assert text == "" or text.endswith("\n"), "a partial last line"
records = [json.loads(line) for line in text.splitlines()]
copies = [r["copy"] for r in records if "copy" in r]
assert len(copies) == len(set(copies)), "two records of one copy"
on_disk = sorted(n for n in os.listdir(dest) if n != "guesses.jsonl")
assert sorted(copies) == on_disk, f"copies {sorted(copies)} but files {on_disk}"
for r in records:
    assert open(os.path.join(dest, r["copy"]), "rb").read() == open(os.path.join(src, r["source"]), "rb").read()
sources = [r["source"] for r in records]
assert len(sources) == len(set(sources)), "a photo sorted twice"
if expect == "complete":
    assert sorted(sources) == sorted(os.listdir(src)), "not every photo sorted"
EOF
  export SRC CHECK TF REPO
  run fill_and_sort 0 8 24 40 60
  echo "$output"
  [ "$status" -eq 0 ]
  [ "${#lines[@]}" -eq 5 ]
  [[ ${lines[0]} == "free 0k: status 1: DEST is full"* ]]
  # Each case stopped part way, at a different photo.
  [ "$(printf '%s\n' "${lines[@]}" | grep -c 'status 1: DEST is full')" -eq 5 ]
  [ "$(printf '%s\n' "${lines[@]}" | grep -o 'after [0-9]*' | sort -u | wc -l)" -ge 4 ]
}

@test "SRC inside DEST, or DEST inside SRC: sorted, and what guessDir wrote there never again" {
  out="$BATS_TEST_TMPDIR/out"
  mkdir -p "$out/in"
  cp "$(first_photo elsa)" "$out/in/a.jpg"
  cp "$(first_photo darth_vader)" "$out/in/b.jpg"
  run bash "$REPO/guessDir.sh" "$TF" "$out/in" "$out"
  [ "$status" -eq 0 ]
  [[ $output == *"Copied 2 images into $out"* ]]
  run bash "$REPO/guessDir.sh" "$TF" "$out/in" "$out"
  [[ $output == *"Skipped 2 photos"*"Copied 0 images"* ]]
  [ "$(find "$out" -type f | wc -l)" -eq 5 ]
  # DEST inside SRC: the second run finds the first one's copies in SRC and leaves them.
  src="$BATS_TEST_TMPDIR/src"
  mkdir -p "$src"
  cp "$out/in/a.jpg" "$out/in/b.jpg" "$src/"
  run bash "$REPO/guessDir.sh" "$TF" "$src" "$src/sorted"
  [[ $output == *"Copied 2 images into $src/sorted"* ]]
  run bash "$REPO/guessDir.sh" "$TF" "$src" "$src/sorted"
  [[ $output == *"Skipped 2 photos"*"Copied 0 images"* ]]
  [ "$(find "$src" -type f | wc -l)" -eq 5 ]
}

@test "DEST that is a file is one line" {
  touch "$BATS_TEST_TMPDIR/a file"
  run bash "$REPO/guessDir.sh" "$TF" "$(dirname "$(first_photo elsa)")" "$BATS_TEST_TMPDIR/a file"
  [ "$status" -ne 0 ]
  ours
  [ "${#OURS[@]}" -eq 1 ]
  [[ ${OURS[0]} == *"$BATS_TEST_TMPDIR/a file exists and is not a folder"* ]]
}

@test "a read-only bottleneck cache with entries missing: one warning, the training goes on" {
  work="$BATS_TEST_TMPDIR/work"
  mkdir -p "$work"
  cp -r "$TF/data" "$work/"
  bash "$REPO/train.sh" "$work" --how_many_training_steps 5 >/dev/null
  find "$SHARED/datasets/superheroes/elsa" -type f | sort | tail -n 2 | xargs -I{} cp {} "$work/data/elsa/"
  before=$(find "$work/bottlenecks" -type f | sort | xargs sha1sum)
  export work REPO
  # shellcheck disable=SC2016 # expanded by the inner bash, from the exported variables
  run unshare --user --map-root-user --mount bash -c \
    'mount --bind -o ro "$work/bottlenecks" "$work/bottlenecks" && bash "$REPO/train.sh" "$work" --how_many_training_steps 5'
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(grep -c "cannot store bottlenecks in $work/bottlenecks/" <<<"$output")" -eq 1 ]
  [[ $output == *"Read-only file system): the missing ones are computed for this run only"* ]]
  [[ $output == *"Bottlenecks: 2 computed"* ]]
  [ "$(find "$work/bottlenecks" -type f | sort | xargs sha1sum)" = "$before" ]
}

@test "an untrainable set is refused before the bottleneck pass" {
  mkdir -p "$BATS_TEST_TMPDIR/t/data/elsa" "$BATS_TEST_TMPDIR/t/data/vader"
  cp "$(first_photo elsa)" "$BATS_TEST_TMPDIR/t/data/elsa/"
  find "$SHARED/datasets/superheroes/darth_vader" -type f | head -n 3 | xargs -I{} cp {} "$BATS_TEST_TMPDIR/t/data/vader/"
  run bash "$REPO/train.sh" "$BATS_TEST_TMPDIR/t"
  [ "$status" -eq 1 ]
  [[ $output == *"each category needs at least 2 images, fewer in: 'elsa' (1)"* ]]
  [[ $output != *"Loading module"* ]]
  [ ! -e "$BATS_TEST_TMPDIR/t/bottlenecks" ]
}

@test "a classification module is used with a warning" {
  mkdir -p "$BATS_TEST_TMPDIR/c"
  cp -r "$TF/data" "$BATS_TEST_TMPDIR/c/"
  run bash "$REPO/train.sh" "$BATS_TEST_TMPDIR/c" --how_many_training_steps 5 \
    --tfhub_module "$SHARED/models/mobilenet_v2_100_224/classification"
  [ "$status" -eq 0 ]
  [[ $output == *"mobilenet_v2_100_224/classification looks like a classification module (1001 outputs"* ]]
  [[ $output == *"use the module's feature_vector version"* ]]
}

@test "guessDir sorts symlinked subfolders, as train reads them, and names a loop" {
  src="$BATS_TEST_TMPDIR/src"
  mkdir -p "$src/real" "$BATS_TEST_TMPDIR/elsewhere"
  cp "$(first_photo elsa)" "$src/real/a.jpg"
  cp "$(first_photo darth_vader)" "$BATS_TEST_TMPDIR/elsewhere/b.jpg"
  ln -s "$BATS_TEST_TMPDIR/elsewhere" "$src/linked"
  ln -s "$src" "$src/real/loop"
  run bash "$REPO/guessDir.sh" "$TF" "$src" "$BATS_TEST_TMPDIR/out"
  [ "$status" -eq 0 ]
  [[ $output == *"Copied 2 images"* ]]
  [[ $output == *"skipping $src/real/loop: a symlink to $src, which is listed already"* ]]
  grep -q '"source": "linked/b.jpg"' "$BATS_TEST_TMPDIR/out/guesses.jsonl"
}

@test "guess.sh escapes a newline in a file name; a name starting with '-' goes after '--'" {
  cd "$BATS_TEST_TMPDIR"
  cp "$(first_photo elsa)" $'two\nlines.jpg'
  cp "$(first_photo elsa)" -- -x.jpg
  run bash "$REPO/guess.sh" "$TF" $'two\nlines.jpg' -- -x.jpg
  [ "$status" -eq 0 ]
  ours
  [ "${OURS[0]}" = '==> two\nlines.jpg <==' ]
  [[ $output == *"==> -x.jpg <=="* ]]
  run bash "$REPO/guess.sh" "$TF" -x.jpg
  [ "$status" -eq 2 ]
  [[ $output == *"'-x.jpg' was read as a flag: put file names that start with '-' after '--' (guess.sh DIR -- -x.jpg)"* ]]
}
