#!/usr/bin/env bash
# restart.sh CLIPREEL MODELS - clipreel starts itself again with OMP_WAIT_POLICY=passive
# (src/cli/main.c, reel_cli_omp_passive) when, and only when, it will run the upscaler on
# OpenMP teams and the variable is unset: `upscale` and an AI export whose lanes run several
# threads each restart once; an export without AI, an AI export whose lanes run one thread
# each, --version and an AI export under an explicit OMP_WAIT_POLICY do not. Counted with strace
# (execve of /proc/self/exe); each command must also succeed. LeakSanitizer cannot run
# under ptrace, so an ASan build's leak check is off for the traced commands only (every
# other test keeps it).
set -euo pipefail
bin=${1:?usage: restart.sh CLIPREEL MODELS}
models=${2:?usage: restart.sh CLIPREEL MODELS}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail=0

ffmpeg -nostdin -v error -f lavfi -i testsrc2=size=160x90:rate=30:duration=0.4 \
    -c:v libx264 -pix_fmt yuv420p "$d/src.mp4"
ffmpeg -nostdin -v error -f lavfi -i testsrc2=size=24x16:rate=1:duration=1 -frames:v 1 \
    "$d/in.png"
for mode in off always; do
    cat >"$d/$mode.json" <<JSON
{"clips": [{"source": "$d/src.mp4", "cropKeyframes": [{"time": 0, "x": 64, "y": 0,
  "width": 32, "height": 56}]}], "globalAspectRatio": "9:16",
 "output": {"width": 64, "height": 112, "fps": 30,
  "upscale": {"model": "realesr-general-x4v3", "mode": "$mode"}}}
JSON
done

# restarts EXPECTED [VAR=VALUE ...] -- COMMAND...
restarts() {
    local want=$1 envs=()
    shift
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    envs+=("ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
    if ! env -u OMP_WAIT_POLICY "${envs[@]}" strace -f -qq -e trace=execve -o "$d/trace" \
        "$@" >"$d/out" 2>&1; then
        echo "FAIL: $* exited non-zero:"; cat "$d/out"; fail=1; return
    fi
    local got
    got=$(grep -c 'execve("/proc/self/exe"' "$d/trace" || true)
    if [ "$got" != "$want" ]; then
        echo "FAIL: $* ${envs[*]}: $got restarts, want $want"; fail=1
    else
        echo "ok: $* ${envs[*]}: $got restarts"
    fi
}

restarts 0 -- "$bin" --version
restarts 0 CLIPREEL_MODELS="$models" -- "$bin" export "$d/off.json" -o "$d/off.mp4" \
    --progress none
# an AI export whose model lanes run more than one thread each restarts; lanes of one
# thread each start no OpenMP team, so they do not (the default on a 2-core machine)
restarts 1 CLIPREEL_MODELS="$models" -- "$bin" export "$d/always.json" -o "$d/ai.mp4" \
    --progress none --threads 2 --lanes 1
restarts 0 CLIPREEL_MODELS="$models" -- "$bin" export "$d/always.json" -o "$d/ai1.mp4" \
    --progress none --threads 2 --lanes 2
restarts 0 CLIPREEL_MODELS="$models" OMP_WAIT_POLICY=active -- "$bin" export \
    "$d/always.json" -o "$d/ai2.mp4" --progress none
restarts 1 -- "$bin" upscale "$d/in.png" -o "$d/out.png" --models "$models"
exit $fail
