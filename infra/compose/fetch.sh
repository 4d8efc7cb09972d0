#!/usr/bin/env bash
# Build the pinned Docker Compose v2 CLI plugin into the cache unless it is already there, so that
# `docker compose config` can validate compose.yaml on machines whose docker client lacks it.
# Prints the DOCKER_CONFIG folder to use (its cli-plugins/ holds docker-compose).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${MDD_CACHE_DIR:-$repo/.cache}"
config="$cache/docker"
plugin="$config/cli-plugins/docker-compose"

if [[ ! -x "$plugin" ]]; then
  command -v go >/dev/null || { echo "fetch.sh: the Go toolchain (go) is required to build Docker Compose" >&2; exit 1; }
  mkdir -p "$config/cli-plugins"
  (cd "$here" && GOFLAGS="-mod=mod -trimpath" go build -o "$plugin.tmp" github.com/docker/compose/v2/cmd >&2)
  mv "$plugin.tmp" "$plugin"
fi

echo "$config"
