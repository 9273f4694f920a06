#!/usr/bin/env bash
# interrupt.sh CLIPREEL MODELS - `clipreel export` stopped by a signal mid-export
# (src/cli/cli_export.c, cancel_on_signals): Ctrl-C (SIGINT) and a service manager's
# SIGTERM cancel the export, nothing is left at the output paths (no reel, no chapters, no
# .part file, no parts folder), a line on stderr says why, and the process dies of that same
# signal (status 128 + N). A SIGINT the parent set to be ignored stays ignored: that export
# finishes and its reel is whole.
set -euo pipefail
set -m # job control: background jobs keep SIGINT (without it bash ignores it for them)
bin=${1:?usage: interrupt.sh CLIPREEL MODELS}
models=${2:?usage: interrupt.sh CLIPREEL MODELS}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail=0
mkdir "$d/log"

# 10 s of 640x360 into 1080x1920 without AI: a few seconds of work, more under ASan
ffmpeg -nostdin -v error -f lavfi -i testsrc2=size=640x360:rate=30:duration=10 \
    -f lavfi -i sine=frequency=440:sample_rate=48000:duration=10 \
    -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac -shortest "$d/src.mp4"
cat >"$d/job.json" <<JSON
{"clips": [{"source": "$d/src.mp4", "cropKeyframes": [{"time": 0, "x": 218, "y": 0,
  "width": 202, "height": 360}]}, {"source": "$d/src.mp4", "cropKeyframes": [{"time": 0,
  "x": 0, "y": 0, "width": 202, "height": 360}]}], "globalAspectRatio": "9:16",
 "output": {"width": 1080, "height": 1920, "fps": 30,
  "upscale": {"model": "realesr-general-x4v3", "mode": "off"}}}
JSON
sed 's/"width": 1080, "height": 1920/"width": 180, "height": 320/' "$d/job.json" >"$d/small.json"

# left NAME: what is left in $d of the outputs named NAME*
left() { (cd "$d" && ls -d "$1"* 2>/dev/null || true); }

# stop NAME SIGNAL WANT_STATUS MARK [export options]: start an export to $d/NAME.mp4, wait
# until a file or folder matching MARK appears (the export is writing), send SIGNAL
stop() {
    local name=$1 sig=$2 want=$3 mark=$4 pid status
    shift 4
    CLIPREEL_MODELS="$models" "$bin" export "$d/job.json" -o "$d/$name.mp4" --progress none \
        "$@" >"$d/log/$name.out" 2>"$d/log/$name.err" &
    pid=$!
    for _ in $(seq 600); do
        compgen -G "$d/$mark" >/dev/null && break
        sleep 0.1
    done
    if ! compgen -G "$d/$mark" >/dev/null; then
        echo "FAIL: $name: $mark never appeared"; fail=1
    fi
    sleep 0.3
    kill -"$sig" "$pid"
    status=0
    wait "$pid" || status=$?
    if [ "$status" != "$want" ]; then
        echo "FAIL: $name: status $status after SIG$sig, want $want"; cat "$d/log/$name.err"; fail=1
    elif ! grep -q "interrupted by SIG$sig: cancelled, nothing written" "$d/log/$name.err"; then
        echo "FAIL: $name: no 'interrupted by SIG$sig' line:"; cat "$d/log/$name.err"; fail=1
    elif [ -n "$(left "$name.")" ]; then
        echo "FAIL: $name: left behind: $(left "$name.")"; fail=1
    else
        echo "ok: $name: SIG$sig -> status $status, nothing left"
    fi
}

stop int INT 130 'int.mp4.*.part'
stop term TERM 143 'term.mp4.*.part'
stop par TERM 143 'par.mp4.parts.*/part1.nut' --parallel

# SIGINT ignored by the parent (a background job without job control, nohup): it stays so
set +m
(trap '' INT; CLIPREEL_MODELS="$models" exec "$bin" export "$d/small.json" -o "$d/ign.mp4" \
    --progress none >"$d/log/ign.out" 2>"$d/log/ign.err") &
pid=$!
for _ in $(seq 600); do
    compgen -G "$d/ign.mp4.*.part" >/dev/null && break
    sleep 0.1
done
sent=yes
kill -INT "$pid" 2>/dev/null || sent=no # it must land while the export runs
status=0
wait "$pid" || status=$?
frames=$(ffprobe -v error -count_frames -select_streams v:0 \
    -show_entries stream=nb_read_frames -of csv=p=0 "$d/ign.mp4" 2>/dev/null || echo none)
if [ "$sent" != yes ] || [ "$status" != 0 ] || [ "$frames" != 600 ]; then
    echo "FAIL: ignored SIGINT: sent $sent, status $status, $frames frames (want yes, 0, 600)"
    cat "$d/log/ign.err"; fail=1
else
    echo "ok: ignored SIGINT: the export finished, 600 frames"
fi
exit $fail
