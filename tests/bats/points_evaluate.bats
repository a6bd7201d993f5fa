#!/usr/bin/env bats
# The wrappers on a points model: evaluate.sh DIR LABELLED [OUT], LABELLED a folder
# holding keypoints.json or the annotation file itself.

# hands_set FOLDER FROM COUNT: FOLDER/keypoints.json with COUNT photos of the shared
# hands file (sorted by name) from FROM on (negative: from the end), their paths
# under FOLDER/sign-digits, a link to the shared photos.
hands_set() {
  mkdir -p "$1"
  ln -s "$SHARED/datasets/sign-digits" "$1/sign-digits"
  "$REPO/.venv/bin/python" - "$SHARED/datasets/keypoints/sign-digits-hands.json" "$1/keypoints.json" "$2" "$3" <<'EOF'
import json, sys
coco = json.load(open(sys.argv[1]))
images = sorted(coco["images"], key=lambda image: image["file_name"])[int(sys.argv[3]):][:int(sys.argv[4])]
kept = {image["id"] for image in images}
for image in images:
    image["file_name"] = "sign-digits/" + image["file_name"]
coco["images"] = images
coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in kept]
json.dump(coco, open(sys.argv[2], "w"))
EOF
}

setup_file() {
  load test_helper
  local dir=$BATS_FILE_TMPDIR/hands
  hands_set "$BATS_FILE_TMPDIR/trained" 0 80
  mkdir "$dir"
  PYTHONPATH="$REPO/src" "$REPO/.venv/bin/python" -m tensorguess train "$dir" \
    --keypoints "$BATS_FILE_TMPDIR/trained/keypoints.json" --image_dir "$BATS_FILE_TMPDIR/trained" \
    --tfhub_module "$TFHUB_MODULE" --point_epochs 3 --augment 1 --random_seed 1 >/dev/null
}

setup() {
  load test_helper
  DIR=$BATS_FILE_TMPDIR/hands
  LABELLED="$BATS_TEST_TMPDIR/held out"
  hands_set "$LABELLED" -20 20
}

@test "evaluate.sh DIR LABELLED OUT on a points model writes its report and says its numbers" {
  cd "$BATS_TEST_TMPDIR"
  before=$(find "held out" -exec stat -c '%n %s %Y' {} + | sort)
  run bash "$REPO/evaluate.sh" "$DIR" "held out" out
  ours
  [ "$status" -eq 0 ]
  [[ ${OURS[0]} == "Points from $LABELLED/keypoints.json (coco): 20 photos, 21 points"* ]]
  grep -Eq '^Evaluation: mean error [0-9.]+ px \([0-9.]+ of the points. box side\), PCK@0.05 [0-9.]+, @0.1 [0-9.]+, @0.2 [0-9.]+, AUC [0-9.]+ \(N=20\); hardest: ' <<<"$output"
  [[ $output == *"Leaks: none of these photos is a photo the model trained on (identical content checked)"* ]]
  [[ $output == *"Wrote the report into $BATS_TEST_TMPDIR/out: report.json, report.html, pck_curve.png"* ]]
  for name in report.json report.html pck_curve.png; do
    [ -s "out/$name" ]
  done
  "$REPO/.venv/bin/python" -c '
import json, sys
report = json.load(open(sys.argv[1]))
assert report["kind"] == "points" and report["n"] == 20, report["n"]
assert set(report["pck"]) == {"0.05", "0.1", "0.2"} and len(report["per_point"]) == 21
assert report["mean_error_px"] > 0 and 0 < report["mean_error_norm"] < 1 and report["leaks"]["identical"] == 0
' out/report.json
  [ "$(find "held out" -exec stat -c '%n %s %Y' {} + | sort)" = "$before" ]
}

@test "evaluate.sh with the annotation file writes DIR/report-<its name>" {
  run bash "$REPO/evaluate.sh" "$DIR" "$LABELLED/keypoints.json"
  [ "$status" -eq 0 ]
  [ -s "$DIR/report-keypoints/report.json" ]
  grep -q '"n": 20,' "$DIR/report-keypoints/report.json"
}

@test "evaluate.sh on a points model keeps someone's report.html and names a point the model lacks" {
  mkdir -p "$BATS_TEST_TMPDIR/out"
  echo 'my page' >"$BATS_TEST_TMPDIR/out/report.html"
  run bash "$REPO/evaluate.sh" "$DIR" "$LABELLED" "$BATS_TEST_TMPDIR/out"
  [ "$status" -eq 1 ]
  [ "$(grep '^tensor-guess:' <<<"$output")" = "tensor-guess: $BATS_TEST_TMPDIR/out already holds report.html that tensor-guess did not write; choose another report folder (nothing was changed)" ]
  [ "$(cat "$BATS_TEST_TMPDIR/out/report.html")" = 'my page' ]
  sed -i 's/"wrist"/"wrist_centre"/' "$LABELLED/keypoints.json"
  run bash "$REPO/evaluate.sh" "$DIR" "$LABELLED" "$BATS_TEST_TMPDIR/other"
  [ "$status" -eq 1 ]
  [[ "$(grep '^tensor-guess:' <<<"$output")" == "tensor-guess: $LABELLED/keypoints.json labels 1 point(s) the model does not have: 'wrist_centre'; its points are: wrist, thumb_cmc, "* ]]
  [ ! -e "$BATS_TEST_TMPDIR/other" ]
}

@test "evaluate.sh refuses a report folder inside the points' folder before any work" {
  run bash "$REPO/evaluate.sh" "$DIR" "$LABELLED/keypoints.json" "$LABELLED/report"
  [ "$status" -eq 2 ]
  [ "$output" = "tensor-guess: the report folder $LABELLED/report is inside $LABELLED; choose one outside it" ]
  [ ! -e "$LABELLED/report" ]
}

@test "evaluate.sh --model tflite-int8 on a points model scores the int8 file, as near the truth as the .pb" {
  cd "$BATS_TEST_TMPDIR"
  run bash "$REPO/export.sh" "$DIR" --format tflite-int8
  [ "$status" -eq 0 ]
  run bash "$REPO/evaluate.sh" "$DIR" "held out" by-pb
  [ "$status" -eq 0 ]
  run bash "$REPO/evaluate.sh" "$DIR" "held out" by-int8 --model tflite-int8
  echo "$output"
  [ "$status" -eq 0 ]
  "$REPO/.venv/bin/python" -c '
import json, sys
graph, int8 = (json.load(open(path)) for path in sys.argv[1:3])
assert int8["n"] == graph["n"] == 20
assert int8["mean_error_px"] != graph["mean_error_px"]  # the int8 file ran, not the graph
# int8 moves the points about 0.5% of the box (docs/benchmarks.md, section 19): the error barely moves.
assert abs(int8["mean_error_norm"] - graph["mean_error_norm"]) < 0.01, (int8["mean_error_norm"], graph["mean_error_norm"])
' by-pb/report.json by-int8/report.json
}
