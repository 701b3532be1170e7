#!/usr/bin/env bash
# The project's test command: builds the two virtual environments from the project's own
# requirement files (once), then runs the whole suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ] || ! cmp -s requirements-dev.txt .venv/.requirements; then
    "$PYTHON" -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
    cp requirements-dev.txt .venv/.requirements
fi
if [ ! -x .venv-nfcheck/bin/python ] || ! cmp -s requirements-nfcheck.txt .venv-nfcheck/.requirements; then
    "$PYTHON" -m venv .venv-nfcheck
    .venv-nfcheck/bin/pip install --quiet --disable-pip-version-check -r requirements-nfcheck.txt
    cp requirements-nfcheck.txt .venv-nfcheck/.requirements
fi

exec .venv/bin/python -m pytest "$@"
