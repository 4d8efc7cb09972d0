#!/usr/bin/env bash
# Build the pinned MinIO server into the cache folder unless it is already there.
# Idempotent. Prints the path of the binary.
# Cache folder: ${MDD_CACHE_DIR:-<repo>/.cache}; the binary lands in $CACHE/bin/minio.
set -euo pipefail

MINIO_MODULE="github.com/minio/minio"
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"  # pinned: RELEASE 2026-02-12 source snapshot

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${MDD_CACHE_DIR:-$repo/.cache}"
bin="$cache/bin/minio"

if [[ ! -x "$bin" ]]; then
  command -v go >/dev/null || { echo "fetch.sh: the Go toolchain (go) is required to build MinIO" >&2; exit 1; }
  mkdir -p "$cache/bin"
  # -trimpath keeps the build reproducible and lets the Go build cache be reused.
  GOBIN="$cache/bin" GOFLAGS="-trimpath" go install "$MINIO_MODULE@$MINIO_VERSION" >&2
fi

echo "$bin"
