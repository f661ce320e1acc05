# Source me: creates/refreshes the Python environment from requirements.txt and sets $PY.
# The venv lives in $AVSR_VENV (default: .venv at the repo root); it is rebuilt only when
# requirements.txt changes (its hash is stamped inside the venv).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AVSR_VENV="${AVSR_VENV:-$REPO_ROOT/.venv}"
REQ_HASH="$(sha256sum "$REPO_ROOT/requirements.txt" | cut -c1-16)"
if [ ! -x "$AVSR_VENV/bin/python" ] || [ "$(cat "$AVSR_VENV/.requirements-hash" 2>/dev/null)" != "$REQ_HASH" ]; then
  echo "setting up $AVSR_VENV from requirements.txt (a few minutes the first time)..."
  rm -rf "$AVSR_VENV"
  python3 -m venv "$AVSR_VENV"
  "$AVSR_VENV/bin/python" -m pip install -q --upgrade pip
  "$AVSR_VENV/bin/python" -m pip install -q -r "$REPO_ROOT/requirements.txt"
  echo "$REQ_HASH" > "$AVSR_VENV/.requirements-hash"
fi
PY="$AVSR_VENV/bin/python"
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1
