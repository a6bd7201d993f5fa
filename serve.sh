#!/usr/bin/env bash
# Usage: bash serve.sh DIR [--port 8080] [--host 127.0.0.1] [flags]
#
# Serve the classifier in DIR (DIR/retrained_graph.pb and DIR/retrained_labels.txt)
# over HTTP until Ctrl-C or SIGTERM: POST /predict (a photo, raw or uploaded, ->
# {"label", "score", "scores"}), TF Serving's POST /v1/models/NAME:predict,
# GET /labels, GET /healthz, and a page at / that scores photos and a live camera.
# Listens on 127.0.0.1 (this machine only) unless --host says otherwise; beyond
# it, requests need the token in TG_SERVE_TOKEN (or --no_token says none is wanted).
# `bash serve.sh DIR --help` lists every flag.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/lib.sh"

check_usage 1 - "$@"
dir=$(abs_path "$1")
shift
require_dir "$dir" "DIR"
mount_serve "$dir" "$@"
run_tensorguess serve "$dir" "$@"
