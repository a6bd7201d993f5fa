#!/usr/bin/env bash
# Usage: bash train.sh DIR [flags]
#
# Retrain a classifier on the photos in DIR/data/<category>/ and write
# DIR/retrained_graph.pb, DIR/retrained_labels.txt, DIR/saved_model/,
# DIR/train_log.json and the bottleneck cache DIR/bottlenecks/.
# Flags keep retrain.py's names; `bash train.sh DIR --help` lists them all.
# TFHUB_MODULE picks the feature extractor (a TF Hub URL or a local SavedModel
# folder); TG_RUNTIME=auto|local|docker picks where it runs.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/lib.sh"

case ${1:-} in
  "") usage "$0" >&2; exit 2 ;;
  -h | --help) usage "$0"; exit 0 ;;
esac
dir=$(abs_path "$1")
shift
require_dir "$dir" "DIR"
run_tensorguess train "$dir" "$@"
