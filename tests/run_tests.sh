#!/usr/bin/env bash
# The project's test command: builds the virtual environment from the project's own requirement
# files and installs Nextflow from Maven Central (tests/nextflow/install.sh), each once, then
# runs the whole suite on the CPU, the pipeline under the real Nextflow included.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ] || ! cmp -s requirements-dev.txt .venv/.requirements; then
    "$PYTHON" -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
    cp requirements-dev.txt .venv/.requirements
fi
tests/nextflow/install.sh

exec .venv/bin/python -m pytest "$@"
