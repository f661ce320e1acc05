# Source me: creates/refreshes the Python environment and sets $PY.
# It installs requirements.txt (core), preparation/requirements.txt (data preparation) and,
# with --no-deps, preparation/requirements-nodeps.txt (mediapipe, opencv-python-headless,
# scikit-video: their declared dependencies would pull numpy < 2 and unused packages).
# The venv lives in $AVSR_VENV (default: .venv at the repo root, or $AVSR_VENV_CACHE/<hash>
# when AVSR_VENV_CACHE is set, as CI does); it is rebuilt only when a requirement file changes
# (the hash of all of them is stamped inside the venv).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQ_FILES=("$REPO_ROOT/requirements.txt" "$REPO_ROOT/preparation/requirements.txt")
REQ_NODEPS_FILES=("$REPO_ROOT/preparation/requirements-nodeps.txt")
REQ_HASH="$(cat "${REQ_FILES[@]}" "${REQ_NODEPS_FILES[@]}" | sha256sum | cut -c1-16)"
if [ -z "${AVSR_VENV:-}" ] && [ -n "${AVSR_VENV_CACHE:-}" ]; then
  AVSR_VENV="$AVSR_VENV_CACHE/$REQ_HASH"
fi
AVSR_VENV="${AVSR_VENV:-$REPO_ROOT/.venv}"
if [ ! -x "$AVSR_VENV/bin/python" ] || [ "$(cat "$AVSR_VENV/.requirements-hash" 2>/dev/null)" != "$REQ_HASH" ]; then
  echo "setting up $AVSR_VENV from the requirement files (a few minutes the first time)..."
  rm -rf "$AVSR_VENV"
  python3 -m venv "$AVSR_VENV"
  "$AVSR_VENV/bin/python" -m pip install -q --upgrade pip
  with_deps=(); for f in "${REQ_FILES[@]}"; do with_deps+=(-r "$f"); done
  without_deps=(); for f in "${REQ_NODEPS_FILES[@]}"; do without_deps+=(-r "$f"); done
  "$AVSR_VENV/bin/python" -m pip install -q "${with_deps[@]}"
  "$AVSR_VENV/bin/python" -m pip install -q --no-deps "${without_deps[@]}"
  echo "$REQ_HASH" > "$AVSR_VENV/.requirements-hash"
fi
PY="$AVSR_VENV/bin/python"
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1
