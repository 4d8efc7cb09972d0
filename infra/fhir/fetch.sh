#!/usr/bin/env bash
# Resolve HAPI FHIR's validator for FHIR R4 and its offline R4 profiles (pinned in infra/fhir/pom.xml)
# into the cache folder. Idempotent: does nothing when the jars for the current pom are already there.
# Prints the lib directory. Cache folder: ${MDD_CACHE_DIR:-<repo>/.cache}.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/../maven-fetch.sh" "$here" hapi.version hapi-fhir "hapi-fhir-validation-{version}.jar"
