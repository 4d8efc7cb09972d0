#!/usr/bin/env bash
# Resolve the Apache Kafka broker jars (pinned in infra/kafka/pom.xml) into the cache folder.
# Idempotent: does nothing when the jars for the current pom are already there. Prints the lib directory.
# Cache folder: ${MDD_CACHE_DIR:-<repo>/.cache}.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/../maven-fetch.sh" "$here" kafka.version kafka "kafka_2.13-{version}.jar"
