#!/usr/bin/env bash
# Usage: bash scripts/test.sh [pytest args...]
#
# Run every test: linters (ruff, shellcheck, hadolint), the Python package's
# tests (pytest, tests/python) and the wrappers' tests (bats-core, tests/bats).
# Sets up the local runtime with the test requirements first. Needs
# ../shared (models and photo sets) beside the repository, and a Docker engine:
# tests/bats/docker.bats runs the wrappers through it (building the image if
# need be) and fails without one, unless TG_TEST_DOCKER=0 opts out.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -d $TG_ROOT/../shared/models ]] || die "tests need ../shared beside the repository ($TG_ROOT/../shared)"
ensure_local_runtime "$TG_ROOT/requirements-test.txt"
export PATH="$TG_VENV/bin:$PATH"
cd "$TG_ROOT"

echo "== ruff"
ruff check src tests bench
echo "== shellcheck"
shellcheck -x ./*.sh scripts/*.sh scripts/lib/*.sh docker/*.sh .ci/run tests/bats/*.bash tests/bats/*.bats
echo "== hadolint"
hadolint docker/Dockerfile
echo "== pytest"
PYTHONPATH="$TG_ROOT/src" python -m pytest "$@"
echo "== bats"
bats --timing tests/bats
