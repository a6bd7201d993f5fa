#!/usr/bin/env bats
# Labels in any script through the wrappers (train, guess, evaluate), and FIFOs, huge files
# and paths outside a labels CSV's folder, each run ending by itself with one line.
# Every run that could block is under `timeout`: a hang fails the test (status 124).

HANG_LIMIT=300 # far beyond any run here; only a blocked open reaches it

# pick CLASS FROM COUNT: the first COUNT photos of DATASET/CLASS, sorted; FROM+1 onward.
pick() {
  find "$SHARED/datasets/$1" -type f | sort | tail -n "+$(($2 + 1))" | head -n "$3"
}

# copy_to FOLDER PHOTOS...: the photos copied into FOLDER (made).
copy_to() {
  local folder=$1
  shift
  mkdir -p "$folder"
  cp "$@" "$folder/"
}

setup_file() {
  load test_helper
  local tf=$BATS_FILE_TMPDIR/tf_files pokemon
  pokemon=$(printf 'Pok\xc3\xa9mon') # composed (NFC), as Linux keeps what it is given
  mapfile -t photos < <(pick superheroes/darth_vader 0 8)
  copy_to "$tf/data/猫" "${photos[@]}"
  mapfile -t photos < <(pick superheroes/elsa 0 8)
  copy_to "$tf/data/_elsa_" "${photos[@]}"
  mapfile -t photos < <(pick flowers/sunflowers 0 8)
  copy_to "$tf/data/狗" "${photos[@]}"
  mapfile -t photos < <(pick flowers/daisy 0 8)
  copy_to "$tf/data/قطة" "${photos[@]}"
  mapfile -t photos < <(pick flowers/tulips 0 8)
  copy_to "$tf/data/$pokemon" "${photos[@]}"
  timeout "$HANG_LIMIT" bash "$REPO/train.sh" "$tf" --how_many_training_steps 200 --random_seed 1 >/dev/null
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

# held_out LABELLED: a labelled folder of photos train.sh did not see, two a class, with
# the training folders' names spelt otherwise: edge underscores doubled, Pokémon decomposed (NFD).
held_out() {
  local labelled=$1 photos
  mapfile -t photos < <(pick superheroes/darth_vader 8 2)
  copy_to "$labelled/猫" "${photos[@]}"
  mapfile -t photos < <(pick superheroes/elsa 8 2)
  copy_to "$labelled/__elsa__" "${photos[@]}"
  mapfile -t photos < <(pick flowers/sunflowers 8 2)
  copy_to "$labelled/狗" "${photos[@]}"
  mapfile -t photos < <(pick flowers/daisy 8 2)
  copy_to "$labelled/قطة" "${photos[@]}"
  mapfile -t photos < <(pick flowers/tulips 8 2)
  copy_to "$labelled/$(printf 'Poke\xcc\x81mon')" "${photos[@]}"
}

@test "train.sh writes labels of every script, edges trimmed, one a line, that read back" {
  # Folders sorted by name: Pokémon, _elsa_, قطة, 狗, 猫.
  [ "$(cat "$TF/retrained_labels.txt")" = "$(printf 'pok\xc3\xa9mon\nelsa\nقطة\n狗\n猫')" ]
  [ "$(wc -l <"$TF/retrained_labels.txt")" -eq 5 ]
}

@test "guess.sh names photos by labels in Chinese and with edge underscores" {
  vader=$(pick superheroes/darth_vader 8 1)
  elsa=$(pick superheroes/elsa 8 1)
  run timeout "$HANG_LIMIT" bash "$REPO/guess.sh" "$TF" "$vader" "$elsa"
  [ "$status" -eq 0 ]
  ours
  [ "${#OURS[@]}" -eq 13 ] # two headers, five labels each, a blank line between
  [[ ${OURS[1]} == "猫 (score = "* ]]
  [[ ${OURS[8]} == "elsa (score = "* ]]
  run timeout "$HANG_LIMIT" bash "$REPO/guess.sh" "$TF" "$(pick flowers/daisy 8 1)" --json
  [ "$status" -eq 0 ]
  [[ $output == *'"label": "\u0642\u0637\u0629"'* ]] # قطة, as JSON escapes it
}

@test "evaluate.sh matches folders in any script, with edge underscores or decomposed, to the labels" {
  labelled="$BATS_TEST_TMPDIR/labelled"
  held_out "$labelled"
  run timeout "$HANG_LIMIT" bash "$REPO/evaluate.sh" "$TF" "$labelled" "$BATS_TEST_TMPDIR/report"
  [ "$status" -eq 0 ]
  ours
  [[ ${OURS[0]} == "Evaluation accuracy = "*" (N=10)" ]]
  [[ $output != *"match no label"* ]]
  # Each held-out photo of Darth Vader and Elsa under its own label.
  "${TG_VENV:-$REPO/.venv}/bin/python" - "$BATS_TEST_TMPDIR/report/report.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1], encoding="utf-8"))
per_class = report["per_class"]
assert set(per_class) == {"pokémon", "elsa", "قطة", "狗", "猫"}, per_class
assert all(per_class[label]["support"] == 2 for label in per_class), per_class
assert per_class["猫"]["recall"] == per_class["elsa"]["recall"] == 1.0, per_class
EOF
  # The training folders themselves, evaluated as they are.
  run timeout "$HANG_LIMIT" bash "$REPO/evaluate.sh" "$TF" "$TF/data" "$BATS_TEST_TMPDIR/report-data"
  [ "$status" -eq 0 ]
  [[ $output == *"(N=40)"* ]]
}

@test "train.sh refuses folders that give no label or one label between them, in one line" {
  dir="$BATS_TEST_TMPDIR/clash"
  copy_to "$dir/data/猫" "$(pick superheroes/darth_vader 0 1)" "$(pick superheroes/darth_vader 1 1)"
  copy_to "$dir/data/_猫_" "$(pick superheroes/elsa 0 1)" "$(pick superheroes/elsa 1 1)"
  copy_to "$dir/data/!!!" "$(pick flowers/daisy 0 1)" "$(pick flowers/daisy 1 1)"
  run timeout "$HANG_LIMIT" bash "$REPO/train.sh" "$dir"
  [ "$status" -eq 1 ]
  ours
  [ "${#OURS[@]}" -eq 1 ]
  [ "${OURS[0]}" = "tensor-guess: '!!!' gives no label (a label needs a letter or a digit); '_猫_' and '猫' both give the label '猫' (folders in $dir/data); rename them so that each gives a label of its own" ]
  [ ! -e "$dir/retrained_labels.txt" ]
}

@test "a FIFO given to guess.sh or in evaluate.sh's folder is skipped in one line" {
  mkfifo "$BATS_TEST_TMPDIR/photo.jpg"
  elsa=$(pick superheroes/elsa 8 1)
  run timeout "$HANG_LIMIT" bash "$REPO/guess.sh" "$TF" "$BATS_TEST_TMPDIR/photo.jpg" "$elsa"
  [ "$status" -eq 1 ]
  ours
  [ "${OURS[0]}" = "tensor-guess: skipping $BATS_TEST_TMPDIR/photo.jpg: cannot read the file (a FIFO (named pipe), not a regular file; only regular files are read)" ]
  [ "$(grep -c '^tensor-guess:' <<<"$output")" -eq 1 ]
  [[ $output == *"==> $elsa <=="*"elsa (score = "* ]]

  labelled="$BATS_TEST_TMPDIR/labelled"
  held_out "$labelled"
  mkfifo "$labelled/猫/pipe.jpg"
  run timeout "$HANG_LIMIT" bash "$REPO/evaluate.sh" "$TF" "$labelled" "$BATS_TEST_TMPDIR/report"
  [ "$status" -eq 0 ]
  ours
  [ "$(grep -c '^tensor-guess:' <<<"$output")" -eq 1 ]
  [[ $output == *"tensor-guess: skipping $labelled/猫/pipe.jpg: cannot read the file (a FIFO (named pipe), not a regular file; only regular files are read)"* ]]
  [[ $output == *"(N=10)"* ]]
}

@test "a FIFO as the labels file or the labels CSV ends the run in one line" {
  copy="$BATS_TEST_TMPDIR/model"
  mkdir "$copy"
  cp -r "$TF/retrained_graph.pb" "$TF/saved_model" "$copy/"
  mkfifo "$copy/retrained_labels.txt"
  run timeout "$HANG_LIMIT" bash "$REPO/guess.sh" "$copy" "$(pick superheroes/elsa 8 1)"
  [ "$status" -eq 1 ]
  ours
  [ "${#OURS[@]}" -eq 1 ]
  [ "${OURS[0]}" = "tensor-guess: cannot read labels file $copy/retrained_labels.txt (a FIFO (named pipe), not a regular file; only regular files are read); train first with train.sh" ]

  mkfifo "$BATS_TEST_TMPDIR/labels.csv"
  mkdir "$BATS_TEST_TMPDIR/new"
  run timeout "$HANG_LIMIT" bash "$REPO/train.sh" "$BATS_TEST_TMPDIR/new" --labels_csv "$BATS_TEST_TMPDIR/labels.csv"
  [ "$status" -eq 1 ]
  ours
  [ "${#OURS[@]}" -eq 1 ]
  [ "${OURS[0]}" = "tensor-guess: cannot read the labels CSV $BATS_TEST_TMPDIR/labels.csv (a FIFO (named pipe), not a regular file; only regular files are read)" ]
}

@test "evaluate.sh keeps a labels CSV to its folder and skips a FIFO and a 10 GB sparse file in one line each" {
  set_dir="$BATS_TEST_TMPDIR/set"
  held_out "$set_dir"
  private=$(pick superheroes/darth_vader 20 1)
  cp "$private" "$BATS_TEST_TMPDIR/private.jpg"
  mkfifo "$set_dir/pipe.jpg"
  truncate -s 10G "$set_dir/huge.jpg"
  {
    echo "path,label"
    (cd "$set_dir" && find . -name '*.jpg' -type f -size -100M | sort | while read -r photo; do
      echo "$photo,$(basename "$(dirname "$photo")")"
    done)
    echo "pipe.jpg,猫"
    echo "huge.jpg,猫"
    echo "../private.jpg,猫"
    echo "$private,猫"
  } >"$set_dir/labels.csv"
  run timeout "$HANG_LIMIT" bash "$REPO/evaluate.sh" "$TF" "$set_dir/labels.csv" "$BATS_TEST_TMPDIR/report"
  [ "$status" -eq 0 ]
  ours
  [ "$(grep -c '^tensor-guess: ' <<<"$output")" -eq 4 ] # where the labels come from, the rows outside, the two files
  [[ $output == *"tensor-guess: $set_dir/labels.csv: skipping 2 row(s) naming a file outside $set_dir (line 14: ../private.jpg, line 15: $private); paths are relative to the CSV's folder"* ]]
  [[ $output == *"tensor-guess: skipping $set_dir/pipe.jpg: cannot read the file (a FIFO (named pipe), not a regular file; only regular files are read)"* ]]
  [[ $output == *"tensor-guess: skipping $set_dir/huge.jpg: cannot read the file (10.7 GB, larger than any photo: over the limit of 1.6 GB)"* ]]
  [[ $output == *"(N=10)"* ]]
  run grep -c -e "private.jpg" -e "$(basename "$private")" "$BATS_TEST_TMPDIR/report/report.json"
  [ "$output" = 0 ]
}
