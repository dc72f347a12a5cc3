#!/usr/bin/env bash
# The run command: install omops into .venv and run the quickstart on the
# embedded default (SQLite + local folder + local executor).
#   bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[sklearn]"
export OMOPS_HOME="${OMOPS_HOME:-$HOME/.omops}"
.venv/bin/python examples/quickstart.py
