#!/usr/bin/env bash
# Quick start: install siyu, build the demo brand and serve it on http://127.0.0.1:8000
# Extra arguments go to `siyu demo` (e.g. --customers 100000, --port 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/siyu demo "$@"
