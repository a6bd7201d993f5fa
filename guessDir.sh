#!/usr/bin/env bash
# Usage: bash guessDir.sh DIR SRC DEST
#
# Copy (never move) each image of SRC to DEST/<label>--<score>.<ext>, the score
# being the top score's first five decimals. DEST is created if missing; an
# existing file is never overwritten (" (2)", " (3)"... is added instead).
# DEST/guesses.jsonl gets one line per source file, with every label's score
# or the reason the file could not be read.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/lib.sh"

check_usage 3 3 "$@"
dir=$(abs_path "$1")
src=$(abs_path "$2")
dest=$(abs_path "$3")
require_dir "$dir" "DIR"
require_dir "$src" "SRC"
mount_input "$dir"
mount_input "$src"
mount_output "$dest"
run_tensorguess sort "$dir" "$src" "$dest"
