#!/usr/bin/env bats
# A kill between the model's files: SIGKILL injected by strace at each rename train.sh and
# export.sh make in DIR. Two models tell a mix apart: A knows "darth vader" and "elsa", B (the
# same photos, the folder renamed) "elsa" and "zzz vader", in the other order. After each kill
# guess with every format gives a label set of one model, the model its own graph is.

bats_require_minimum_version 1.5.0

setup_file() {
  load test_helper
  export BASE=$BATS_FILE_TMPDIR
  # S1: model A trained and exported; S2: S1, then model B trained over it (A's exports stay).
  make_tf_files "$BASE/S1" 6
  mkdir -p "$BASE/S1/data_b"
  cp -r "$BASE/S1/data/darth_vader" "$BASE/S1/data_b/zzz_vader"
  cp -r "$BASE/S1/data/elsa" "$BASE/S1/data_b/elsa"
  train "$BASE/S1" data >/dev/null
  bash "$REPO/export.sh" "$BASE/S1" --format tflite,coreml >/dev/null
  cp -a "$BASE/S1" "$BASE/S2"
  train "$BASE/S2" data_b >/dev/null
  # The renames of a training of B over S1, and of an export over S2, counted once.
  cp -a "$BASE/S1" "$BASE/count-train"
  strace -f -o "$BASE/train.log" -e trace=rename \
    bash "$REPO/train.sh" "$BASE/count-train" --image_dir data_b --how_many_training_steps 50 --recipe_mode fixed \
    --random_seed 1 >/dev/null
  renames_in "$BASE/count-train" "$BASE/train.log" >"$BASE/train.renames"
  cp -a "$BASE/S2" "$BASE/count-export"
  strace -f -o "$BASE/export.log" -e trace=rename,unlinkat \
    bash "$REPO/export.sh" "$BASE/count-export" --format tflite,coreml >/dev/null
  renames_in "$BASE/count-export" "$BASE/export.log" >"$BASE/export.renames"
}

setup() {
  load test_helper
  DIR=$BATS_TEST_TMPDIR/run
  PHOTO=$(first_photo elsa)
}

teardown() {
  [[ -z ${pid:-} ]] || kill -9 "$pid" 2>/dev/null || true
}

# train DIR IMAGES [ARGS...]: train.sh DIR on DIR/IMAGES, seeded, few steps (bottlenecks cached).
train() {
  local dir=$1 images=$2
  shift 2
  bash "$REPO/train.sh" "$dir" --image_dir "$images" --how_many_training_steps 50 --recipe_mode fixed --random_seed 1 "$@"
}

# renames_in DIR LOG: the ordinals, among the renames of the traced process itself (the
# wrapper's pid: it execs the Python), of those whose new name is directly in DIR.
renames_in() {
  awk -v dir="$1/" '$2 ~ /^rename\(/ && main == "" { main = $1 }
    $1 == main && $2 ~ /^rename\(/ { n++; split($0, args, "\""); target = args[4]
      rest = substr(target, length(dir) + 1)
      if (index(target, dir) == 1 && index(rest, "/") == 0) print n }' "$2"
}

# labels_of DIR: for each format guess can run in DIR, a line "FORMAT TOP|LABEL,LABEL" from
# guess --json on an Elsa photo: its best label and every label it scores, sorted.
labels_of() {
  PYTHONPATH="$REPO/src" "$REPO/.venv/bin/python" - "$1" "$PHOTO" <<'EOF'
import contextlib, io, json, os, sys
from tensorguess.cli import main
folder, photo = sys.argv[1:]
for model, name in (("pb", "retrained_graph.pb"), ("saved_model", "saved_model"),
                    ("tflite", "retrained_graph.tflite")):
    if model == "pb" or os.path.exists(os.path.join(folder, name)):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["guess", folder, "--model", model, "--json", photo])
        found = json.loads(out.getvalue())[0] if code == 0 else {"label": f"status {code}", "scores": {}}
        print(model, found["label"] + "|" + ",".join(sorted(found["scores"])))
EOF
}

A="elsa|darth vader,elsa"
B="elsa|elsa,zzz vader"

# the_graph_is DIR A|B: guess with DIR's graph and labels gives that model's labels (a graph
# with the other model's labels would call the Elsa photo "darth vader" or "zzz vader").
the_graph_is() {
  local want=$A
  [ "$2" = A ] || want=$B
  [ "$(labels_of "$1" | grep -c "^pb $want$")" -eq 1 ]
}

