#!/usr/bin/env bash
# The project's test command (README, CI): lint, types, import layers, then unit and integration tests.
#
#   bash tests/run.sh [pytest args...]     e.g. bash tests/run.sh -m "not integration"
#
# Works on a clean clone: creates .venv if needed, installs the project with
# its test extras, runs ruff, mypy and lint-imports (any finding fails the run
# before a test starts), builds (or reuses from ~/.cache/harden/kube) the
# kubestack control-plane binary the integration tests start, then runs pytest.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

# Checked, not hoped: configured in pyproject.toml ([tool.ruff], [tool.mypy], [tool.importlinter]).
# Any finding ends the run here, before the (slow) tests, naming the tool.
check() {
    echo "== $*" >&2
    if ! "$@"; then
        echo "tests/run.sh: \`$*\` reported the findings above; no test was run" >&2
        exit 1
    fi
}
check .venv/bin/ruff check .
check .venv/bin/mypy
check .venv/bin/lint-imports --no-cache

# Cached by a hash of tests/kube/{go.mod,go.sum,*.go}: only the first run on a
# machine compiles (several minutes); later runs just print the path.
.venv/bin/python tests/kube/cluster.py build

# The real Argo CD test (tests/integration/test_real_argocd.py) needs redis,
# as Argo CD's install does; Debian's redis-server is the real one. Installed
# only when missing, so re-runs and machines that have it skip apt entirely.
if ! command -v redis-server >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi

# Argo CD's application-controller and repo-server (v3.5.7), cached by a hash
# of tests/argocd/{go.mod,go.sum,*.go} like kubestack.
.venv/bin/python tests/argocd/argocd.py build

# exec: the script's exit status is pytest's.
exec .venv/bin/python -m pytest "$@"
