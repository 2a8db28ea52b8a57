#!/usr/bin/env bash
# The project's test command (README, CI): unit and integration tests.
#
#   bash tests/run.sh [pytest args...]     e.g. bash tests/run.sh -m "not integration"
#
# Works on a clean clone: creates .venv if needed, installs the project with
# its test extras, builds (or reuses from ~/.cache/harden/kube) the kubestack
# control-plane binary the integration tests start, then runs pytest.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

# Cached by a hash of tests/kube/{go.mod,go.sum,*.go}: only the first run on a
# machine compiles (several minutes); later runs just print the path.
.venv/bin/python tests/kube/cluster.py build

# exec: the script's exit status is pytest's.
exec .venv/bin/python -m pytest "$@"
