#!/usr/bin/env bash
# Run the test suite (sets up the environment first). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../tutorials/env.sh"
cd "$REPO_ROOT"
"$PY" -m pytest -q tests "$@"
