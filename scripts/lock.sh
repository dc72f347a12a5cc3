#!/usr/bin/env bash
# Rewrite scripts/ci-constraints.txt from the packages in .venv (after `bash scripts/test.sh`
# installed them and the tests passed): the exact set the test command then installs.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  sed -n '1,/^# dependency change/p' scripts/ci-constraints.txt
  # torch is named with its exact local CPU build in scripts/test.sh; packages
  # installed from a file have no version on an index.
  .venv/bin/python -m pip freeze --exclude-editable | grep -v -e '^torch==' -e ' @ '
} > scripts/ci-constraints.txt.new
mv scripts/ci-constraints.txt.new scripts/ci-constraints.txt
