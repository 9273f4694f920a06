#!/usr/bin/env bash
# diskfull.sh CLIPREEL - `clipreel export` onto a disk that fills up: whenever the disk runs
# out (while frames are written, in the mp4's trailer, its last buffered bytes, or the
# chapters file), the export fails with status 1 and a line naming the file and the reason
# ("No space left on device"), and leaves nothing at the output paths; when it fits, the reel
# is whole (every frame) and its chapters are there. The disk is a tmpfs of a set size in a
# tmpfs mounted for the test (root); without root, RLIMIT_FSIZE stands in for it (the mp4's
# failures only: "File too large").
set -euo pipefail
bin=${1:?usage: diskfull.sh CLIPREEL}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail=0

ffmpeg -nostdin -v error -f lavfi -i testsrc2=size=320x240:rate=30:duration=3 \
    -f lavfi -i sine=frequency=440:sample_rate=48000:duration=3 \
    -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac -shortest "$d/src.mp4"
cat >"$d/job.json" <<JSON
{"clips": [{"source": "$d/src.mp4", "clipName": "one", "cropKeyframes": [{"time": 0, "x": 80,
  "y": 0, "width": 134, "height": 240}]}, {"source": "$d/src.mp4", "clipName": "two",
  "cropKeyframes": [{"time": 0, "x": 0, "y": 0, "width": 134, "height": 240}]}],
 "globalAspectRatio": "9:16", "transition": {"type": "dissolve", "duration": 0.5},
 "output": {"width": 270, "height": 480, "fps": 30,
  "upscale": {"model": "realesr-general-x4v3", "mode": "off"}}}
JSON

# the reel's frames without a limit, and the bytes it takes
"$bin" export "$d/job.json" -o "$d/full.mp4" --progress none -q >/dev/null
want=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames \
    -of csv=p=0 "$d/full.mp4")
bytes=$(($(stat -c %s "$d/full.mp4") + $(stat -c %s "$d/full.chapters.vtt")))
echo "the reel: $want frames, $bytes bytes with its chapters"

# check LIMIT_KB STATUS DIR: the outcome of an export into DIR under a limit
check() {
    local kb=$1 status=$2 dir=$3 reason=$4
    if [ "$status" = 0 ]; then
        local got
        got=$(ffprobe -v error -count_frames -select_streams v:0 \
            -show_entries stream=nb_read_frames -of csv=p=0 "$dir/r.mp4" 2>/dev/null || echo 0)
        if [ "$got" != "$want" ] || ! grep -q "^WEBVTT" "$dir/r.chapters.vtt"; then
            echo "FAIL: ${kb}k: finished with $got of $want frames or no chapters"; fail=1
            return
        fi
        echo "ok: ${kb}k: fits, $got frames and the chapters"
        fits=1
    elif [ "$status" != 1 ]; then
        echo "FAIL: ${kb}k: status $status"; cat "$d/err"; fail=1
    elif ! grep -Eq "clipreel export: $dir/r\.(mp4|chapters\.vtt)[^ ]*: .*$reason" "$d/err"; then
        echo "FAIL: ${kb}k: no line naming the file and '$reason':"; cat "$d/err"; fail=1
    elif [ -n "$(ls -A "$dir")" ]; then
        echo "FAIL: ${kb}k: left behind: $(ls -A "$dir")"; fail=1
    else
        echo "ok: ${kb}k: $(grep "^clipreel export: " "$d/err" | sed "s#$dir/##"), nothing left"
        grep -q "chapters.vtt" "$d/err" && vtt_failed=1
        grep -q "finishing the mp4" "$d/err" && trailer_failed=1
        return 0
    fi
}

fits=0 vtt_failed=0 trailer_failed=0
# a few limits far short of the reel (frames still being written), then 4 KiB steps across
# its end (the trailer, the last bytes, the chapters)
top=$(((bytes + 4095) / 4096 * 4 + 8))
limits="16 $((top / 2)) $(seq $((top - 24)) 4 "$top" | tr '\n' ' ')"
if [ "$(id -u)" = 0 ] && mkdir "$d/disk" && mount -t tmpfs -o size=16k tmpfs "$d/disk"; then
    umount "$d/disk"
    trap 'umount "$d/disk" 2>/dev/null || true; rm -rf "$d"' EXIT
    for kb in $limits; do
        mount -t tmpfs -o size="$kb"k tmpfs "$d/disk"
        status=0
        "$bin" export "$d/job.json" -o "$d/disk/r.mp4" --progress none -q >/dev/null 2>"$d/err" ||
            status=$?
        check "$kb" "$status" "$d/disk" "No space left on device"
        umount "$d/disk"
    done
    if [ "$vtt_failed" != 1 ] || [ "$trailer_failed" != 1 ] || [ "$fits" != 1 ]; then
        echo "FAIL: the limits missed a case (chapters $vtt_failed, trailer $trailer_failed," \
            "fits $fits)"; fail=1
    fi
else
    echo "(not root: RLIMIT_FSIZE instead of a small disk, the mp4's failures only)"
    for kb in $limits; do
        rm -rf "$d/lim" && mkdir "$d/lim"
        status=0
        (ulimit -f "$kb"; trap '' XFSZ; exec "$bin" export "$d/job.json" -o "$d/lim/r.mp4" \
            --progress none -q) >/dev/null 2>"$d/err" || status=$?
        check "$kb" "$status" "$d/lim" "File too large"
    done
    if [ "$trailer_failed" != 1 ] || [ "$fits" != 1 ]; then
        echo "FAIL: the limits missed a case (trailer $trailer_failed, fits $fits)"; fail=1
    fi
fi
exit $fail
