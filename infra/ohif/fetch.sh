#!/usr/bin/env bash
# Fetch the prebuilt OHIF viewer (npm package @ohif/app, pinned below) into the cache folder.
# Idempotent: does nothing when the pinned version is already unpacked. Prints the dist folder
# (index.html, app-config.js, bundles), which any static web server can serve.
# Cache folder: ${MDD_CACHE_DIR:-<repo>/.cache}; the viewer lands in $CACHE/ohif-<version>/package/dist.
set -euo pipefail

OHIF_PACKAGE="@ohif/app"
OHIF_VERSION="3.13.2"
# `npm view @ohif/app@3.13.2 dist.integrity`: the tarball must match it byte for byte.
OHIF_INTEGRITY="sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${MDD_CACHE_DIR:-$repo/.cache}"
folder="$cache/ohif-$OHIF_VERSION"
dist="$folder/package/dist"
marker="$folder/.complete"

if [[ ! -f "$marker" || "$(cat "$marker")" != "$OHIF_INTEGRITY" ]]; then
  command -v npm >/dev/null || { echo "fetch.sh: npm (Node.js) is required to fetch OHIF" >&2; exit 1; }
  tmp="$folder.partial.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  # npm uses whatever registry the machine is configured for; --ignore-scripts runs nothing from the package.
  tarball="$(cd "$tmp" && npm pack --silent --ignore-scripts "$OHIF_PACKAGE@$OHIF_VERSION" | tail -n 1)"
  expected="$(printf '%s' "${OHIF_INTEGRITY#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n')"
  actual="$(sha512sum "$tmp/$tarball" | cut -d' ' -f1)"
  if [[ "$actual" != "$expected" ]]; then
    echo "fetch.sh: $tarball does not match the pinned sha512 ($OHIF_INTEGRITY)" >&2
    exit 1
  fi
  tar -xzf "$tmp/$tarball" -C "$tmp" package/dist package/package.json
  rm -f "$tmp/$tarball"
  test -f "$tmp/package/dist/index.html"
  rm -rf "$folder"
  mv "$tmp" "$folder"
  trap - EXIT
  echo "$OHIF_INTEGRITY" >"$marker"
fi

echo "$dist"
