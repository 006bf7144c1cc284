#!/usr/bin/env bash
# Set up .venv (if needed) with the test extras; run ruff and mypy, then the whole test suite.
# PostgreSQL tests use HIE_TEST_PG_URL (default: postgres@127.0.0.1:5432, trust auth);
# corpus tests read HIE_CORPUS (default: ../shared/data) and skip when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
if [ -x scripts/test-setup.d/browser.sh ]; then scripts/test-setup.d/browser.sh; fi
# Lint and type check first (configuration in pyproject.toml): a finding fails the run.
.venv/bin/python -m ruff check .
.venv/bin/python -m mypy
exec .venv/bin/python -m pytest -n "${HIE_TEST_WORKERS:-2}" -p no:cacheprovider "$@"
