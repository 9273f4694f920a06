#!/bin/bash
# side_by_side.sh - two upscaler runs at the same moment, one thread each on its
# own core, swapping cores every round, so that both see the same neighbours on
# this shared VM (two-thread runs taken one after the other differ by 5-20 %;
# these separate 1-2 %). Prints each round's two times (the fastest of RUNS frames)
# and the geometric mean of their ratio.
#
#   bench/side_by_side.sh builds A B [PRECISION]   B's time / A's (< 1: B faster)
#   bench/side_by_side.sh precisions BIN           fp32's time / bf16's, one build
#
# A, B, BIN: upscale_bench binaries (e.g. build/bench/upscale_bench and the
# same target built in a `git worktree` of another commit). Environment:
# ROUNDS (6), RUNS (3), MODEL (x4fast), SIZE (270x480), MODELS (models/).
# Needs two CPUs (0 and 1) and `taskset` (util-linux).
set -euo pipefail

rounds=${ROUNDS:-6} runs=${RUNS:-3} model=${MODEL:-x4fast} size=${SIZE:-270x480}
models=${MODELS:-$(cd "$(dirname "$0")/.." && pwd)/models}

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# one timed run: core, binary, precision -> its fastest frame in seconds
one() {
    taskset -c "$1" "$2" --models "$models" --model "$model" --size "$size" --runs "$runs" \
        --tile -1 --threads 1 --precision "$3" |
        python3 -c 'import json, sys; print("%.4f" % min(json.load(sys.stdin)["run_s"]))'
}

[ $# -ge 2 ] || usage
case "$1" in
builds)
    [ $# -ge 3 ] || usage
    a=$2 b=$3 pa=${4:-bf16} pb=${4:-bf16} label="B/A ($pa)"
    ;;
precisions)
    a=$2 b=$2 pa=fp32 pb=bf16 label="fp32/bf16"
    ;;
*) usage ;;
esac
[ -f "$models/realesrgan-$model.param" ] || { echo "side_by_side.sh: no $model in $models (MODELS)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in $(seq "$rounds"); do
    if [ $((i % 2)) = 1 ]; then ca=0 cb=1; else ca=1 cb=0; fi
    one $ca "$a" "$pa" >"$tmp/a" &
    one $cb "$b" "$pb" >"$tmp/b"
    wait
    echo "$(cat "$tmp/a") $(cat "$tmp/b")"
done | awk -v label="$label" -v inv="$([ "$1" = precisions ] && echo 1 || echo 0)" '
    { print; r += inv ? log($1 / $2) : log($2 / $1); n++ }
    END { if (!n) exit 1; printf "%s geometric mean %.4f over %d rounds\n", label, exp(r / n), n }'
