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
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/lib.sh"

check_usage 2 - "$@"
dir=$(abs_path "$1")
labelled=$(abs_path "$2")
shift 2
# What the set is (a folder, or a CSV and its folder) and where the report goes are decided by
# the CLI (commands/evaluate.py, places); the Docker runtime must mount both before it runs, and
# creates OUT_DIR, so they are found here the same way, and an OUT_DIR it would refuse is refused first.
out_arg="" # OUT_DIR, when the third argument is not a flag
if (($#)) && [[ $1 != --* ]]; then
  out_arg=$1
  shift
fi
require_dir "$dir" "DIR"
if [[ -f $labelled ]]; then
  photos=$(dirname "$labelled") # a labels CSV: its paths are relative to its folder
  name=$(basename "$labelled" .csv)
else
  require_dir "$labelled" "LABELLED_DIR"
  photos=$labelled name=$(basename "$labelled")
fi
out=$(abs_path "${out_arg:-$dir/report-$name}")
real_out=$(realpath -m -- "$out")
real_labelled=$(realpath -m -- "$photos")
if [[ $real_out == "$real_labelled" || $real_out == "$real_labelled"/* ]]; then
  die "the report folder $real_out is inside $real_labelled; choose one outside it" 2
fi
mount_guess "$dir" "$@" # DIR, and graph files that flags name elsewhere
mount_input "$photos"
mount_output "$out" "report folder"
run_tensorguess evaluate "$dir" "$labelled" "$out" "$@"
