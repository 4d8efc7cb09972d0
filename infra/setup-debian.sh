#!/usr/bin/env bash
# Install the Debian packages the real-server tests need (PostgreSQL server, DCMTK tools,
# the JDK/Maven used to fetch and run Kafka, Chromium + chromedriver for the browser tests, npm
# to fetch the OHIF viewer, nginx as the reverse proxy in front of OHIF and the API, and dicom3tools,
# whose dciodvfy judges every DICOM object the project writes) when they are missing.
# MinIO is built by infra/minio/fetch.sh with a Go toolchain >= 1.24, which Debian 12's
# golang-go (1.19) is too old for; install Go from the upstream tarball when needed.
# Idempotent and non-interactive; runs `apt-get update` only when something must be installed.
# Run as root (or through sudo when available).
set -euo pipefail

packages=(postgresql dcmtk dicom3tools orthanc default-jdk-headless maven chromium chromium-driver npm nginx-light)

missing=()
for pkg in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

# A JDK or Maven installed outside apt (e.g. in /usr/local) is good enough.
filtered=()
for pkg in "${missing[@]}"; do
  case "$pkg" in
    default-jdk-headless) command -v java >/dev/null && continue ;;
    maven) command -v mvn >/dev/null && continue ;;
    npm) command -v npm >/dev/null && continue ;;  # Node.js from elsewhere brings its own npm
  esac
  filtered+=("$pkg")
done

if [[ ${#filtered[@]} -eq 0 ]]; then
  echo "setup-debian.sh: all packages present"
  exit 0
fi

sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup-debian.sh: run as root (missing: ${filtered[*]})" >&2; exit 1; }
  sudo=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
echo "setup-debian.sh: installing ${filtered[*]}"
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${filtered[@]}"
