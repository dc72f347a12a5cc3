#!/usr/bin/env bash
# The test command: install omops with its test extras into .venv, start the
# real services the tests use (private to this run: free ports, own directory,
# stopped on exit), run ruff and every test. Exits non-zero on any failure.
#   bash scripts/test.sh [pytest args...]
# Any number of runs may share a machine; a run stops only what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
# Runs started together take turns here: pip must not install into one venv twice at once.
exec 9<scripts/test.sh
flock 9
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
flock -u 9
exec 9<&-

# A run dir of our own, even in a shell that loaded another run's env.
unset OMOPS_SERVICES_DIR
source scripts/services.sh
stop_services_on_exit  # on any exit, Ctrl-C included: stop what this run started
start_services postgres rabbitmq redis moto azurite

.venv/bin/ruff check omops tests bench
.venv/bin/python -m pytest "$@"
