#!/usr/bin/env bash
# Run the test suite (sets up the environment first). Extra arguments go to pytest; arguments that
# start with test paths run only those.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../tutorials/env.sh"
cd "$REPO_ROOT"
# test paths given (e.g. tests/test_cli.py): only those; otherwise the whole suite
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then
  "$PY" -m pytest -q "$@"
else
  "$PY" -m pytest -q tests "$@"
fi
