# shellcheck shell=bash
# Shared by points.bats (the local runtime) and docker_points.bats (the Docker
# runtime): a small points project, and the checks both runtimes must pass, each
# running the wrappers through as_user in $WORK (the test user there, in Docker).

HANDS=$SHARED/datasets/keypoints/sign-digits-hands.json
# What the tests train with: quick (3 passes over 60 photos), seeded.
POINTS_TRAINING=(--point_epochs 3 --augment 1 --random_seed 1)

# make_points_dir DIR COUNT [SKIP]: DIR/keypoints.json, the shared hands file cut to
# its photos COUNT in name order after the first SKIP, and DIR/data/<digit>/, copies
# of those photos (the file's names are relative to DIR/data, as train.sh DIR reads
# them).
make_points_dir() {
  "$REPO/.venv/bin/python" - "$HANDS" "$SHARED/datasets/sign-digits" "$1" "$2" "${3:-0}" <<'EOF'
import json, shutil, sys
from pathlib import Path

hands, photos, folder = (Path(arg) for arg in sys.argv[1:4])
count, skip = int(sys.argv[4]), int(sys.argv[5])
coco = json.loads(hands.read_text())
coco["images"] = sorted(coco["images"], key=lambda image: image["file_name"])[skip:skip + count]
kept = {image["id"] for image in coco["images"]}
coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in kept]
for image in coco["images"]:
    target = folder / "data" / image["file_name"]
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(photos / image["file_name"], target)
(folder / "keypoints.json").write_text(json.dumps(coco))
EOF
}

# make_points_work: in $WORK, "hands model" (60 labelled hands, to train on) and
# "to guess" (3 hands it never sees, under their own names).
make_points_work() {
  make_points_dir "$WORK/hands model" 60
  make_points_dir "$BATS_FILE_TMPDIR/held out" 3 100
  mkdir "$WORK/to guess"
  find "$BATS_FILE_TMPDIR/held out/data" -type f -exec cp {} "$WORK/to guess/" \;
}

# train_points_model: train.sh on "hands model", its output into $WORK/train.out;
# the tests check it (a failure shows there, not as setup_file's).
train_points_model() {
  as_user bash "$REPO/train.sh" "hands model" "${POINTS_TRAINING[@]}" >"$WORK/train.out" 2>&1 ||
    echo "train.sh failed: $?" >>"$WORK/train.out"
}

# point_names: the trained model's point names, one a line, in its order.
point_names() {
  "$REPO/.venv/bin/python" -c 'import json, sys; print(*json.load(open(sys.argv[1]))["names"], sep="\n")' \
    "$WORK/hands model/points_skeleton.json"
}

# check_points_trained: train.sh DIR learned points from DIR/keypoints.json and the
# photos under DIR/data, and published a points model.
check_points_trained() {
  cat "$WORK/train.out"
  [[ $(cat "$WORK/train.out") != *"train.sh failed"* ]]
  grep -q "^Training a points model on the points labelled in $WORK/hands model/keypoints.json$" "$WORK/train.out"
  grep -q "^Test: mean error " "$WORK/train.out"
  [ "$(cat "$WORK/hands model/model_kind")" = points ]
  [ "$(point_names | wc -l)" -eq 21 ]
  [ -s "$WORK/hands model/retrained_graph.pb" ]
  [ -s "$WORK/hands model/points_skeleton.json" ]
  [ -f "$WORK/hands model/saved_model/saved_model.pb" ]
  [ -s "$WORK/hands model/report/report.json" ]
}

