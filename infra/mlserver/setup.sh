#!/usr/bin/env bash
# Create (once) the MLServer virtualenv used to serve the exported model over KServe v2.
# Idempotent: does nothing when the virtualenv already has the pinned packages.
# Prints the virtualenv's folder on its last line.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${MDD_CACHE_DIR:-$ROOT/.cache}"
VENV="$CACHE/mlserver-venv"
REQUIREMENTS="$HERE/requirements.txt"
STAMP="$VENV/.mdd-requirements"
PYTHON="${MLSERVER_PYTHON:-python3}"

if [[ -x "$VENV/bin/mlserver" && -f "$STAMP" ]] && cmp -s "$REQUIREMENTS" "$STAMP"; then
  echo "$VENV"
  exit 0
fi

mkdir -p "$CACHE"
"$PYTHON" -m venv "$VENV" >&2
"$VENV/bin/pip" install --quiet --upgrade pip >&2
"$VENV/bin/pip" install --quiet -r "$REQUIREMENTS" >&2
"$VENV/bin/mlserver" --help >/dev/null
cp "$REQUIREMENTS" "$STAMP"
echo "$VENV"
