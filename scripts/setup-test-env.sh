#!/usr/bin/env bash
# Installs what the tests need, idempotently, into the repository:
#   .venv/  Python tools from PyPI, pinned in scripts/requirements-test.txt.
# Nothing is installed by hand; a fresh machine needs only this script.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check \
  -r scripts/requirements-test.txt