# check_points_text: guess.sh prints, under each photo's header, the box, then one
# `name x y score` line a point, in the model's order; --draw FOLDER (relative: from
# the working directory) creates FOLDER and draws each photo there.
# shellcheck disable=SC2154  # status, stderr and lines are set by bats's run
check_points_text() {
  cd "$WORK" || return
  run --separate-stderr as_user bash "$REPO/guess.sh" "hands model" "to guess"/* --draw "new drawings"
  echo "$stderr"
  [ "$status" -eq 0 ] && [ -z "$stderr" ]
  [ "$(find "$WORK/new drawings" -name 'IMG_*.png' | wc -l)" -eq 3 ]
  [ "${#lines[@]}" -eq $((3 * 23)) ] # 3 x (header, box, 21 points); bats leaves out the blank lines
  mapfile -t names < <(point_names)
  local number='-?[0-9]+\.[0-9]' score='[01]\.[0-9]{2}' block k
  for block in 0 1 2; do
    [[ ${lines[block * 23]} =~ ^==\>\ to\ guess/IMG_[0-9]+\.JPG\ \<==$ ]]
    [[ ${lines[block * 23 + 1]} =~ ^box\ $number\ $number\ $number\ $number\ $score$ ]]
    for k in "${!names[@]}"; do
      [[ ${lines[block * 23 + 2 + k]} =~ ^${names[k]}\ $number\ $number\ $score$ ]]
    done
  done
}

# check_points_json_and_drawings: guess.sh --json gives the issue's keys, and --draw
# draws each photo at its own size, its points' pixels red, keeping a file already
# there that guess did not draw.
# shellcheck disable=SC2154  # status, stderr and output are set by bats's run
check_points_json_and_drawings() {
  local photo
  cd "$WORK" || return
  photo=$(find "to guess" -type f -printf '%f\n' | sort | head -n 1)
  as_user mkdir "drawn before"
  as_user cp "hands model/keypoints.json" "drawn before/${photo%.*}.png" # the user's own file
  run --separate-stderr as_user bash "$REPO/guess.sh" "hands model" "to guess"/* --json --draw "drawn before"
  echo "$stderr"
  [ "$status" -eq 0 ]
  cmp "$WORK/hands model/keypoints.json" "$WORK/drawn before/${photo%.*}.png"
  [[ $stderr == *"tensor-guess: to guess/$photo drawn into drawn before/${photo%.*}-2.png (${photo%.*}.png is not a drawing of guess --draw, kept as it is)"* ]]
  "$REPO/.venv/bin/python" - "$output" "$WORK" <<'EOF'
import json, sys
from pathlib import Path

import numpy as np
from PIL import Image

guesses, work = json.loads(sys.argv[1]), Path(sys.argv[2])
names = json.loads((work / "hands model" / "points_skeleton.json").read_text())["names"]
assert [g["image"] for g in guesses] == sorted(f"to guess/{p.name}" for p in (work / "to guess").iterdir())
drawn = sorted(p.name for p in (work / "drawn before").iterdir())
assert len(drawn) == 4, drawn  # the user's file, and 3 drawings
for guess in guesses:
    assert list(guess) == ["image", "box", "score", "keypoints"], guess
    assert len(guess["box"]) == 4 and 0 <= guess["score"] <= 1
    assert [p["name"] for p in guess["keypoints"]] == names
    assert all(list(p) == ["name", "x", "y", "score"] for p in guess["keypoints"])
    stem = Path(guess["image"]).stem
    picture = work / "drawn before" / (f"{stem}-2.png" if f"{stem}-2.png" in drawn else f"{stem}.png")
    pixels = np.asarray(Image.open(picture).convert("RGB"))
    assert pixels.shape == (100, 100, 3), pixels.shape  # the photo's own size
    for p in guess["keypoints"]:  # the pixel holding each point is drawn red
        assert tuple(pixels[int(p["y"]), int(p["x"])]) == (230, 40, 40), (picture, p)
EOF
}

# check_points_guessdir DEST [FLAGS...]: guessDir.sh on the points model (with FLAGS,
# e.g. --model tflite-int8) copies each photo of "to guess" whole into DEST, draws it
# into DEST/drawn, and writes DEST/keypoints.json that train's reader reads back, the
# points guess.sh --json gives with the same FLAGS; a rerun skips them all and leaves
# keypoints.json as it was.
# shellcheck disable=SC2154  # status and output are set by bats's run
check_points_guessdir() {
  local dest=$1
  shift
  cd "$WORK" || return
  run as_user bash "$REPO/guessDir.sh" "hands model" "to guess" "$dest" "$@"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ $output == *"Copied 3 images into $WORK/$dest"* ]]
  [[ $output == *"Wrote $WORK/$dest/keypoints.json (3 photos, 3 new;"* ]]
  [ "$(find "$dest/drawn" -name '*.JPG.png' | wc -l)" -eq 3 ]
  run --separate-stderr env TG_RUNTIME=local bash "$REPO/guess.sh" "hands model" "to guess"/* --json "$@"
  [ "$status" -eq 0 ]
  PYTHONPATH="$REPO/src" "$REPO/.venv/bin/python" - "$output" "$WORK" "$dest" <<'EOF2'
import json, sys
from pathlib import Path

import numpy as np

from tensorguess.data.keypoints import read_keypoints

guesses, work, dest = json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[2]) / sys.argv[3]
records = {r["source"]: r for r in map(json.loads, (dest / "guesses.jsonl").read_text().splitlines())}
document = json.loads((dest / "keypoints.json").read_text())
annotations = {a["image_id"]: a for a in document["annotations"]}
by_name = {image["file_name"]: annotations[image["id"]] for image in document["images"]}
for guess in guesses:
    record = records[Path(guess["image"]).name]
    assert (dest / record["copy"]).read_bytes() == (work / guess["image"]).read_bytes()
    triples = np.array(by_name[record["copy"]]["keypoints"]).reshape(-1, 3)
    assert np.allclose(triples[:, :2], [[p["x"], p["y"]] for p in guess["keypoints"]], atol=1e-3)
    assert np.allclose(by_name[record["copy"]]["keypoint_scores"], [p["score"] for p in guess["keypoints"]],
                       atol=1e-4)
read = read_keypoints(dest / "keypoints.json", say=lambda line: None)
assert len(read.instances) == 3 and len(read.names) == 21
EOF2
  before=$(sha1sum "$dest/keypoints.json")
  run as_user bash "$REPO/guessDir.sh" "hands model" "to guess" "$dest" "$@"
  [ "$status" -eq 0 ]
  [[ $output == *"Skipped 3 photos of $WORK/to guess already sorted"* ]]
  [ "$(sha1sum "$dest/keypoints.json")" = "$before" ]
}

# check_points_export: export.sh writes the points model's TFLite float and int8 files
# and its Core ML package, and says how far each format's points are from the .pb's;
# guessDir.sh then sorts with the int8 file, as guess.sh --model tflite-int8 scores.
# shellcheck disable=SC2154  # status and output are set by bats's run
check_points_export() {
  cd "$WORK" || return
  run as_user bash "$REPO/export.sh" "hands model" --format tflite,tflite-int8,coreml
  echo "$output"
  [ "$status" -eq 0 ]
  [[ $output == *"Points per format against the .pb, on "*" test photos"* ]]
  [[ $output =~ tflite-int8\ +[0-9.]+%\ +[0-9.]+% ]]
  [ -s "$WORK/hands model/retrained_graph.tflite" ]
  [ -s "$WORK/hands model/retrained_graph_int8.tflite" ]
  [ -d "$WORK/hands model/retrained_graph.mlpackage" ]
  check_points_guessdir "sorted by int8" --model tflite-int8
}

# same_points JSON JSON: two guess.sh --json outputs of the 3 photos in "to guess" hold
# the same images, boxes and points (scores included), to 1e-3 pixel.
same_points() {
  "$REPO/.venv/bin/python" - "$1" "$2" <<'EOF2'
import json, sys

import numpy as np

first, second = (json.loads(text) for text in sys.argv[1:3])
assert [d["image"] for d in first] == [l["image"] for l in second] and len(first) == 3
for d, l in zip(first, second):
    np.testing.assert_allclose(d["box"], l["box"], atol=1e-3)
    np.testing.assert_allclose([[p["x"], p["y"], p["score"]] for p in d["keypoints"]],
                               [[p["x"], p["y"], p["score"]] for p in l["keypoints"]], atol=1e-3)
EOF2
}
