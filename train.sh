#!/usr/bin/env bash
# Usage: bash train.sh DIR [flags]
#
# Retrain a classifier on the photos in DIR/data/<category>/ and write
# DIR/retrained_graph.pb, DIR/retrained_labels.txt, DIR/saved_model/,
# DIR/train_log.json and the bottleneck cache DIR/bottlenecks/.
# Flags keep retrain.py's names; `bash train.sh DIR --help` lists them all.
# TFHUB_MODULE picks the feature extractor (a TF Hub URL or a local SavedModel
# folder); TG_RUNTIME=auto|local|docker picks where it runs. --export FORMATS
# (tflite,tflite-int8,coreml) then exports as export.sh does.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/lib.sh"

check_usage 1 - "$@"
dir=$(abs_path "$1")
shift
require_dir "$dir" "DIR"
mount_train "$dir" "$@"
run_tensorguess train "$dir" "$@"
