#!/usr/bin/env bash
# nf-core's lint of the pipeline (`nf-core pipelines lint --release`) and of its parameter schema
# (`nf-core pipelines schema lint`), offline. Fails on any finding, warnings included: the nf-core
# conventions this pipeline does not follow are listed in .nf-core.yml, each with its reason.
# Builds tests/lint/.venv from tests/lint/requirements.txt once; nf-core reads the configuration
# through Nextflow, the one tests/nextflow/install.sh installs.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
VENV=tests/lint/.venv

if [ ! -x "$VENV/bin/nf-core" ] || ! cmp -s tests/lint/requirements.txt "$VENV/.requirements"; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/lint/requirements.txt
    cp tests/lint/requirements.txt "$VENV/.requirements"
fi
tests/nextflow/install.sh

# offline, with a Nextflow home of its own (no user config, no plugin downloads), no update check
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export PATH="$PWD/tests/nextflow:$PATH" NXF_HOME="$scratch/nxf" NXF_OFFLINE=true NFCORE_NO_VERSION_CHECK=1 HIDE_PROGRESS=1

status=0
"$VENV/bin/nf-core" --hide-progress pipelines lint --release --dir . --plain-text --fail-warned || status=1

# schema lint exits 0 on its warnings: they are findings too
"$VENV/bin/nf-core" --hide-progress pipelines schema lint nextflow_schema.json 2>&1 | tee "$scratch/schema.log"
if [ "${PIPESTATUS[0]}" -ne 0 ] || grep -Eq '^(WARNING|ERROR|CRITICAL) ' "$scratch/schema.log"; then
    echo "nf-core pipelines schema lint: findings above" >&2
    status=1
fi
exit $status
