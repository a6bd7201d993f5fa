#!/usr/bin/env bats
# guessDir.sh into a DEST that someone else can write into, and with FIFOs where it reads:
# links planted under the names it writes, forged records, a racer swapping each new copy
# for a symlink, and SIGTERM. Nothing outside DEST may change; each run ends by itself.

setup_file() {
  load test_helper
  train_small_classifier "$BATS_FILE_TMPDIR/tf_files"
}

setup() {
  load test_helper
  TF="$BATS_FILE_TMPDIR/tf_files"
  PYTHON=${TG_VENV:-$REPO/.venv}/bin/python
  SRC="$BATS_TEST_TMPDIR/photos"
  DEST="$BATS_TEST_TMPDIR/sorted"
  mkdir -p "$SRC" "$DEST"
  cp "$(first_photo elsa)" "$SRC/a.jpg"
  cp "$(first_photo darth_vader)" "$SRC/b.jpg"
  VICTIM="$BATS_TEST_TMPDIR/victim.txt"
  printf 'someone else\x27s file, no final newline' >"$VICTIM"
  touch -d @1000000000 "$VICTIM"
  VICTIM_BEFORE="$(sha1sum <"$VICTIM") $(stat -c %Y "$VICTIM")"
}

teardown() {
  [[ -z ${PIDS-} ]] || kill -9 $PIDS 2>/dev/null || true
}

victim_untouched() {
  [ "$(sha1sum <"$VICTIM") $(stat -c %Y "$VICTIM")" = "$VICTIM_BEFORE" ]
}

# ours: the lines of $output (all tensor-guess's: TensorFlow's start-up notices are kept
# off, stderr_noise.py) into OURS; fails if a traceback is among them.
ours() {
  mapfile -t OURS < <([[ -z $output ]] || printf '%s\n' "$output")
  ! grep -q Traceback <<<"$output"
}

# sort_into_dest: guessDir.sh SRC into DEST, killed if it has not ended by itself in 300 s (a hang).
sort_into_dest() {
  run timeout -k 10 300 bash "$REPO/guessDir.sh" "$TF" "$SRC" "$DEST"
  [ "$status" -ne 124 ] && [ "$status" -ne 137 ]
}

@test "the note or the manifest planted as a symlink: refused in one line, the victim and the link untouched" {
  for name in .guessDir-copy-in-flight.json guesses.jsonl; do
    rm -rf "$DEST" && mkdir "$DEST"
    ln -s "$VICTIM" "$DEST/$name"
    sort_into_dest
    [ "$status" -eq 1 ]
    ours
    [ "${#OURS[@]}" -eq 1 ]
    [[ ${OURS[0]} == "tensor-guess: $DEST/$name is a symbolic link (to $VICTIM), not a file guessDir wrote; "*"remove or rename it"*"run guessDir again" ]]
    victim_untouched
    [ "$(readlink "$DEST/$name")" = "$VICTIM" ]
    [ "$(ls -A "$DEST")" = "$name" ]
  done
}

@test "the note or the manifest as a hard link to a file outside DEST is not written into" {
  for name in .guessDir-copy-in-flight.json guesses.jsonl; do
    rm -rf "$DEST" && mkdir "$DEST"
    ln "$VICTIM" "$DEST/$name"
    sort_into_dest
    [ "$status" -eq 1 ]
    ours
    [ "${#OURS[@]}" -eq 1 ]
    [[ ${OURS[0]} == "tensor-guess: $DEST/$name is a file with 2 hard links"* ]]
    victim_untouched
  done
}

@test "the note or the manifest as a FIFO: the run ends by itself with one line" {
  for name in .guessDir-copy-in-flight.json guesses.jsonl; do
    rm -rf "$DEST" && mkdir "$DEST"
    mkfifo "$DEST/$name"
    sort_into_dest
    [ "$status" -eq 1 ]
    ours
    [ "${#OURS[@]}" -eq 1 ]
    [[ ${OURS[0]} == "tensor-guess: $DEST/$name is a FIFO (named pipe), not a file guessDir wrote;"* ]]
    [ -p "$DEST/$name" ]
  done
}

@test "a FIFO in SRC is skipped in one line, never opened; the run ends by itself" {
  mkfifo "$SRC/c.jpg"
  sort_into_dest
  [ "$status" -eq 0 ]
  ours
  [[ $output == *"tensor-guess: skipping $SRC/c.jpg: a FIFO (named pipe), not a regular file; only photos in regular files are sorted"* ]]
  [[ $output == *"Copied 2 images into $DEST"*"1 unreadable"* ]]
  grep -q '"source": "c.jpg", "error": "a FIFO' "$DEST/guesses.jsonl"
}

