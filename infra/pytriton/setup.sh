#!/usr/bin/env bash
# Create (once) the virtualenv with PyPI's nvidia-pytriton (the Triton Inference Server binary).
# Idempotent: does nothing when the virtualenv already has the pinned packages.
# Prints the virtualenv's folder on its last line.
#
# The interpreter is Debian's python3 (3.11.2), not the project's: the Python backend stub that
# pytriton 0.7.0 ships was built against an older CPython 3.11, and with the standard library of
# CPython 3.11.7 or later its model fails to load ("'_thread.RLock' object has no attribute
# '_recursion_count'", triton-inference-server/pytriton#51). pytriton also pins numpy < 2, which
# the project's own virtualenv must not be downgraded to.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${MDD_CACHE_DIR:-$ROOT/.cache}"
VENV="$CACHE/pytriton-venv"
REQUIREMENTS="$HERE/requirements.txt"
STAMP="$VENV/.mdd-requirements"
PYTHON="${PYTRITON_PYTHON:-/usr/bin/python3}"

if [[ -x "$VENV/bin/python" && -f "$STAMP" ]] && cmp -s "$REQUIREMENTS" "$STAMP"; then
  echo "$VENV"
  exit 0
fi

mkdir -p "$CACHE"
"$PYTHON" -m venv "$VENV" >&2
"$VENV/bin/pip" install --quiet --upgrade pip >&2
"$VENV/bin/pip" install --quiet -r "$REQUIREMENTS" >&2
"$VENV/bin/python" -c "import pytriton.triton, onnxruntime" >&2
cp "$REQUIREMENTS" "$STAMP"
echo "$VENV"
