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
mvn --batch-mode --quiet -Dstyle.color=never --file "$here/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$lib.tmp" -DincludeScope=runtime
cp "$here/pom.xml" "$lib.tmp/.pom"
rm -rf "$lib"
mv "$lib.tmp" "$lib"
