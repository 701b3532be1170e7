#!/usr/bin/env bash
# The project's test command: builds the virtual environment from the project's own requirement
# files and installs Nextflow from Maven Central (tests/setup.sh), each once, then runs the whole
# suite on the CPU, the pipeline under the real Nextflow included.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh
exec .venv/bin/python -m pytest "$@"
