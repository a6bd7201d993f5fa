#!/usr/bin/env bats
# Runs that are stopped or doubled: guessDir resumed after a kill, two trainings on one DIR.

setup_file() {
  load test_helper
  train_small_classifier "$BATS_FILE_TMPDIR/tf_files"
}

setup() {
  load test_helper
  TF="$BATS_FILE_TMPDIR/tf_files"
}

@test "guessDir.sh killed in the middle: the rerun skips what was sorted, every photo copied once" {
  src="$BATS_TEST_TMPDIR/src"
  mkdir -p "$src"
  find "$SHARED/datasets/sign-digits/5" "$SHARED/datasets/sign-digits/6" -type f | sort | head -n 300 |
    xargs -I{} cp {} "$src/"
  dest="$BATS_TEST_TMPDIR/dest"
  bash "$REPO/guessDir.sh" "$TF" "$src" "$dest" --batch_size 8 >/dev/null 2>&1 3>&- &
  pid=$!
  wait_until 120 bash -c "[ \"\$(wc -l <'$dest/guesses.jsonl' 2>/dev/null || echo 0)\" -ge 40 ]"
  kill -9 "$pid"
  wait "$pid" || true
  first=$(wc -l <"$dest/guesses.jsonl")
  [ "$first" -lt 300 ]
  run bash "$REPO/guessDir.sh" "$TF" "$src" "$dest"
  [ "$status" -eq 0 ]
  [[ $output == *"Skipped "*" photos of $src already sorted into $dest by this classifier"* ]]
  "$REPO/.venv/bin/python" - "$src" "$dest" <<'EOF'
import json, os, sys
src, dest = sys.argv[1:]
records = [json.loads(line) for line in open(os.path.join(dest, "guesses.jsonl"))]
copies = [r for r in records if "copy" in r]
assert sorted(r["source"] for r in copies) == sorted(os.listdir(src)), "each photo copied once"
on_disk = sorted(n for n in os.listdir(dest) if n != "guesses.jsonl")
assert sorted(r["copy"] for r in copies) == on_disk, "a copy without its record"
for r in copies:
    assert open(os.path.join(dest, r["copy"]), "rb").read() == open(os.path.join(src, r["source"]), "rb").read()
EOF
}

@test "two train.sh on one DIR at once both finish, and the model they leave works" {
  work="$BATS_TEST_TMPDIR/work"
  make_tf_files "$work" 20
  bash "$REPO/train.sh" "$work" --how_many_training_steps 50 --random_seed 1 >"$BATS_TEST_TMPDIR/one" 2>&1 &
  one=$!
  bash "$REPO/train.sh" "$work" --how_many_training_steps 50 --random_seed 2 >"$BATS_TEST_TMPDIR/two" 2>&1 &
  two=$!
  wait "$one"
  wait "$two"
  run bash "$REPO/guess.sh" "$work" "$(first_photo elsa)"
  [ "$status" -eq 0 ]
  [[ ${lines[-2]} == "elsa (score = "* || ${lines[-1]} == "elsa (score = "* ]]
  [ "$(bottlenecks_in "$work")" -eq 40 ]
}