@test "a forged note without a label, or naming the manifest: one line, nothing written into what it names" {
  digest=$(sha1sum <"$TF/retrained_graph.pb" | cut -d' ' -f1)
  for forged in \
    "{\"source\": \"a.jpg\", \"copy\": \"elsa--99999.jpg\", \"score\": 0.9, \"scores\": {}, \"root\": \"$SRC\", \"model\": \"$digest\"}" \
    "{\"source\": \"a.jpg\", \"copy\": \"guesses.jsonl\", \"label\": \"elsa\", \"score\": 0.9, \"scores\": {}, \"root\": \"$SRC\", \"model\": \"$digest\"}"; do
    rm -rf "$DEST" && mkdir "$DEST"
    : >"$DEST/elsa--99999.jpg"
    : >"$DEST/guesses.jsonl"
    printf '%s\n' "$forged" >"$DEST/.guessDir-copy-in-flight.json"
    sort_into_dest
    [ "$status" -eq 0 ]
    ours
    [ "$(grep -c "tensor-guess: ignoring $DEST/.guessDir-copy-in-flight.json: it is not a note guessDir wrote" <<<"$output")" -eq 1 ]
    [[ $output == *"Copied 2 images into $DEST"* ]]
    [ ! -s "$DEST/elsa--99999.jpg" ]
    "$PYTHON" -c 'import json, sys; [json.loads(line) for line in open(sys.argv[1])]' "$DEST/guesses.jsonl"
  done
}

@test "manifest records whose copy is a path out of DEST do not make a photo count as sorted" {
  digest=$(sha1sum <"$TF/retrained_graph.pb" | cut -d' ' -f1)
  for copy in /etc/hostname ../../../../../../../etc/hostname; do
    printf '{"source": "a.jpg", "copy": "%s", "label": "elsa", "score": 0.9, "root": "%s", "model": "%s"}\n' \
      "$copy" "$SRC" "$digest"
  done >"$DEST/guesses.jsonl"
  sort_into_dest
  [ "$status" -eq 0 ]
  ours
  [[ $output == *"tensor-guess: ignoring 2 record(s) of $DEST/guesses.jsonl whose copy is not a file name in DEST"* ]]
  [[ $output == *"Copied 2 images into $DEST"* ]]
  [[ $output != *"Skipped"* ]]
}

@test "a racer swapping each new copy for a symlink sends nothing outside DEST" {
  rm "$SRC"/*
  find "$SHARED/datasets/sign-digits/7" -type f | sort | head -n 60 | xargs -I{} cp {} "$SRC/"
  "$PYTHON" "$REPO/tests/python/test_hostile_dest.py" race "$DEST" "$VICTIM" >"$BATS_TEST_TMPDIR/swaps" &
  PIDS=$!
  wait_until 60 grep -q ready "$BATS_TEST_TMPDIR/swaps"
  sort_into_dest
  kill "$PIDS"
  [ "$status" -eq 0 ]
  [[ $output == *"Copied 60 images into $DEST"* ]]
  [ "$(grep -c swapped "$BATS_TEST_TMPDIR/swaps")" -ge 30 ]
  victim_untouched
}

@test "SIGTERM with a FIFO in SRC: guessDir ends at once, status 143, DEST consistent" {
  rm "$SRC"/*
  mkfifo "$SRC/0-first.jpg"
  ln -s "$LONG_SET" "$SRC/set"
  bash "$REPO/guessDir.sh" "$TF" "$SRC" "$DEST" --batch_size 8 >"$BATS_TEST_TMPDIR/out" 2>&1 3>&- &
  PIDS=$!
  wait_until 120 bash -c "[ \"\$(wc -l <'$DEST/guesses.jsonl' 2>/dev/null || echo 0)\" -ge 30 ]"
  kill -TERM "$PIDS"
  wait_until 60 bash -c "! kill -0 $PIDS 2>/dev/null"
  status=0
  wait "$PIDS" || status=$?
  [ "$status" -eq 143 ]
  grep -q "tensor-guess: terminated" "$BATS_TEST_TMPDIR/out"
  "$PYTHON" - "$SRC" "$DEST" <<'EOF'
import json, os, sys
src, dest = sys.argv[1:]
records = [json.loads(line) for line in open(os.path.join(dest, "guesses.jsonl"))]
copies = {r["copy"]: r["source"] for r in records if "copy" in r}
for copy, source in copies.items():
    assert open(os.path.join(dest, copy), "rb").read() == open(os.path.join(src, source), "rb").read()
in_flight = os.path.join(dest, ".guessDir-copy-in-flight.json")
try:  # the note of the copy in flight; torn if the signal came while it was written (no claim yet)
    noted = json.load(open(in_flight))["copy"]
except (OSError, ValueError):
    noted = None
for name in os.listdir(dest):
    assert name in copies or name in ("guesses.jsonl", ".guessDir-copy-in-flight.json", noted), name
EOF
}
