#!/usr/bin/env python3
"""bench/run.py - clipreel against its baselines, side by side in one run.

Every figure is a ratio of two measurements taken in this run on this machine,
repeated; the table shows min / median / max over the repeats and the JSON file
holds every raw time. Tests never assert times; this is where speed is judged.

Comparisons (issue 3; DESIGN section 10):
  net_vs_conv      upscaler network GFLOP/s / oneDNN's own 64->64 3x3 conv GFLOP/s (>= 0.85)
  bf16_speedup     fp32 time / bf16 time of the network (>= 1.8), when bf16 exists
  vs_upstream      realesrgan-ncnn-vulkan (upscayl-bin, lavapipe) time / clipreel time, one PNG (>= 14)
  startup_ms       process start to model ready, x4fast (<= 50 ms; a time, not a ratio)
  pipe_vs_ffmpeg   ffmpeg CLI crop+lanczos+x264 time / clipreel export time, upscale off (>= 1.0)
  pipe_vs_twostep  (decode+crop to PNG, then encode PNGs) time / clipreel time (>= 1.4)
  overlap          export-with-AI time per frame / upscaler-alone time per frame (<= 1.10)
  rss_8_vs_1       peak RSS, 8 clips / 1 clip of the same length (<= 1.25)
  rss_long_vs_short peak RSS, one long clip / one short clip (<= 1.25)

usage: bench/run.py [--quick] [--repeats N] [--out FILE] [--only NAME,...]
Run scripts/setup.sh first (it builds build/ and fetches the models + upscayl-bin).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
MODELS = os.path.join(ROOT, "models")
UPSTREAM = os.path.join(MODELS, "upstream", "upscayl-bin")
# x4fast: 3->64, 32 x 64->64, 64->48 3x3 convolutions per input pixel
NET_FLOP_PER_PX = 2 * 9 * (3 * 64 + 32 * 64 * 64 + 64 * 48)


def run(cmd, env=None, check=True):
    """Run cmd; return (wall seconds, peak RSS in KiB, stdout)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = p.communicate()
    wall = time.monotonic() - t0
    # ru_maxrss of the reaped child (Linux: KiB)
    rss = 0
    try:
        import resource
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    except Exception:
        pass
    if check and p.returncode != 0:
        sys.stderr.write(err.decode(errors="replace"))
        raise SystemExit("bench: command failed: " + " ".join(cmd))
    return wall, rss, out.decode(errors="replace")


def peak_rss(cmd):
    """Peak RSS (KiB) of one command, measured with GNU time (exact per process)."""
    t = shutil.which("time") and "/usr/bin/time"
    if not t or not os.path.exists("/usr/bin/time"):
        raise SystemExit("bench: /usr/bin/time is needed (apt-get install time)")
    p = subprocess.run(["/usr/bin/time", "-f", "%M %e"] + cmd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if p.returncode != 0:
        sys.stderr.write(p.stderr.decode(errors="replace"))
        raise SystemExit("bench: command failed: " + " ".join(cmd))
    kib, wall = p.stderr.decode().strip().splitlines()[-1].split()
    return int(kib), float(wall)


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y"] + list(args), check=True)


def stats(xs):
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "n": len(xs)}


def gen_source(path, w, h, fps, seconds, audio=True):
    if os.path.exists(path):
        return
    args = ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac", "-shortest"]
    ffmpeg(*args, path)


