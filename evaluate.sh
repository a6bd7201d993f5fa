#!/usr/bin/env bash
# Usage: bash evaluate.sh DIR LABELLED_DIR [OUT_DIR] [--trust_graph] [--batch_size N] [--model M] [--tta]
#
# Score the photos in LABELLED_DIR/<label>/ with the classifier in DIR (ours, or
# a graph made by the old retrain.py) and write an evaluation report into
# OUT_DIR (default: DIR/report-<name of LABELLED_DIR>): report.json,
# report.html, confusion_matrix.png and reliability.png. Folder names map to
# labels by retrain.py's rule (darth_vader -> darth vader). OUT_DIR is created
# if missing; tensor-guess replaces its own report files there and never
# touches any other file. LABELLED_DIR is only read. A labels CSV (columns
# path and label, optionally split; paths relative to it) may stand for it:
# its test rows are scored, or all its rows when it has no split column.
# --model saved_model|tflite|tflite-int8 scores with that format (export.sh).
#
# For a points model (train.sh with keypoints), LABELLED_DIR is a folder holding
# keypoints.json, or the annotation file itself (COCO JSON, DeepLabCut or plain
# CSV; photo paths relative to its folder); every labelled photo is scored and
# OUT_DIR gets report.json (mean_error_px, mean_error_norm, pck, per_point, auc,
# locate_iou), report.html (the worst photos drawn) and pck_curve.png.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/lib.sh"

check_usage 2 - "$@"
dir=$(abs_path "$1")
labelled=$(abs_path "$2")
shift 2
# Where the set's photos are and where the report goes, decided as the CLI decides
# (evaluate_places): the Docker runtime mounts them before the CLI runs.
out_arg="" # OUT_DIR, when the third argument is not a flag
if (($#)) && [[ $1 != --* ]]; then
  out_arg=$1
  shift
fi
require_dir "$dir" "DIR"
evaluate_places "$dir" "$labelled" "$out_arg"
mount_guess "$dir" "$@" # DIR, and graph files that flags name elsewhere
mount_input "$TG_PHOTOS"
mount_output "$TG_OUT" "report folder"
run_tensorguess evaluate "$dir" "$TG_LABELLED" "$TG_OUT" "$@"
