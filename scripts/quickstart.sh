#!/usr/bin/env bash
# The run command: install omops into .venv, store data and a model on the
# embedded default (SQLite + local folder + local executor), train it through
# om.runtime, then serve it over REST and ask it for a prediction.
#   bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[sklearn]"
export OMOPS_HOME="${OMOPS_HOME:-$HOME/.omops}"
PORT="${OMOPS_QUICKSTART_PORT:-8000}"

.venv/bin/python examples/quickstart.py

echo "--- serving every stored model: om runtime serve --port $PORT"
.venv/bin/om runtime serve --port "$PORT" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
.venv/bin/python examples/quickstart_client.py "http://127.0.0.1:$PORT"
