#!/usr/bin/env bash
# Set up .venv (if needed) and run the node on the embedded default: a SQLite file in
# var/ of this checkout (or $HIE_DATA_DIR) with the demo region loaded on first start. Extra arguments go to `hie serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
exec .venv/bin/hie serve "$@"