def export_job(path, sources, crop, out_size, upscale_mode, fps=30):
    x, y, w, h = crop
    clips = [{"clipIndex": i, "source": s, "clipName": f"clip {i}",
              "cropKeyframes": [{"time": 0, "x": x, "y": y, "width": w, "height": h}]}
             for i, s in enumerate(sources)]
    job = {"clips": clips, "globalAspectRatio": "9:16", "transition": {"type": "cut"},
           "output": {"width": out_size[0], "height": out_size[1], "fps": fps,
                      "upscale": {"mode": upscale_mode}}}
    with open(path, "w") as f:
        json.dump(job, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, under 2 minutes (CI)")
    ap.add_argument("--repeats", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "latest.json"))
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    quick = a.quick
    reps = a.repeats or (2 if quick else 3)
    only = set(x for x in a.only.split(",") if x)
    want = lambda name: not only or name in only

    clipreel = os.path.join(BUILD, "clipreel")
    ub = os.path.join(BUILD, "bench", "upscale_bench")
    cp = os.path.join(BUILD, "bench", "conv_peak")
    for exe in (clipreel, ub, cp):
        if not os.path.exists(exe):
            raise SystemExit(f"bench: {exe} missing: run scripts/setup.sh (cmake --build build)")
    work = tempfile.mkdtemp(prefix="clipreel-bench-")
    H, W = (68, 120) if quick else (270, 480)
    results = {"machine": {"cores": os.cpu_count(), "quick": quick,
                           "cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": ")},
               "raw": {}, "ratios": {}}
    raw, ratios = results["raw"], results["ratios"]

    if want("net_vs_conv") or want("bf16_speedup"):
        net, peak = [], []
        for _ in range(reps):
            _, _, o = run([cp, str(H + 20), str(W + 20), "5"])
            peak.append(json.loads(o)["gflops"])
            _, _, o = run([ub, "--model", "x4fast", "--size", f"{H}x{W}", "--runs", "3", "--tile", "-1",
                           "--models", MODELS])
            r = json.loads(o)
            best = min(r["run_s"])
            net.append(NET_FLOP_PER_PX * (H + 20) * (W + 20) / best * 1e-9)
        raw["conv_peak_gflops"], raw["net_gflops"] = peak, net
        ratios["net_vs_conv"] = stats([n / p for n, p in zip(net, peak)])

    if want("vs_upstream"):
        png = os.path.join(work, "in.png")
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={W}x{H}", "-frames:v", "1", png)
        if not os.path.exists(UPSTREAM):
            print("bench: vs_upstream skipped: models/upstream/upscayl-bin missing (scripts/fetch-models.sh)")
        else:
            os.chmod(UPSTREAM, 0o755)
            env = dict(os.environ)
            up_t, our_t = [], []
            for _ in range(reps):
                t, _, _ = run([UPSTREAM, "-i", png, "-o", os.path.join(work, "up.png"), "-m", MODELS,
                               "-n", "realesrgan-x4fast", "-s", "4", "-t", str(max(H, W) + 32), "-g", "0"], env=env)
                up_t.append(t)
                t, _, _ = run([clipreel, "upscale", png, "-o", os.path.join(work, "ours.png"), "--model",
                               "x4fast", "--tile", "-1", "--models", MODELS])
                our_t.append(t)
            raw["upstream_s"], raw["clipreel_upscale_s"] = up_t, our_t
            ratios["vs_upstream"] = stats([u / o for u, o in zip(up_t, our_t)])
            results["notes"] = ["vs_upstream: upscayl-bin runs on lavapipe (CPU Vulkan); its pixels are "
                                "wrong there, it is a timing baseline only. Both times are whole processes "
                                "(start, model load, PNG in and out)."]

    if want("startup_ms"):
        ts = []
        for _ in range(max(reps, 5)):
            t, _, _ = run([ub, "--load-only", "--model", "x4fast", "--models", MODELS])
            ts.append(t * 1000)
        raw["startup_ms"] = ts
        ratios["startup_ms"] = stats(ts)

    # the non-AI pipeline against the ffmpeg CLI and the seed's two-step route
    sw, sh, secs = (640, 360, 3) if quick else (1920, 1080, 10)
    src = os.path.join(work, "src.mp4")
    gen_source(src, sw, sh, 30, secs)
    cw, ch = (sh * 9 // 16) & ~1, sh
    cx, cy = (sw - cw) // 2, 0
    ow, oh = (360, 640) if quick else (1080, 1920)
    vf = f"crop={cw}:{ch}:{cx}:{cy},scale={ow}:{oh}:flags=lanczos,format=yuv420p"
    x264 = ["-c:v", "libx264", "-preset", "fast", "-crf", "18"]
    if want("pipe_vs_ffmpeg") or want("pipe_vs_twostep"):
        job = os.path.join(work, "noai.json")
        export_job(job, [src], (cx, cy, cw, ch), (ow, oh), "off")
        ours, ff, two = [], [], []
        for _ in range(reps):
            t, _, _ = run([clipreel, "export", job, "-o", os.path.join(work, "ours.mp4"), "--progress", "none"])
            ours.append(t)
            t, _, _ = run(["ffmpeg", "-v", "error", "-y", "-i", src, "-vf", vf] + x264 +
                          ["-c:a", "aac", "-b:a", "192k", "-ar", "48000", "-ac", "2", "-movflags", "+faststart",
                           os.path.join(work, "ff.mp4")])
            ff.append(t)
            frames = os.path.join(work, "frames")
            shutil.rmtree(frames, ignore_errors=True)
            os.makedirs(frames)
            t0 = time.monotonic()
            ffmpeg("-i", src, "-vf", f"crop={cw}:{ch}:{cx}:{cy},scale={ow}:{oh}:flags=lanczos",
                   os.path.join(frames, "%06d.png"))
            ffmpeg("-framerate", "30", "-i", os.path.join(frames, "%06d.png"), "-i", src, "-map", "0:v",
                   "-map", "1:a", "-pix_fmt", "yuv420p", *x264, "-c:a", "aac", "-b:a", "192k",
                   "-movflags", "+faststart", os.path.join(work, "two.mp4"))
            two.append(time.monotonic() - t0)
        raw["pipeline_clipreel_s"], raw["pipeline_ffmpeg_s"], raw["pipeline_twostep_s"] = ours, ff, two
        ratios["pipe_vs_ffmpeg"] = stats([f / o for f, o in zip(ff, ours)])
        ratios["pipe_vs_twostep"] = stats([t / o for t, o in zip(two, ours)])

    if want("overlap"):
        # crop c x 4c/... through the model, output exactly 4x the crop
        ocw, och = (32, 56) if quick else (68, 120)
        osrc = os.path.join(work, "ov.mp4")
        gen_source(osrc, 320, 240, 30, 1 if quick else 3)
        job = os.path.join(work, "ai.json")
        export_job(job, [osrc], (100, 60, ocw, och), (ocw * 4, och * 4), "always")
        exp, alone = [], []
        for _ in range(reps):
            t, _, out = run([clipreel, "export", job, "-o", os.path.join(work, "ai.mp4"), "--progress", "json"])
            frames = max(json.loads(l).get("frames_total", 0) for l in out.splitlines() if l.startswith("{"))
            _, _, o = run([ub, "--model", "x4fast", "--size", f"{och}x{ocw}", "--runs", "10", "--models", MODELS])
            r = json.loads(o)
            load = r["load_s"]
            exp.append((t - load) / frames)
            alone.append(statistics.median(r["run_s"]))
        raw["export_ai_s_per_frame"], raw["upscale_alone_s_per_frame"] = exp, alone
        ratios["overlap"] = stats([e / u for e, u in zip(exp, alone)])

    if want("rss_8_vs_1") or want("rss_long_vs_short"):
        short_s = 2 if quick else 6
        long_s = 20 if quick else 60
        ssrc, lsrc = os.path.join(work, "short.mp4"), os.path.join(work, "long.mp4")
        gen_source(ssrc, 640, 360, 30, short_s)
        gen_source(lsrc, 640, 360, 30, long_s)
        crop = (140, 0, 202, 360)
        jobs = {}
        for name, srcs in (("one", [ssrc]), ("eight", [ssrc] * 8), ("long", [lsrc])):
            jobs[name] = os.path.join(work, f"rss_{name}.json")
            export_job(jobs[name], srcs, crop, (360, 640), "off")
        r1, r8, rl = [], [], []
        for _ in range(reps):
            for name, acc in (("one", r1), ("eight", r8), ("long", rl)):
                kib, _ = peak_rss([clipreel, "export", jobs[name], "-o", os.path.join(work, f"{name}.mp4"),
                                   "--progress", "none"])
                acc.append(kib)
        raw["rss_kib_one"], raw["rss_kib_eight"], raw["rss_kib_long"] = r1, r8, rl
        ratios["rss_8_vs_1"] = stats([e / o for e, o in zip(r8, r1)])
        ratios["rss_long_vs_short"] = stats([l / o for l, o in zip(rl, r1)])

    targets = {"net_vs_conv": ">= 0.85", "bf16_speedup": ">= 1.8", "vs_upstream": ">= 14",
               "startup_ms": "<= 50 ms", "pipe_vs_ffmpeg": ">= 1.0", "pipe_vs_twostep": ">= 1.4",
               "overlap": "<= 1.10", "rss_8_vs_1": "<= 1.25", "rss_long_vs_short": "<= 1.25"}
    print(f"\nclipreel bench ({'quick' if quick else 'full'}, {reps} repeats, {os.cpu_count()} cores, "
          f"{results['machine']['cpu']})")
    print(f"{'comparison':<20}{'min':>10}{'median':>10}{'max':>10}   target")
    for k, s in ratios.items():
        print(f"{k:<20}{s['min']:>10.3f}{s['median']:>10.3f}{s['max']:>10.3f}   {targets.get(k, '')}")
    for n in results.get("notes", []):
        print("note:", n)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)
    print("bench: wrote", a.out)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
