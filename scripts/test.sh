#!/usr/bin/env bash
# The test command: install omops with its test extras and the model frameworks
# (CPU builds) into .venv, start the real services the tests use (private to
# this run: free ports, own directory, stopped on exit), run ruff and every test.
# Exits non-zero on any failure.
#   bash scripts/test.sh                 # everything: two pytest processes at once
#   bash scripts/test.sh [pytest args]   # one pytest process with these arguments
# Any number of runs may share a machine; a run stops only what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
# A run dir of our own, even in a shell that loaded another run's env.
unset OMOPS_SERVICES_DIR
source scripts/services.sh

# Runs started together take turns here: apt and pip must not install into one place twice at once.
exec 9<scripts/test.sh
flock 9
# R (Debian) first: rpy2 builds against it. Chromium for the dashboard's browser tests.
ensure_debian_packages "${OMOPS_R_PACKAGES[@]}" "${OMOPS_BROWSER_PACKAGES[@]}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# The frameworks' CPU builds before the extras that name them: torch 2.13.0 is this
# machine's local CPU wheel (a looser spec downloads a CUDA build of several GB),
# tensorflow-cpu is Keras' backend, xgboost-cpu provides `xgboost` without CUDA
# libraries, and rpy2 3.6 needs R >= 4.5 (Debian 12 has 4.2).
# scripts/ci-constraints.txt pins every other package to a set known to work:
# without it pip backtracks through s3fs/aiobotocore and dask releases for half
# an hour and gives up (resolution-too-deep). `bash scripts/lock.sh` rewrites it.
.venv/bin/python -m pip install -q -c scripts/ci-constraints.txt 'torch==2.13.0' 'tensorflow-cpu>=2.16' 'xgboost-cpu>=2.0' \
  'rpy2>=3.5.13,<3.6'
.venv/bin/python -m pip install -q -c scripts/ci-constraints.txt -e ".[test,keras,torch,lightgbm,onnx,mlflow,r]"
flock -u 9
exec 9<&-

stop_services_on_exit  # on any exit, Ctrl-C included: stop what this run started
start_services postgres rabbitmq redis moto azurite mariadb

.venv/bin/ruff check omops tests bench
if [ "$#" -gt 0 ]; then
  .venv/bin/python -m pytest "$@"
  exit
fi
# The framework tests (tests/frameworks, marker `frameworks`) spend most of their
# time importing TensorFlow, PyTorch, MLflow and R in the test process, workers and
# servers: they run in a second pytest process beside the rest. Both must pass.
# Niced, so that the timing checks of the rest (event loop, latency) keep their CPU.
frameworks_log="$OMOPS_SERVICES_DIR/pytest-frameworks.log"
nice -n 10 .venv/bin/python -m pytest -m frameworks tests/frameworks >"$frameworks_log" 2>&1 &
frameworks_pid=$!
status=0
# The rest runs in $OMOPS_TEST_WORKERS processes (pytest-xdist, a test file per
# process at a time): most of its time is spent waiting on servers, workers and
# subprocesses, not computing, so three processes finish it in about half the time.
.venv/bin/python -m pytest -m "not frameworks" --ignore=tests/frameworks \
  -n "${OMOPS_TEST_WORKERS:-3}" --dist loadfile --durations=25 || status=$?
frameworks_status=0
wait "$frameworks_pid" || frameworks_status=$?
echo "---------------- framework tests (second pytest process, exit $frameworks_status)"
cat "$frameworks_log"
[ "$status" = 0 ] && [ "$frameworks_status" = 0 ]
