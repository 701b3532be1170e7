#!/usr/bin/env bash
# Installs the Nextflow runtime of pom.xml from Maven Central into tests/nextflow/lib (once:
# again only when pom.xml changes). Needs Java 17+ and Maven.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
lib="$here/lib"
if [ -f "$lib/.pom" ] && cmp -s "$here/pom.xml" "$lib/.pom"; then
    exit 0
fi
rm -rf "$lib.tmp"
if ! mvn --batch-mode --quiet --file "$here/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$lib.tmp" -DincludeScope=runtime > "$here/install.log" 2>&1; then
    cat "$here/install.log" >&2
    exit 1
fi
cp "$here/pom.xml" "$lib.tmp/.pom"
rm -rf "$lib"
mv "$lib.tmp" "$lib"