@test "train.sh killed at each rename in DIR: every format then gives the labels of one model, the graph's" {
  mapfile -t ordinals <"$BASE/train.renames"
  grep rename "$BASE/train.log"
  # The journal, the graph, the labels, the SavedModel moved aside and swapped in, the log,
  # the model's kind and the folders it read.
  [ "${#ordinals[@]}" -eq 8 ]
  for n in "${ordinals[@]}"; do
    rm -rf "$DIR"
    cp -a "$BASE/S1" "$DIR"
    code=0
    strace -f -o /dev/null -e trace=rename -e "inject=rename:signal=KILL:when=$n" \
      bash "$REPO/train.sh" "$DIR" --image_dir data_b --how_many_training_steps 50 --recipe_mode fixed --random_seed 1 \
      >"$BATS_TEST_TMPDIR/out" 2>&1 || code=$?
    [ "$code" -eq 137 ] || { echo "rename $n: status $code"; cat "$BATS_TEST_TMPDIR/out"; false; }
    found=$(labels_of "$DIR")
    echo "killed at rename $n:"$'\n'"$found"
    # Killed before the journal was in place: all of A; after: the first reader finishes B.
    if [ "$n" -eq "${ordinals[0]}" ]; then want=$A; else want=$B; fi
    [ "$(grep -c "^pb $want$" <<<"$found")" -eq 1 ]
    [ "$(grep -c "^saved_model $want$" <<<"$found")" -eq 1 ]
    # A's .tflite carries A's labels inside, whatever DIR's labels file now says.
    [ "$(grep -c "^tflite $A$" <<<"$found")" -eq 1 ]
    [ ! -e "$DIR/.publish.json" ]
  done
}

@test "the temps of a train killed before its journal are removed by the next train, links left alone" {
  cp -a "$BASE/S1" "$DIR"
  mkdir "$BATS_TEST_TMPDIR/victim" && echo keep >"$BATS_TEST_TMPDIR/victim/file"
  ln -s "$BATS_TEST_TMPDIR/victim" "$DIR/.saved_model.linkedxx"
  touch "$DIR/.retrained_graph.pb.notours.tmp" "$DIR/.retrained_graph.pb.mine.tmp.bak"
  journal=$(head -n 1 "$BASE/train.renames")
  run strace -f -o /dev/null -e trace=rename -e "inject=rename:signal=KILL:when=$journal" \
    bash "$REPO/train.sh" "$DIR" --image_dir data_b --how_many_training_steps 50 --recipe_mode fixed --random_seed 1
  [ "$status" -eq 137 ]
  ls -a "$DIR"
  [ "$(find "$DIR" -maxdepth 1 -name '.retrained_graph.pb.????????.tmp' | wc -l)" -eq 1 ]
  [ "$(find "$DIR" -maxdepth 1 -name '.retrained_labels.txt.????????.tmp' | wc -l)" -eq 1 ]
  [ "$(find "$DIR" -maxdepth 1 -type d -name '.saved_model.????????.tmp' | wc -l)" -eq 1 ]
  run train "$DIR" data_b
  [ "$status" -eq 0 ]
  [[ $output =~ Removed\ 7\ partial\ outputs\ that\ killed\ runs\ left\ in\ $DIR: ]]
  ls -a "$DIR"
  [ "$(find "$DIR" -maxdepth 1 -name '.*.????????.tmp' | wc -l)" -eq 0 ]
  # Not ours: a link with our pattern's name, and names outside the pattern.
  [ -L "$DIR/.saved_model.linkedxx" ]
  [ "$(cat "$BATS_TEST_TMPDIR/victim/file")" = keep ]
  [ -e "$DIR/.retrained_graph.pb.notours.tmp" ] && [ -e "$DIR/.retrained_graph.pb.mine.tmp.bak" ]
  the_graph_is "$DIR" B
}

@test "a second train.sh on DIR is refused in one line naming the first's pid, until the first is killed" {
  cp -a "$BASE/S1" "$DIR"
  env --default-signal=INT bash "$REPO/train.sh" "$DIR" --image_dir data_b --how_many_training_steps 50 --recipe_mode fixed \
    >"$BATS_TEST_TMPDIR/first" 2>&1 3>&- &
  pid=$!
  wait_until 120 grep -q "^Found 12 files" "$BATS_TEST_TMPDIR/first"
  kill -STOP "$pid"
  code=0
  train "$DIR" data_b >/dev/null 2>"$BATS_TEST_TMPDIR/second" || code=$?
  cat "$BATS_TEST_TMPDIR/second"
  [ "$code" -eq 1 ]
  [ "$(grep -c . "$BATS_TEST_TMPDIR/second")" -eq 1 ]
  [ "$(cat "$BATS_TEST_TMPDIR/second")" = "tensor-guess: another train.sh or export.sh (pid $pid) is writing into $DIR; wait for it to end, or stop it, then run again" ]
  code=0
  bash "$REPO/export.sh" "$DIR" --format tflite >/dev/null 2>"$BATS_TEST_TMPDIR/export" || code=$?
  [ "$code" -eq 1 ]
  [[ $(cat "$BATS_TEST_TMPDIR/export") == "tensor-guess: another train.sh or export.sh (pid $pid) is writing into $DIR;"* ]]
  kill -9 "$pid"
  wait "$pid" || true
  run train "$DIR" data_b
  [ "$status" -eq 0 ]
  the_graph_is "$DIR" B
}

