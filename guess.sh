#!/usr/bin/env bash
# Usage: bash guess.sh DIR IMAGE [IMAGE...] [--json]
#
# Print every label's score for each IMAGE, best first, as
# `elsa (score = 0.99636)`, using DIR/retrained_graph.pb and
# DIR/retrained_labels.txt (ours, or a graph made by the old retrain.py).
# With several images, a `==> IMAGE <==` line heads each one.
# Exits 1 if an image could not be read (the others are still scored).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/lib.sh"

case ${1:-} in
  "") usage "$0" >&2; exit 2 ;;
  -h | --help) usage "$0"; exit 0 ;;
esac
[[ $# -ge 2 ]] || { usage "$0" >&2; exit 2; }
dir=$(abs_path "$1")
shift
require_dir "$dir" "DIR"
run_tensorguess guess "$dir" "$@"
