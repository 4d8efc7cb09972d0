#!/usr/bin/env bash
# Build the pinned Vegeta HTTP load generator (constant request rate, latency percentiles) into the
# cache folder unless it is already there; the status API benchmark drives its load with it.
# Idempotent. Prints the path of the binary.
# Cache folder: ${MDD_CACHE_DIR:-<repo>/.cache}; the binary lands in $CACHE/bin/vegeta-<version>.
set -euo pipefail

VEGETA_MODULE="github.com/tsenart/vegeta/v12"
VEGETA_VERSION="v12.13.0"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${MDD_CACHE_DIR:-$repo/.cache}"
bin="$cache/bin/vegeta-$VEGETA_VERSION"

if [[ ! -x "$bin" ]]; then
  command -v go >/dev/null || { echo "fetch.sh: the Go toolchain (go) is required to build Vegeta" >&2; exit 1; }
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  GOBIN="$tmp" GOFLAGS="-trimpath" go install "$VEGETA_MODULE@$VEGETA_VERSION" >&2
  mkdir -p "$cache/bin"
  mv "$tmp/vegeta" "$bin"
fi

echo "$bin"
