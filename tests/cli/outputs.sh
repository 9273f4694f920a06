#!/usr/bin/env bash
# outputs.sh CLIPREEL - `clipreel export`'s outputs against its inputs, as a user types them:
# -o naming a clip's source (also with --parallel, refused before any part is made) or the
# job's own file is refused at once and leaves that file as it was; a reel named .MP4 gets
# the chapters file the summary names.
set -euo pipefail
bin=$(realpath "${1:?usage: outputs.sh CLIPREEL}")
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail=0

ffmpeg -nostdin -v error -f lavfi -i testsrc2=size=160x120:rate=30:duration=1 \
    -c:v libx264 -preset ultrafast -pix_fmt yuv420p "$d/src.mp4"
cp "$d/src.mp4" "$d/src.was"
cat >"$d/job.json" <<JSON
{"clips": [{"source": "src.mp4"}, {"source": "src.mp4"}],
 "output": {"width": 160, "height": 120, "upscale": {"mode": "off"}}}
JSON
cp "$d/job.json" "$d/job.was"

# refused CASE WANT ARGS...: the export fails, stderr has WANT, nothing of it is left
refused() {
    local name=$1 want=$2 status=0
    shift 2
    (cd "$d" && "$bin" export job.json --progress none "$@") >/dev/null 2>"$d/err" || status=$?
    if [ "$status" = 0 ] || ! grep -q "$want" "$d/err"; then
        echo "FAIL: $name: status $status, want an error with '$want':"; cat "$d/err"; fail=1
    elif compgen -G "$d/*.part" >/dev/null || compgen -G "$d/*.parts.*" >/dev/null; then
        echo "FAIL: $name: left behind: $(ls "$d")"; fail=1
    else
        echo "ok: $name: $(cat "$d/err")"
    fi
}
refused "source" "src.mp4: is clips\[clipIndex=0\]'s source" -o src.mp4
refused "source, another spelling" "/./src.mp4: is clips\[clipIndex=0\]'s source" \
    -o "$d/./src.mp4"
refused "source, --parallel" "src.mp4: is clips\[clipIndex=0\]'s source" -o src.mp4 --parallel
refused "job file" "job.json: is the job file" -o job.json
refused "chapters over the job file" "job.json: is the job file" -o r.mp4 --chapters job.json
if ! cmp -s "$d/src.mp4" "$d/src.was" || ! cmp -s "$d/job.json" "$d/job.was"; then
    echo "FAIL: an input was changed"; fail=1
fi

# a reel named in capitals: the summary names the chapters file written
(cd "$d" && "$bin" export job.json -o R.MP4 --progress none) >"$d/out"
named=$(sed -n 's/^chapters: *\([^ ]*\) .*/\1/p' "$d/out")
if [ "$named" != R.chapters.vtt ] || [ ! -f "$d/R.chapters.vtt" ]; then
    echo "FAIL: R.MP4: the summary names '$named'; written: $(cd "$d" && ls R.*)"; fail=1
else
    echo "ok: R.MP4: chapters in $named"
fi
exit $fail
