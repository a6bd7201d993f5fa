#!/usr/bin/env bash
# Usage: bash export.sh DIR [--format tflite,tflite-int8,coreml] [--trust_graph]
#
# Export the classifier trained in DIR, without retraining, into DIR:
# retrained_graph.tflite (float32), retrained_graph_int8.tflite (int8, uint8
# input, calibrated on training photos) and retrained_graph.mlpackage (Core ML;
# running it needs macOS). Then print, and write into DIR/report, each format's
# accuracy and macro F1 on the test split and its top-1 agreement with the .pb,
# flagging a format that agrees on fewer than 98% of the test photos. Both
# .tflite files carry TFLite metadata (MediaPipe's ImageClassifier opens them).
# A points model: the same files of its whole-photo stage (points, confidence,
# box), then how far each file moves the points (docs/commands.md, export).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/lib.sh"

check_usage 1 - "$@"
dir=$(abs_path "$1")
shift
require_dir "$dir" "DIR"
mount_export "$dir"
run_tensorguess export "$dir" "$@"
