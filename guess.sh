#!/usr/bin/env bash
# Usage: bash guess.sh DIR IMAGE [IMAGE...] [--json] [--model M] [--tta] [--draw FOLDER]
#
# Print every label's score for each IMAGE, best first, as
# `elsa (score = 0.99636)`, using DIR/retrained_graph.pb and
# DIR/retrained_labels.txt (ours, or a graph made by the old retrain.py);
# --model saved_model|tflite|tflite-int8 runs that format instead.
# With several images, a `==> IMAGE <==` line heads each one. A points model
# prints `box X Y W H SCORE`, then `NAME X Y SCORE` a point, in the photo's
# pixels; --draw FOLDER also writes FOLDER/<photo>.png with them drawn.
# Exits 1 if an image could not be read (the others are still scored).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/lib.sh"

check_usage 2 - "$@"
dir=$(abs_path "$1")
shift
require_dir "$dir" "DIR"
mount_guess "$dir" "$@"
run_tensorguess guess "$dir" "$@"
