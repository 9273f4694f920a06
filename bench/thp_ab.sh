#!/usr/bin/env bash
# thp_ab.sh - clipreel export with transparent huge pages off (CLIPREEL_THP=off) and on (the
# system's policy, clipreel's default since 2026-12-04), each run once after an idle pause
# ("cold": the VM's host has taken back freed memory) and once right after ("warm").
# docs/PERFORMANCE.md, Huge pages.
#   bash bench/thp_ab.sh JOB.json [ROUNDS=6] [PAUSE_S=10]
# Prints one line per run: state policy wall_s user_s sys_s peak_rss_kb, then the means.
set -euo pipefail
job=${1:?usage: thp_ab.sh JOB.json [ROUNDS] [PAUSE_S]}
rounds=${2:-6}
pause=${3:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CLIPREEL:-$root/build/clipreel}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export OMP_WAIT_POLICY=passive

one() { # state policy
    printf '%s %s ' "$1" "$2"
    CLIPREEL_THP=$2 /usr/bin/time -f '%e %U %S %M' "$bin" export "$job" -o "$out/x.mp4" \
        --progress none 2>&1 >/dev/null | tail -1
}

for _ in $(seq "$rounds"); do
    for policy in off on; do
        sleep "$pause"
        one cold "$policy"
        one warm "$policy"
    done
done | tee "$out/runs"
awk '{k = $1 " " $2; w[k] += $3; s[k] += $5; n[k]++}
     END {for (k in w) printf "%s: wall %.2f s, sys %.2f s (mean of %d)\n", k, w[k] / n[k],
          s[k] / n[k], n[k]}' "$out/runs" | sort
