#!/usr/bin/env bash
# Usage: bash guessDir.sh DIR SRC DEST [--trust_graph] [--batch_size N] [--model M]
#
# Copy (never move) each image of SRC to DEST/<label>--<score>.<ext>, the score
# being the top score's first five decimals. DEST is created if missing; an
# existing file is never overwritten (" (2)", " (3)"... is added instead).
# DEST/guesses.jsonl gets one line per source file, with every label's score
# or the reason the file could not be read. Run again into the same DEST, it
# skips the photos it has already sorted there with this classifier.
# --trust_graph runs a graph holding more than pure tensor operations;
# --model saved_model|tflite|tflite-int8 sorts with that format (export.sh).
# A points model copies each photo to DEST/<score>--<name>, draws its points into
# DEST/drawn/<copy>.png and writes DEST/keypoints.json (COCO keypoints, each
# point's score in keypoint_scores) to correct and train on (docs/points.md).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/lib.sh"

check_usage 3 - "$@"
dir=$(abs_path "$1")
src=$(abs_path "$2")
dest=$(abs_path "$3")
shift 3
require_dir "$dir" "DIR"
require_dir "$src" "SRC"
mount_guess "$dir" "$@" # DIR, and graph files that flags name elsewhere
mount_input "$src"
mount_output "$dest"
run_tensorguess sort "$dir" "$src" "$dest" "$@"
