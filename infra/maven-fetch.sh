#!/usr/bin/env bash
# Resolve the runtime jars of a pom (infra/<name>/pom.xml) into the cache folder with Maven.
#   infra/maven-fetch.sh <pom folder> <version property> <cache folder prefix> <jar that must be there>
# The jar name may use {version}. Idempotent: does nothing when the jars for the current pom are already
# there (a marker records the pom's checksum, so editing the pom triggers a fresh copy). Prints the lib
# directory. Cache folder: ${MDD_CACHE_DIR:-<repo>/.cache}.
set -euo pipefail

here="$(cd "$1" && pwd)"
property="$2"
prefix="$3"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${MDD_CACHE_DIR:-$repo/.cache}"
version="$(sed -n "s:.*<$property>\(.*\)</$property>.*:\1:p" "$here/pom.xml")"
expected="${4//\{version\}/$version}"
libs="$cache/$prefix-$version/libs"
marker="$libs/.complete"
pom_sum="$(sha256sum "$here/pom.xml" | cut -d' ' -f1)"

if [[ ! -f "$marker" || "$(cat "$marker")" != "$pom_sum" ]]; then
  command -v mvn >/dev/null || { echo "maven-fetch.sh: mvn (Apache Maven) is required" >&2; exit 1; }
  command -v java >/dev/null || { echo "maven-fetch.sh: java (JDK 17+) is required" >&2; exit 1; }
  tmp="$libs.partial.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$tmp" -DincludeScope=runtime >&2
  ls "$tmp/$expected" >/dev/null
  rm -rf "$libs"
  mkdir -p "$(dirname "$libs")"
  mv "$tmp" "$libs"
  trap - EXIT
  echo "$pom_sum" >"$marker"
fi

echo "$libs"