# package_labels DIR: the labels of DIR/retrained_graph.mlpackage, read back from its spec
# (fails on a package that is not whole).
package_labels() {
  PYTHONPATH="$REPO/src" "$REPO/.venv/bin/python" -c '
import sys
from tensorguess.export.coreml import read_spec
print(",".join(sorted(read_spec(sys.argv[1] + "/retrained_graph.mlpackage")["labels"])))' "$1" 2>/dev/null
}

@test "export.sh killed at each rename in DIR or inside removing the old .mlpackage: each format whole, of one model" {
  mapfile -t ordinals <"$BASE/export.renames"
  grep rename "$BASE/export.log"
  # The .tflite's journal and rename; the package built, its journal, the old one set aside, the swap.
  [ "${#ordinals[@]}" -eq 6 ]
  # The 3rd unlinkat of the process after the swap: inside the removal of the package set aside.
  removal=$(awk '$2 ~ /^rename\(/ && main == "" { main = $1 } $1 != main { next }
    $2 ~ /^unlinkat\(/ { u++; if (swapped && ++after == 3) { print u; exit } }
    $2 ~ /^rename\(/ && $0 ~ /mlpackage.*tmp", "[^"]*\/retrained_graph.mlpackage"/ { swapped = 1 }' \
    "$BASE/export.log")
  [ -n "$removal" ]
  for n in "${ordinals[@]}" "unlinkat$removal"; do
    rm -rf "$DIR"
    cp -a "$BASE/S2" "$DIR"
    inject="rename:signal=KILL:when=$n"
    [[ $n != unlinkat* ]] || inject="unlinkat:signal=KILL:when=${n#unlinkat}"
    code=0
    strace -f -o /dev/null -e trace=rename,unlinkat -e "inject=$inject" \
      bash "$REPO/export.sh" "$DIR" --format tflite,coreml >"$BATS_TEST_TMPDIR/out" 2>&1 || code=$?
    [ "$code" -eq 137 ] || { echo "$inject: status $code"; cat "$BATS_TEST_TMPDIR/out"; false; }
    found=$(labels_of "$DIR")
    echo "killed at $inject:"$'\n'"$found"
    package=$(package_labels "$DIR")
    echo "mlpackage $package"
    [ "$(grep -c "^pb $B$" <<<"$found")" -eq 1 ]
    [ "$(grep -c "^saved_model $B$" <<<"$found")" -eq 1 ]
    [ "$(grep -Fxc -e "tflite $A" -e "tflite $B" <<<"$found")" -eq 1 ]
    [[ $package == "darth vader,elsa" || $package == "elsa,zzz vader" ]]
  done
  # The last case was killed while removing the old package: its remains (and the empty folder
  # it was built in) go with the next export.
  ls -a "$DIR"
  run bash "$REPO/export.sh" "$DIR" --format coreml
  [ "$status" -eq 0 ]
  [[ $output == *"Removed 2 partial outputs"*".retrained_graph.mlpackage."*".old"* ]]
  [ "$(package_labels "$DIR")" = "elsa,zzz vader" ]
}

@test "export.sh replaces a symlinked .mlpackage and .tflite without following them: their targets stay" {
  cp -a "$BASE/S2" "$DIR"
  rm -rf "$DIR/retrained_graph.mlpackage" "$DIR/retrained_graph.tflite"
  mkdir "$BATS_TEST_TMPDIR/victim" && echo keep >"$BATS_TEST_TMPDIR/victim/file"
  echo keep >"$BATS_TEST_TMPDIR/victim.tflite"
  ln -s "$BATS_TEST_TMPDIR/victim" "$DIR/retrained_graph.mlpackage"
  ln -s "$BATS_TEST_TMPDIR/victim.tflite" "$DIR/retrained_graph.tflite"
  run bash "$REPO/export.sh" "$DIR" --format tflite,coreml
  echo "$output"
  [ "$status" -eq 0 ]
  [ ! -L "$DIR/retrained_graph.mlpackage" ] && [ ! -L "$DIR/retrained_graph.tflite" ]
  [ "$(package_labels "$DIR")" = "elsa,zzz vader" ]
  [ "$(ls "$BATS_TEST_TMPDIR/victim")" = file ] && [ "$(cat "$BATS_TEST_TMPDIR/victim/file")" = keep ]
  [ "$(cat "$BATS_TEST_TMPDIR/victim.tflite")" = keep ]
  [ "$(find "$DIR" -maxdepth 1 -name '.retrained_graph.*' | wc -l)" -eq 0 ]
}
