#!/usr/bin/env bash
# Resolve the Apache Kafka broker jars (pinned in infra/kafka/pom.xml) into the cache folder.
# Idempotent: does nothing when the jars for the current pom are already there. Prints the lib directory.
# Cache folder: ${MDD_CACHE_DIR:-<repo>/.cache}.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${MDD_CACHE_DIR:-$repo/.cache}"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
libs="$cache/kafka-$version/libs"
marker="$libs/.complete"
# The marker records the pom's checksum, so editing the pom triggers a fresh copy.
pom_sum="$(sha256sum "$here/pom.xml" | cut -d' ' -f1)"

if [[ ! -f "$marker" || "$(cat "$marker")" != "$pom_sum" ]]; then
  command -v mvn >/dev/null || { echo "fetch.sh: mvn (Apache Maven) is required" >&2; exit 1; }
  command -v java >/dev/null || { echo "fetch.sh: java (JDK 17+) is required" >&2; exit 1; }
  tmp="$libs.partial.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$tmp" -DincludeScope=runtime >&2
  ls "$tmp"/kafka_2.13-"$version".jar >/dev/null
  rm -rf "$libs"
  mkdir -p "$(dirname "$libs")"
  mv "$tmp" "$libs"
  trap - EXIT
  echo "$pom_sum" >"$marker"
fi

echo "$libs"
