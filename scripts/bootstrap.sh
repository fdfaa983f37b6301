#!/usr/bin/env bash
# Install siyu's Python environment from the lock file (uv.lock) into .venv.
# Usage: scripts/bootstrap.sh [--extra test] ...   (extra arguments go to `uv sync`)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${SIYU_PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "siyu needs Python 3.11 (found $("$PY" --version 2>&1)); set SIYU_PYTHON to one." >&2
  exit 1
fi
# The interpreter itself, not a launcher in front of it (pyenv's shims): uv compares the path
# with the one .venv was made from, and would otherwise remove and remake .venv every run.
PY=$("$PY" -c 'import sys; print(sys.executable)')
if ! command -v uv >/dev/null 2>&1; then
  export PATH="$HOME/.local/bin:$PATH"
  if ! command -v uv >/dev/null 2>&1; then
    echo "installing uv (the lock-file installer) with pip…" >&2
    "$PY" -m pip install --user --quiet uv 2>/dev/null \
      || "$PY" -m pip install --user --quiet --break-system-packages uv
  fi
fi
# --compile-bytecode: every later process imports the .pyc files instead of compiling ~1 500
# modules (~4 s on these cores; Python writes none itself where PYTHONDONTWRITEBYTECODE is set)
uv sync --frozen --compile-bytecode --python "$PY" "$@"
