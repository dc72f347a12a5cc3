#!/usr/bin/env bash
# The test command: install omops with its test extras into .venv, start the
# real services the tests use, run every test. Exits non-zero on any failure.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"

source scripts/services.sh
trap 'stop_postgres; stop_rabbitmq; stop_redis' EXIT
start_postgres
start_rabbitmq
start_redis

.venv/bin/ruff check omops tests bench
.venv/bin/python -m pytest "$@"
