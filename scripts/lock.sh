#!/usr/bin/env bash
# Rewrite scripts/ci-constraints.txt from the packages in .venv (after `bash scripts/test.sh`
# installed them and the tests passed): the exact set the test command then installs.
# A pin whose release needs a newer Python than the oldest 3.11 supported (Debian 12's
# 3.11.2) gets a python_full_version marker; its pin for older interpreters is kept in
# the file's header, and this script says when one is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
header="$(sed -n '1,/^# Regenerate after a dependency change/p' scripts/ci-constraints.txt)"
{
  printf '%s\n' "$header"
  # torch is named with its exact local CPU build in scripts/test.sh; a package
  # installed from a file (name @ file://...) is pinned by its version.
  .venv/bin/python -m pip freeze --exclude-editable | grep -v -e '^torch==' -e '^torch @ ' |
    HEADER="$header" .venv/bin/python -c '
import os, sys
from importlib.metadata import PackageNotFoundError, metadata
from packaging.specifiers import SpecifierSet

OLDEST = "3.11.2"
header = os.environ["HEADER"]
for line in sys.stdin:
    pin = line.strip()
    name = pin.split(" @ ")[0].split("==")[0]
    try:
        found = metadata(name)
    except PackageNotFoundError:
        print(pin)
        continue
    if " @ " in pin:
        version = found["Version"]
        pin = f"{name}=={version}"
    needs = found.get("Requires-Python") or ""
    spec = SpecifierSet(needs)
    if needs and not spec.contains(OLDEST):
        first = next(f"3.11.{n}" for n in range(100) if spec.contains(f"3.11.{n}"))
        pin += f"; python_full_version >= \"{first}\""
        if f"{name}==" not in header:
            print(f"lock.sh: {name} needs Python >= {first}: add its older pin to the header",
                  file=sys.stderr)
    print(pin)
'
} > scripts/ci-constraints.txt.new
mv scripts/ci-constraints.txt.new scripts/ci-constraints.txt
