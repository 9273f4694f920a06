#!/usr/bin/env bash
# demo.sh - the main job: a real multi-clip export on the embedded default (CPU).
# Generates three short sources with ffmpeg's lavfi (different sizes, one at 60 fps,
# one without audio) into examples/media/, uses the example job
# examples/demo-job.json (keyframed crops, a trim, a 0.5x segment, dissolves) and
# exports an AI-upscaled reel to out/demo-reel.mp4 (+ out/demo-reel.chapters.vtt).
# Run scripts/setup.sh first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
media=examples/media
mkdir -p "$media" out

gen() { # name, video source, extra args...
    local out="$media/$1"
    shift
    [ -s "$out" ] || ffmpeg -v error -y "$@" -c:v libx264 -preset veryfast -pix_fmt yuv420p \
        -c:a aac -b:a 128k "$out"
}
# 1: 640x360 at 30 fps with a 440 Hz tone
gen field-wide.mp4 -f lavfi -i "testsrc2=size=640x360:rate=30:duration=5" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=5" -shortest
# 2: 360x640 portrait at 60 fps with a 880 Hz tone
gen phone-60fps.mp4 -f lavfi -i "testsrc=size=360x640:rate=60:duration=5" \
    -f lavfi -i "sine=frequency=880:sample_rate=44100:duration=5" -shortest
# 3: 480x270 at 25 fps, no audio
gen drone-silent.mp4 -f lavfi -i "mandelbrot=size=480x270:rate=25" -t 5

build/clipreel export examples/demo-job.json -o out/demo-reel.mp4 "$@"
