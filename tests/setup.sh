#!/usr/bin/env bash
# The test environment, each part once: the virtual environment .venv from the project's own
# requirement files (again only when requirements-dev.txt changes) and Nextflow from Maven
# Central (tests/nextflow/install.sh). Used by tests/run_tests.sh and tests/system/*.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ] || ! cmp -s requirements-dev.txt .venv/.requirements; then
    "$PYTHON" -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
    cp requirements-dev.txt .venv/.requirements
fi
tests/nextflow/install.sh
