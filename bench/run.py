#!/usr/bin/env python3
"""bench/run.py - clipreel against its baselines, side by side in one run.

Every figure is a ratio of two measurements taken in this run on this machine,
interleaved (A, B, A, B, ...) so that both sides see the same machine load, and
repeated; the table shows min / median / max over the repeats and the JSON file
holds every raw time. Tests never assert times; this is where speed is judged.
docs/PERFORMANCE.md explains each figure and keeps the latest table.

Comparisons (issue 3; DESIGN section 10). "Higher" or "lower" is the good direction.
  net_vs_conv       x4fast fp32 network GFLOP/s (2.42 MFLOP per *frame* pixel, untiled, the
                    10 px context counted as overhead; its 3x3 layers on clipreel's f32
                    Winograd F(4x4), src/upscale/wino.c) / oneDNN's own 64->64 3x3 conv GFLOP/s
                    at the frame's size, the faster of its direct and Winograd algorithms
                    (bench/conv_peak; Winograd's figure counts direct FLOPs)      >= 0.85
  bf16_speedup      fp32 time (the default: clipreel's f32 Winograd F(4x4)) / bf16 time (the
                    default: clipreel's bf16 Winograd F(4x4)) of the same network and
                    frame                                                          >= 1.8
  bf16_vs_direct    the same with Winograd off in both (CLIPREEL_CONV_ALGO=direct: oneDNN's
                    direct kernels, fp32 / bf16): what bf16 itself buys           >= 1.8
  vs_upstream       upscayl-bin (realesrgan-ncnn-vulkan on lavapipe) time / clipreel upscale
                    time, same PNG, same model, one tile, whole processes           >= 14
  startup_ms        process start to model loaded, x4fast (a time in ms)          <= 50
  pipe_vs_ffmpeg    ffmpeg CLI (crop, Lanczos, x264 fast crf 18 with clipreel's threads and
                    kernels, AAC) time / clipreel export time, upscale off         >= 1.0
  pipe_vs_twostep   the two-step route the replaced system used (its code, B1 in
                    ../shared/reference/reel-ballers-contract.md: decode, crop and Lanczos to
                    the output size into PNG files, then encode the PNGs) time / clipreel
                    export time, upscale off                                       >= 1.4
  pipe_vs_twostep_crop  a leaner two-step than the replaced system's (the crop's PNGs, the
                    scale while encoding) / clipreel: stricter, reported       (reported)
  overlap           export-with-AI time per frame / upscaler-alone time per frame (one frame
                    at a time, every thread on it), on a 68x120 crop: the worst case, where
                    the model takes 0.03 s a frame and the encoder, the audio and the process's
                    start (~0.25 s) weigh 10x more than on the app's framing  (reported)
  overlap_lanes     the same export / the upscaler alone upscaling frames side by side on
                    as many lanes as the export uses (upscale_bench --lanes)   (reported)
  overlap_portrait  overlap at the issue's own size, the app's framing: a 270x480 (9:16) crop
                    of a 1080p source upscaled to 1080x1920, ~0.3-0.6 s of model per frame;
                    full mode only (docs/decisions.md, "Where the overlap line
                    applies")                                                      <= 1.10
  rss_8_vs_1        peak RSS, 8 clips / 1 clip of the same length                  <= 1.25
  rss_long_vs_short peak RSS, one 60 s clip / one 6 s clip (quick: 12 s / 2 s)     <= 1.25
  resize_vs_swscale the no-AI crop-and-scale per frame, swscale's SWS_LANCZOS time / clipreel's
                    own scaler (src/media/resize.c, the CPU's best kernels), pipe_vs_ffmpeg's
                    crop (bench/resize_bench; not one of issue 3's targets: ours) >= 1.0
  x4plus_vs_onednn  RealESRGAN_x4plus per frame (216x120; quick 72x40), fp32, default tiles:
                    on oneDNN's kernels (CLIPREEL_CONV_ALGO=onednn) / on clipreel's Winograd,
                    its concats read in place and residual sums fused (ours)       >= 1.0

usage: bench/run.py [--quick] [--repeats N] [--out FILE] [--only NAME,...]
                    [--build-dir DIR] [--no-build] [--no-fetch]

It configures and builds what it needs (cmake --build BUILD --target clipreel conv_peak
upscale_bench resize_bench), fetches the models and the upstream binary (scripts/fetch-models.sh) and
installs the Debian packages it needs (mesa-vulkan-drivers, time) when they are missing and
it runs as root. Exit status: 0 when every comparison ran (whatever the ratios), 1 when one
could not be measured, 2 on a setup failure.
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")
UPSTREAM = os.path.join(MODELS, "upstream", "upscayl-bin")
# x4fast (SRVGGNetCompact): 3->64, 32 x 64->64 and 64->48 3x3 convolutions per input pixel
NET_FLOP_PER_PX = 2 * 9 * (3 * 64 + 32 * 64 * 64 + 64 * 48)
CONV_FLOP_PER_PX = 2 * 9 * 64 * 64
CONTEXT = 10  # px of context the upscaler adds around a tile (src/upscale/upscale.c)

TARGETS = {  # name: (direction, bound, text); no direction: a figure reported, not a target
    "net_vs_conv": (">=", 0.85, ">= 0.85"),
    "bf16_speedup": (">=", 1.8, ">= 1.8"),
    "bf16_vs_direct": (">=", 1.8, ">= 1.8"),
    "vs_upstream": (">=", 14.0, ">= 14"),
    "startup_ms": ("<=", 50.0, "<= 50 ms"),
    "pipe_vs_ffmpeg": (">=", 1.0, ">= 1.0"),
    "pipe_vs_twostep": (">=", 1.4, ">= 1.4"),
    "pipe_vs_twostep_crop": (None, None, "reported"),
    "overlap": (None, None, "reported"),
    "overlap_lanes": (None, None, "reported"),
    "overlap_portrait": ("<=", 1.10, "<= 1.10"),
    "rss_8_vs_1": ("<=", 1.25, "<= 1.25"),
    "rss_long_vs_short": ("<=", 1.25, "<= 1.25"),
    "resize_vs_swscale": (">=", 1.0, ">= 1.0"),
    "x4plus_vs_onednn": (">=", 1.0, ">= 1.0"),
}
ORDER = list(TARGETS)


def log(msg):
    sys.stderr.write("bench: " + msg + "\n")
    sys.stderr.flush()


class BenchError(Exception):
    pass


class Skipped(BenchError):
    """A comparison this mode does not run by design (not a failure: the exit status stays 0)."""


def run(cmd, env=None, cwd=None):
    """Run cmd to completion; return (wall seconds, stdout). Raises BenchError on failure."""
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        tail = p.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise BenchError("command failed (%d): %s\n  %s" % (p.returncode, " ".join(cmd),
                                                           "\n  ".join(tail)))
    return wall, p.stdout.decode(errors="replace")


def peak_rss(cmd):
    """(peak RSS in KiB, wall seconds) of one command, from GNU time (per process, exact)."""
    p = subprocess.run(["/usr/bin/time", "-f", "@@rss %M %e"] + cmd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0:
        raise BenchError("command failed: %s\n%s" % (" ".join(cmd), err[-800:]))
    m = re.findall(r"^@@rss (\d+) ([\d.]+)$", err, re.M)
    if not m:
        raise BenchError("no GNU time output for " + " ".join(cmd))
    return int(m[-1][0]), float(m[-1][1])


def ffmpeg(*args):
    run(["ffmpeg", "-nostdin", "-v", "error", "-y"] + list(args))


def cpu_jiffies():
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


class Foreign:
    """Share of the machine's CPU that processes other than ours used over an interval:
    (all busy CPU time - our children's CPU time) / (wall * cores). A noise indicator."""

    def __init__(self):
        self.j0, self.c0, self.t0 = cpu_jiffies(), os.times(), time.monotonic()

    def share(self):
        j1, c1, t1 = cpu_jiffies(), os.times(), time.monotonic()
        hz = os.sysconf("SC_CLK_TCK")
        busy = (j1[0] - self.j0[0]) / hz
        ours = (c1.children_user - self.c0.children_user +
                c1.children_system - self.c0.children_system + c1.user - self.c0.user +
                c1.system - self.c0.system)
        wall = max(t1 - self.t0, 1e-3)
        return max(0.0, (busy - ours) / (wall * (os.cpu_count() or 1)))


def wait_quiet(max_wait, threshold=0.10):
    """Wait (up to max_wait s) until other processes use less than threshold of the CPUs."""
    t_end = time.monotonic() + max_wait
    while True:
        f = Foreign()
        time.sleep(1.0)
        share = f.share()
        if share < threshold or time.monotonic() >= t_end:
            return share
        log(f"machine busy ({share:.0%} of the CPUs used by others): waiting")
        time.sleep(2.0)


def stats(xs):
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "n": len(xs)}


def one_json(text):
    """The last line of text that parses as a JSON object."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise BenchError("no JSON line in output: " + text[-300:])


# ---- setup -----------------------------------------------------------------------------------

def have_lavapipe():
    for d in ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"):
        if os.path.isdir(d) and any(f.startswith("lvp_icd") for f in os.listdir(d)):
            return True
    return False


def ensure_packages():
    missing = []
    if not os.path.exists("/usr/bin/time"):
        missing.append("time")
    if not have_lavapipe():
        missing.append("mesa-vulkan-drivers")
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        log("missing packages %s (not root or no apt-get): comparisons needing them are skipped"
            % " ".join(missing))
        return
    log("installing " + " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing,
                   env=env, check=False)


def ensure_models():
    script = os.path.join(ROOT, "scripts", "fetch-models.sh")
    need_models = not all(os.path.exists(os.path.join(MODELS, f"realesrgan-x4fast.{e}"))
                          for e in ("param", "bin"))
    if need_models:
        log("fetching the models (scripts/fetch-models.sh)")
        subprocess.run([script], check=True)
    if not os.path.exists(UPSTREAM):
        # fetch-models.sh stops early when the weights are already present, so let it fetch
        # into a scratch folder and keep only the upstream binary from there.
        log("fetching upscayl-bin (scripts/fetch-models.sh into a scratch folder)")
        tmp = tempfile.mkdtemp(prefix="clipreel-fetch-")
        try:
            subprocess.run([script, tmp], check=True, stdout=subprocess.DEVNULL)
            src = os.path.join(tmp, "upstream", "upscayl-bin")
            if os.path.exists(src):
                os.makedirs(os.path.dirname(UPSTREAM), exist_ok=True)
                shutil.copy(src, UPSTREAM)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if os.path.exists(UPSTREAM):
        os.chmod(UPSTREAM, 0o755)


def ensure_build(build):
    if not os.path.exists(os.path.join(build, "CMakeCache.txt")):
        log(f"configuring {build} (Release)")
        subprocess.run(["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release"],
                       check=True, stdout=subprocess.DEVNULL)
    log(f"building clipreel conv_peak upscale_bench resize_bench in {build}")
    p = subprocess.run(["cmake", "--build", build, "-j", str(os.cpu_count() or 2), "--target",
                        "clipreel", "conv_peak", "upscale_bench", "resize_bench"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        sys.stderr.write(p.stdout.decode(errors="replace")[-3000:])
        raise SystemExit(2)


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            return re.search(r"^flags\s*:\s*(.*)$", f.read(), re.M).group(1).split()
    except (OSError, AttributeError):
        return []


def x264_same_as_clipreel():
    """The libx264 configuration clipreel encodes with besides preset and CRF
    (src/media/pipeline.c: REEL_ENCODE_THREADS frame threads, and kernels pinned to AVX2
    where the CPU has AVX2, FMA, BMI2 and LZCNT), as ffmpeg CLI options: the baselines
    encode with the same settings, so the pipe rows compare the work around the encoder."""
    args = ["-threads", "4"]
    # clipreel also asks for LZCNT (abm), which every CPU with these has, and which some
    # VMs' /proc/cpuinfo leaves out (the PVM guests here) though CPUID reports it
    if {"avx2", "fma", "bmi2"} <= set(cpu_flags()):
        args += ["-x264-params", "asm=SSE2Fast,AVX2"]
    return args


def machine_info():
    cpu, flags, family = "", cpu_flags(), ""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        cpu = re.search(r"^model name\s*:\s*(.*)$", text, re.M).group(1).strip()
        family = "(family %s model %s)" % (
            re.search(r"^cpu family\s*:\s*(\d+)", text, re.M).group(1),
            re.search(r"^model\s*:\s*(\d+)", text, re.M).group(1))
    except (OSError, AttributeError):
        pass
    mem_gib = 0.0
    try:
        with open("/proc/meminfo") as f:
            mem_gib = int(f.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    info = {"cpu": cpu, "cpu_family": family, "cores": os.cpu_count(),
            "mem_gib": round(mem_gib, 1),
            "avx512f": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "kernel": platform.release()}
    try:
        info["ffmpeg"] = run(["ffmpeg", "-version"])[1].split("\n")[0]
    except (BenchError, OSError):
        pass
    try:
        info["commit"] = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])[1].strip()
    except (BenchError, OSError):
        pass
    return info


# ---- inputs ----------------------------------------------------------------------------------

def gen_source(path, w, h, fps, seconds, audio=True):
    """A source clip as phones and cameras record HD video: H.264 yuv420p, BT.709 limited
    range, tagged so (clipreel then takes its YUV path, docs/internals/media.md)."""
    if os.path.exists(path):
        return
    args = ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    args += ["-vf", "scale=out_color_matrix=bt709:out_range=tv", "-colorspace", "bt709",
             "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", str(fps * 2)]
    if audio:
        args += ["-c:a", "aac", "-shortest"]
    ffmpeg(*args, path)


def export_job(path, sources, crop, out_size, upscale_mode, fps=30, precision=None):
    x, y, w, h = crop
    clips = [{"clipIndex": i, "source": s, "clipName": f"clip {i}",
              "cropKeyframes": [{"time": 0, "x": x, "y": y, "width": w, "height": h}]}
             for i, s in enumerate(sources)]
    up = {"model": "realesr-general-x4v3", "mode": upscale_mode}
    if precision:
        up["precision"] = precision
    job = {"clips": clips, "globalAspectRatio": "9:16", "transition": {"type": "cut"},
           "output": {"width": out_size[0], "height": out_size[1], "fps": fps, "upscale": up}}
    with open(path, "w") as f:
        json.dump(job, f)


def pinned_pair(jobs):
    """Run the (cpu, cmd) jobs at once, each pinned to its CPU (taskset); their JSON lines,
    in order."""
    procs = [(cmd, subprocess.Popen(["taskset", "-c", str(cpu)] + cmd, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)) for cpu, cmd in jobs]
    results = []
    for cmd, p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise BenchError(os.path.basename(cmd[0]) + " failed: " +
                             err.decode(errors="replace")[-300:])
        results.append(one_json(out.decode(errors="replace")))
    return results


def summary_times(out):
    """clipreel export's summary line 'time: T s total, loading_model A s, ...' as a dict."""
    m = re.search(r"^time:\s+([\d.]+) s total(.*)$", out, re.M)
    if not m:
        raise BenchError("no 'time:' line in clipreel export's summary")
    d = {"total": float(m.group(1))}
    for name, v in re.findall(r", (\w+) ([\d.]+) s", m.group(2)):
        d[name] = float(v)
    return d


def frames_of(out):
    m = re.search(r"\((\d+) frames at", out)
    if not m:
        raise BenchError("no frame count in clipreel export's summary")
    return int(m.group(1))


# ---- the comparisons ---------------------------------------------------------------------------

class Bench:
    def __init__(self, a, build, work, results):
        self.a, self.work, self.results = a, work, results
        self.quick = a.quick
        self.reps = a.repeats or (2 if a.quick else 3)
        self.raw, self.ratios, self.notes = results["raw"], results["ratios"], results["notes"]
        self.clipreel = os.path.join(build, "clipreel")
        self.ub = os.path.join(build, "bench", "upscale_bench")
        self.cp = os.path.join(build, "bench", "conv_peak")
        self.rb = os.path.join(build, "bench", "resize_bench")
        # the network at the frame size (quick: a quarter of it, so that the three
        # variants fit the CI budget on a busy machine); the upstream comparison at a small
        # frame in quick mode (upscayl-bin needs ~30 s for the full one on lavapipe)
        self.H, self.W = (136, 240) if self.quick else (270, 480)
        self.uH, self.uW = (68, 120) if self.quick else (270, 480)
        self._bf16 = None

    def w(self, name):
        return os.path.join(self.work, name)

    def upscale_bench_cmd(self, h, w, runs, tile=-1, precision="fp32", threads=0, lanes=1,
                          model="x4fast"):
        cmd = [self.ub, "--model", model, "--size", f"{h}x{w}", "--runs", str(runs), "--tile",
               str(tile), "--precision", precision, "--models", MODELS]
        if threads:
            cmd += ["--threads", str(threads)]
        if lanes > 1:
            cmd += ["--lanes", str(lanes)]
        return cmd

    def upscale_bench(self, h, w, runs, tile=-1, precision="fp32", threads=0, env=None,
                      lanes=1, model="x4fast"):
        return one_json(run(self.upscale_bench_cmd(h, w, runs, tile, precision, threads, lanes,
                                                   model), env=env)[1])

    def bf16_available(self):
        if self._bf16 is None:
            try:
                r = self.upscale_bench(16, 16, 1, precision="bf16")
                self._bf16 = r.get("precision") == "bf16"
            except BenchError:
                self._bf16 = False
        return self._bf16

    def conv_peak(self, h, w, kind):
        return one_json(run([self.cp, str(h), str(w), "10", kind])[1])["gflops"]

    def precisions_side_by_side(self, h, w, rounds):
        """fp32 / bf16 of one frame with one thread each, both processes at once on CPUs 0
        and 1 (swapped each round), so that they see the same neighbours: the VM's load
        moves the two-thread rows by 5-20 %, this by 1-2 %. Per round the ratio of the two
        processes' fastest frames."""
        ratios = []
        for i in range(rounds):
            cpus = (i % 2, 1 - i % 2)
            fp32, bf16 = pinned_pair([(cpus[0], self.upscale_bench_cmd(h, w, 3, precision="fp32",
                                                                      threads=1)),
                                      (cpus[1], self.upscale_bench_cmd(h, w, 3, precision="bf16",
                                                                      threads=1))])
            ratios.append(min(fp32["run_s"]) / min(bf16["run_s"]))
        return ratios

    def threads_vs_processes(self, kind, rounds):
        """The bare 64->64 layer (140x240, in cache) on two threads of one process / on two
        one-thread processes at once (CPUs 0 and 1), in GFLOP/s, per round. A state
        indicator: two threads packing their scratch shares end to end read ~0.7 here in
        the slow state (docs/PERFORMANCE.md, Machine); ~1.0 is two cores' worth."""
        ratios = []
        for _ in range(rounds):
            layer = [self.cp, "140", "240", "50", kind]
            two = one_json(run(layer + ["2"])[1])["gflops"]
            pair = pinned_pair([(cpu, layer + ["1"]) for cpu in (0, 1)])
            ratios.append(two / sum(r["gflops"] for r in pair))
        return ratios

    # net_vs_conv, bf16_speedup, bf16_vs_direct
    def network(self):
        H, W, reps = self.H, self.W, self.reps
        peak_d, peak_w, net, net_bf, net_dir, net_bf_dir, peak_bf, peak_own = ([] for _ in range(8))
        peak_own_f32, net_onednn = [], []
        onednn_env = dict(os.environ, CLIPREEL_CONV_ALGO="onednn")
        want_bf = ((self.a.want("bf16_speedup") or self.a.want("bf16_vs_direct")) and
                   self.bf16_available())
        want_dir = want_bf and self.a.want("bf16_vs_direct")
        direct_env = dict(os.environ, CLIPREEL_CONV_ALGO="direct")
        runs = 2 if self.quick else 3
        for rep in range(reps):
            # interleaved: layer peaks, then the network in each mode, each rep
            peak_d.append(self.conv_peak(H, W, "f32"))
            peak_w.append(self.conv_peak(H, W, "wino"))
            peak_own_f32.append(self.conv_peak(H, W, "wf32"))
            # the two precisions back to back, their order swapped each rep: the VM's load
            # drifts over seconds, and bf16_speedup is their ratio
            order = [("fp32", net), ("bf16", net_bf)][:2 if want_bf else 1]
            for prec, into in (order if rep % 2 == 0 else order[::-1]):
                into.append(min(self.upscale_bench(H, W, runs, precision=prec)["run_s"]))
            net_onednn.append(min(self.upscale_bench(H, W, runs, env=onednn_env)["run_s"]))
            if want_bf:
                peak_bf.append(self.conv_peak(H, W, "bf16"))
                peak_own.append(self.conv_peak(H, W, "wbf16"))
            if want_dir:
                net_dir.append(min(self.upscale_bench(H, W, runs, env=direct_env)["run_s"]))
                net_bf_dir.append(min(self.upscale_bench(H, W, runs, precision="bf16",
                                                         env=direct_env)["run_s"]))
        peak = [max(d, w) for d, w in zip(peak_d, peak_w)]
        gflops = [NET_FLOP_PER_PX * H * W / t * 1e-9 for t in net]
        self.raw.update({"frame": f"{W}x{H}", "conv_peak_direct_gflops": peak_d,
                         "conv_peak_winograd_gflops": peak_w, "net_fp32_s": net,
                         # clipreel's own f32 Winograd layer, and the network on oneDNN's kernels
                         "conv_peak_own_f32_winograd_gflops": peak_own_f32,
                         "net_fp32_onednn_s": net_onednn,
                         "net_fp32_gflops": gflops,
                         # the same time counted on the padded tile the network really computes
                         "net_fp32_gflops_padded": [NET_FLOP_PER_PX * (H + 2 * CONTEXT) *
                                                    (W + 2 * CONTEXT) / t * 1e-9 for t in net]})
        self.ratios["net_vs_conv"] = stats([n / p for n, p in zip(gflops, peak)])
        # against the direct algorithm alone (the 230 GFLOP/s the 1.6 s/frame assumed)
        self.raw["net_vs_direct_peak"] = [n / p for n, p in zip(gflops, peak_d)]
        if want_bf:
            self.raw.update({"net_bf16_s": net_bf, "conv_peak_bf16_gflops": peak_bf,
                             "conv_peak_bf16_winograd_gflops": peak_own,
                             "net_bf16_gflops": [NET_FLOP_PER_PX * H * W / t * 1e-9
                                                 for t in net_bf]})
            if self.a.want("bf16_speedup"):
                self.ratios["bf16_speedup"] = stats([f / b for f, b in zip(net, net_bf)])
            if want_dir:
                self.raw["net_fp32_direct_s"] = net_dir
                self.raw["net_bf16_direct_s"] = net_bf_dir
                self.ratios["bf16_vs_direct"] = stats([d / b for d, b in zip(net_dir, net_bf_dir)])
            if not self.quick and (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
                side = self.precisions_side_by_side(H, W, 4)
                self.raw["bf16_speedup_one_thread_side_by_side"] = side
                self.notes.append("bf16_speedup with one thread each, fp32 and bf16 at once on "
                                  "separate cores (4 rounds, swapped): %.3f-%.3f, geometric mean "
                                  "%.3f (less moved by the VM's load than the two-thread row)" %
                                  (min(side), max(side), statistics.geometric_mean(side)))
            if not self.quick and (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
                tp = self.threads_vs_processes("wbf16", 3)
                self.raw["layer_two_threads_vs_two_processes_bf16"] = tp
                self.notes.append("two threads on the bf16 64->64 layer (140x240) / two one-thread "
                                  "processes side by side: %.3f-%.3f (a state indicator: ~0.7 "
                                  "when the threads' scratch lay packed, in the slow state)" %
                                  (min(tp), max(tp)))
            self.notes.append("bf16: oneDNN 2.6 has no bf16 Winograd; clipreel's own Winograd "
                              "F(4x4,3x3) runs the 3x3 layers in both precisions (conv_peak "
                              "wbf16 / wf32 in the JSON: conv_peak_bf16_winograd_gflops, "
                              "conv_peak_own_f32_winograd_gflops)")
        else:
            for n in ("bf16_speedup", "bf16_vs_direct"):
                if self.a.want(n):
                    self.results["errors"][n] = "this build or CPU has no bf16 mode"

    def vs_upstream(self):
        H, W = self.uH, self.uW
        png = self.w("in.png")
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={W}x{H}", "-frames:v", "1", png)
        if not os.path.exists(UPSTREAM):
            raise BenchError("models/upstream/upscayl-bin missing (scripts/fetch-models.sh)")
        if not have_lavapipe():
            raise BenchError("no lavapipe Vulkan driver (apt-get install mesa-vulkan-drivers)")
        up_t, our_t = [], []
        for _ in range(self.reps):
            t, _ = run([UPSTREAM, "-i", png, "-o", self.w("up.png"), "-m", MODELS, "-n",
                        "realesrgan-x4fast", "-s", "4", "-t", str(max(H, W) + 32), "-g", "0"])
            up_t.append(t)
            t, _ = run([self.clipreel, "upscale", png, "-o", self.w("ours.png"), "--model",
                        "x4fast", "--tile", "-1", "--models", MODELS])
            our_t.append(t)
        self.raw.update({"upstream_frame": f"{W}x{H}", "upstream_s": up_t,
                         "clipreel_upscale_s": our_t})
        self.ratios["vs_upstream"] = stats([u / o for u, o in zip(up_t, our_t)])
        self.notes.append("vs_upstream: upscayl-bin runs on lavapipe (Vulkan on the CPU); its "
                          "pixels are wrong there, so it is a timing baseline only. Both times "
                          "are whole processes (start, model load, PNG in and out), fp32.")

    def startup(self):
        ts, first = [], []
        for _ in range(max(self.reps, 5)):
            t, _ = run([self.ub, "--load-only", "--model", "x4fast", "--models", MODELS])
            ts.append(t * 1000)
        # the product binary's own start: every library clipreel links, loaded (no model)
        cs = [run([self.clipreel, "--version"])[0] * 1000 for _ in range(max(self.reps, 5))]
        self.raw["clipreel_start_ms"] = cs
        self.notes.append("startup: the clipreel binary itself starts in %.1f ms (median of "
                          "`clipreel --version`, every library it links loaded); the row's "
                          "process loads only the upscaler's" % statistics.median(cs))
        r = self.upscale_bench(self.H, self.W, 3)
        self.raw["startup_ms"] = ts
        # what the first frame of a new size costs on top (kernels built, weights reordered)
        self.raw["first_frame_extra_ms"] = r["prepare_s"] * 1000
        self.ratios["startup_ms"] = stats(ts)

    def pipeline(self):
        sw, sh, secs = (640, 360, 3) if self.quick else (1920, 1080, 6)
        src = self.w("src709.mp4")
        gen_source(src, sw, sh, 30, secs)
        cw, ch = (sh * 9 // 16) & ~1, sh
        cx, cy = ((sw - cw) // 2) & ~1, 0
        ow, oh = (360, 640) if self.quick else (1080, 1920)
        crop = f"crop={cw}:{ch}:{cx}:{cy}"
        scale = f"scale={ow}:{oh}:flags=lanczos"
        x264_defaults = ["-c:v", "libx264", "-preset", "fast", "-crf", "18", "-pix_fmt",
                         "yuv420p"]
        x264 = x264_defaults + x264_same_as_clipreel()
        aac = ["-c:a", "aac", "-b:a", "192k", "-ar", "48000", "-ac", "2"]
        job = self.w("noai.json")
        export_job(job, [src], (cx, cy, cw, ch), (ow, oh), "off")
        frames = self.w("frames")

        def ours():
            return run([self.clipreel, "export", job, "-o", self.w("ours.mp4"), "--progress",
                        "none"])[0]

        def ff(enc=x264):
            return run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", src, "-vf",
                        f"{crop},{scale}"] + enc + aac + ["-movflags", "+faststart",
                                                          self.w("ff.mp4")])[0]

        def ff_defaults():
            # not a row: the CLI with libx264's own thread count and kernels (AVX-512 where
            # the CPU has it), for the record
            return ff(x264_defaults)

        def two_step(png_vf, encode_vf, out):
            shutil.rmtree(frames, ignore_errors=True)
            os.makedirs(frames)
            t0 = time.monotonic()
            ffmpeg("-i", src, "-vf", png_vf, os.path.join(frames, "%06d.png"))
            ffmpeg("-framerate", "30", "-i", os.path.join(frames, "%06d.png"), "-i", src,
                   "-map", "0:v", "-map", "1:a", *(["-vf", encode_vf] if encode_vf else []),
                   *x264, *aac, "-movflags", "+faststart", self.w(out))
            return time.monotonic() - t0

        def two():
            # the route as the replaced system's Modal code ran it
            # (../shared/reference/reel-ballers-contract.md, "Per frame", B1 without the
            # model): crop, Lanczos to the target, PNG at the output size, then encode the
            # PNGs; ffmpeg stands in for its OpenCV reads, resize and writes
            return two_step(f"{crop},{scale}", None, "two.mp4")

        def two_crop():
            # a leaner two-step than the replaced system's: the crop's PNGs (fewer pixels
            # to compress and read back), the resize while encoding
            return two_step(crop, scale, "two_crop.mp4")

        # Order matters on this VM: the first process after an idle spell pays ~0.8 s of
        # page zeroing that the next one does not (the host hands back memory the guest
        # freed; docs/PERFORMANCE.md, Method). So one unmeasured round first, then each
        # repeat starts with a different contender.
        sides = [("ours", ours), ("ff", ff), ("two", two), ("two_crop", two_crop)]
        if not self.quick:
            sides += [("ff_defaults", ff_defaults)]
        for _, fn in sides:
            fn()
        times = {name: [] for name, _ in sides}
        cpu = {name: [] for name, _ in sides}
        for i in range(self.reps):
            for name, fn in sides[i % len(sides):] + sides[:i % len(sides)]:
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                times[name].append(fn())
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                # CPU time of the contender's processes: the same work, or better scheduled?
                cpu[name].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        ours, ff, two = times["ours"], times["ff"], times["two"]
        shutil.rmtree(frames, ignore_errors=True)
        self.raw["pipeline_x264_options"] = " ".join(x264)
        def against_ours(name, key):
            # a contender that is not a row: its raw times, and its median time / ours
            self.raw[key] = times[name]
            return statistics.median(t / o for t, o in zip(times[name], ours))

        if "ff_defaults" in times:
            self.notes.append("pipe rows: the CLI and the two-step encode with clipreel's libx264 "
                              "configuration (%s); with libx264's own (its thread count, and "
                              "AVX-512 kernels where the CPU has them) the CLI's time / "
                              "clipreel's is %.3f (median)" %
                              (" ".join(x264_same_as_clipreel()),
                               against_ours("ff_defaults", "pipeline_ffmpeg_x264_defaults_s")))
        self.raw.update({"pipeline_source": f"{sw}x{sh} {secs} s 30 fps BT.709, crop {cw}x{ch} -> "
                         f"{ow}x{oh}", "pipeline_clipreel_s": ours, "pipeline_ffmpeg_s": ff,
                         "pipeline_twostep_s": two, "pipeline_twostep_crop_s": times["two_crop"],
                         "pipeline_clipreel_cpu_s": cpu["ours"],
                         "pipeline_ffmpeg_cpu_s": cpu["ff"], "pipeline_twostep_cpu_s": cpu["two"],
                         "pipeline_twostep_crop_cpu_s": cpu["two_crop"]})
        med = {name: statistics.median(v) for name, v in cpu.items()}
        self.notes.append("pipe rows, CPU time of each contender's processes (median): clipreel "
                          "%.2f s, ffmpeg CLI %.2f s, two-step %.2f s (crop's PNGs: %.2f s)" %
                          (med["ours"], med["ff"], med["two"], med["two_crop"]))
        if self.a.want("pipe_vs_ffmpeg"):
            self.ratios["pipe_vs_ffmpeg"] = stats([f / o for f, o in zip(ff, ours)])
        if self.a.want("pipe_vs_twostep"):
            self.ratios["pipe_vs_twostep"] = stats([t / o for t, o in zip(two, ours)])
        if self.a.want("pipe_vs_twostep_crop"):
            self.ratios["pipe_vs_twostep_crop"] = stats(
                [t / o for t, o in zip(times["two_crop"], ours)])

    def resize(self):
        # pipe_vs_ffmpeg's crop of its source, scaled to its output
        src, crop, out = (("640x360", "202x360", "360x640") if self.quick else
                          ("1920x1080", "606x1080", "1080x1920"))
        ours, sws, kernels = [], [], ""
        for _ in range(self.reps):
            # 16 sources and outputs in turn: out of cache when their turn comes, as in an
            # export (one frame again and again stays in cache and flatters a scaler)
            _, o = run([self.rb, "--frames", "30" if self.quick else "60", "--cold", "16", src,
                        crop, out])
            m = re.search(r"clipreel (\S+) ([\d.]+) ms/frame, swscale ([\d.]+) ms/frame", o)
            if not m:
                raise BenchError("no timing line from resize_bench: " + o.strip()[:200])
            kernels = m.group(1)
            ours.append(float(m.group(2)))
            sws.append(float(m.group(3)))
        self.raw.update({"resize_case": f"{crop} of {src} -> {out}, 16 frames in turn", "resize_kernels": kernels,
                         "resize_clipreel_ms": ours, "resize_swscale_ms": sws})
        self.ratios["resize_vs_swscale"] = stats([s_ / o for s_, o in zip(sws, ours)])

    def export_vs_alone(self, job, out, h, w, runs_alone, runs_lanes):
        """Per repeat: the AI export's time per frame, the upscaler alone on one frame at a
        time (every thread) and on the export's lanes side by side, and the first frame's
        extra (kernels built). Model load and that first frame are start-up, not per frame."""
        # one lane per core, <= 4 (os.cpu_count() counts SMT siblings, which the export does
        # not: equal here)
        n_lanes = min(os.cpu_count() or 1, 4)
        exp, alone, lanes, prep = [], [], [], []
        for _ in range(self.reps):
            t, o = run([self.clipreel, "export", job, "-o", out, "--progress", "none"])
            times, n = summary_times(o), frames_of(o)
            r = self.upscale_bench(h, w, runs_alone, tile=0)
            rl = (self.upscale_bench(h, w, runs_lanes, tile=0, lanes=n_lanes)
                  if n_lanes > 1 else None)
            exp.append((t - times.get("loading_model", 0.0) - r["prepare_s"]) / n)
            alone.append(statistics.median(r["run_s"]))
            lanes.append(rl["s_per_frame"] if rl else alone[-1])  # one lane: the same figure
            prep.append(r["prepare_s"])
        return exp, alone, lanes, prep

    def overlap(self):
        # a crop through the model, output exactly 4x the crop (the resize is then 1:1)
        ocw, och = (32, 56) if self.quick else (68, 120)
        secs = 1 if self.quick else 3
        osrc = self.w("ov709.mp4")
        gen_source(osrc, 320, 240, 30, secs)
        job = self.w("ai.json")
        export_job(job, [osrc], (100, 60, ocw, och), (ocw * 4, och * 4), "always")
        exp, alone, lanes, prep = self.export_vs_alone(job, self.w("ai.mp4"), och, ocw,
                                                       10 if self.quick else 8,
                                                       5 if self.quick else 4)
        self.raw.update({"overlap_crop": f"{ocw}x{och}", "export_ai_s_per_frame": exp,
                         "upscale_alone_s_per_frame": alone,
                         "upscale_alone_lanes_s_per_frame": lanes, "upscale_prepare_s": prep})
        if self.a.want("overlap"):
            self.ratios["overlap"] = stats([e / u for e, u in zip(exp, alone)])
        if self.a.want("overlap_lanes"):
            self.ratios["overlap_lanes"] = stats([e / u for e, u in zip(exp, lanes)])

    def overlap_portrait(self):
        # the app's own framing: a 9:16 crop of a phone's 1080p video, a quarter of the
        # 1080x1920 output each way, so the model's frame (0.6 s here) dominates as it does
        # in real reels; overlap's 68x120 crop is the worst case (0.05 s of model per frame)
        if self.quick:
            raise Skipped("full mode only (0.6 s of model per frame)")
        cw, ch = 270, 480
        # 2 s: x264 holds its lookahead (~30 frames) until the end, a fixed cost to amortise
        src = self.w("src709_2s.mp4")
        gen_source(src, 1920, 1080, 30, 2)
        job = self.w("ai_portrait.json")
        export_job(job, [src], (824, 300, cw, ch), (cw * 4, ch * 4), "always")
        exp, alone, lanes, _ = self.export_vs_alone(job, self.w("ai_portrait.mp4"), ch, cw, 3, 2)
        self.raw.update({"overlap_portrait_crop": f"{cw}x{ch} of 1920x1080 -> {cw * 4}x{ch * 4}",
                         "export_ai_portrait_s_per_frame": exp,
                         "upscale_alone_portrait_s_per_frame": alone,
                         "upscale_alone_portrait_lanes_s_per_frame": lanes,
                         "overlap_portrait_lanes": [e / u for e, u in zip(exp, lanes)]})
        self.ratios["overlap_portrait"] = stats([e / u for e, u in zip(exp, alone)])

    def x4plus(self):
        # RealESRGAN_x4plus (RRDB: dense blocks of 32-channel convolutions, concats and
        # residual sums) on clipreel's kernels, its concats read in place and its sums fused,
        # against the same network on oneDNN's kernels and primitives, in its default tiles
        h, w = (40, 72) if self.quick else (120, 216)
        onednn = dict(os.environ, CLIPREEL_CONV_ALGO="onednn")
        ours, dnnl = [], []
        for _ in range(self.reps):
            ours.append(statistics.median(
                self.upscale_bench(h, w, 2, tile=0, model="x4plus")["run_s"]))
            dnnl.append(statistics.median(
                self.upscale_bench(h, w, 2, tile=0, model="x4plus", env=onednn)["run_s"]))
        self.raw.update({"x4plus_frame": f"{w}x{h}", "x4plus_s": ours, "x4plus_onednn_s": dnnl})
        self.ratios["x4plus_vs_onednn"] = stats([d / o for d, o in zip(dnnl, ours)])

    def rss(self):
        if not os.path.exists("/usr/bin/time"):
            raise BenchError("/usr/bin/time missing (apt-get install time)")
        short_s, long_s = (2, 12) if self.quick else (6, 60)
        ssrc, lsrc = self.w("short709.mp4"), self.w("long709.mp4")
        gen_source(ssrc, 640, 360, 30, short_s)
        gen_source(lsrc, 640, 360, 30, long_s)
        crop = (140, 0, 202, 360)
        jobs = {}
        for name, srcs in (("one", [ssrc]), ("eight", [ssrc] * 8), ("long", [lsrc])):
            jobs[name] = self.w(f"rss_{name}.json")
            export_job(jobs[name], srcs, crop, (360, 640), "off")
        r1, r8, rl = [], [], []
        for _ in range(self.reps):
            for name, acc in (("one", r1), ("eight", r8), ("long", rl)):
                if name != "one" and not (self.a.want("rss_8_vs_1") if name == "eight"
                                          else self.a.want("rss_long_vs_short")):
                    continue
                kib, _ = peak_rss([self.clipreel, "export", jobs[name], "-o",
                                   self.w(f"{name}.mp4"), "--progress", "none"])
                acc.append(kib)
        self.raw.update({"rss_kib_one": r1, "rss_kib_eight": r8, "rss_kib_long": rl,
                         "rss_clips": f"640x360 sources, short {short_s} s, long {long_s} s"})
        if r8:
            self.ratios["rss_8_vs_1"] = stats([e / o for e, o in zip(r8, r1)])
        if rl:
            self.ratios["rss_long_vs_short"] = stats([v / o for v, o in zip(rl, r1)])


def verdict(name, s):
    d, bound, _ = TARGETS[name]
    v = s["median"]
    if d is None:
        return "-"
    return "ok" if (v >= bound if d == ">=" else v <= bound) else "SHORT"


def print_table(results):
    m = results["machine"]
    print(f"\nclipreel bench ({'quick' if results['quick'] else 'full'}, {results['repeats']} "
          f"repeats, {m['cores']} cores, {m['cpu']} {m.get('cpu_family', '')}, load "
          f"{results['load_before']:.2f} -> {results['load_after']:.2f}, OMP_WAIT_POLICY={results['omp_wait_policy']})")
    print(f"{'comparison':<21}{'min':>9}{'median':>9}{'max':>9}   {'target':<10} {'median':<7}"
          " others' CPU")
    for k in ORDER:
        s = results["ratios"].get(k)
        if s is None and results["only"] and k not in results["only"]:
            continue
        if s is None:
            why = results["errors"].get(k) or results["skipped"].get(k, "not run")
            print(f"{k:<21}{'-':>9}{'-':>9}{'-':>9}   {TARGETS[k][2]:<10} {why.splitlines()[0]}")
            continue
        fmt = "{:>9.1f}" if k == "startup_ms" else "{:>9.3f}"
        busy = results["foreign_cpu"].get(k)
        print(f"{k:<21}" + "".join(fmt.format(s[x]) for x in ("min", "median", "max")) +
              f"   {TARGETS[k][2]:<10} {verdict(k, s):<7} " +
              (f"{busy:.0%}" if busy is not None else ""))
    for n in results["notes"]:
        print("note:", n)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, under 2 minutes (CI)")
    ap.add_argument("--repeats", type=int, default=0, help="default 2 (quick) or 3")
    ap.add_argument("--out", default="", help="JSON file (default bench/results/latest[-quick].json)")
    ap.add_argument("--only", default="", help="comma-separated comparison names")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--no-build", action="store_true", help="use the build as it is")
    ap.add_argument("--no-fetch", action="store_true", help="no downloads, no apt-get")
    ap.add_argument("--omp-wait-policy", default="passive",
                    help="OMP_WAIT_POLICY for every process measured (default passive, "
                         "see 'Threads' in docs/PERFORMANCE.md); 'inherit' keeps the "
                         "environment's")
    ap.add_argument("--wait-quiet", type=float, default=-1,
                    help="before each comparison wait up to this many seconds for other "
                         "processes to leave the CPUs (default 0 quick, 120 full)")
    a = ap.parse_args()
    only = set(x for x in a.only.split(",") if x)
    unknown = only - set(ORDER)
    if unknown:
        ap.error("unknown comparison(s): " + ", ".join(sorted(unknown)))
    a.want = lambda name: not only or name in only
    build = os.path.abspath(a.build_dir)
    out = a.out or os.path.join(ROOT, "bench", "results",
                                "latest-quick.json" if a.quick else "latest.json")

    t_start = time.monotonic()
    if a.omp_wait_policy != "inherit":
        os.environ["OMP_WAIT_POLICY"] = a.omp_wait_policy
    if not a.no_fetch:
        ensure_packages()
        ensure_models()
    if not a.no_build:
        ensure_build(build)
    for exe in ("clipreel", "bench/upscale_bench", "bench/conv_peak"):
        if not os.path.exists(os.path.join(build, exe)):
            log(f"{build}/{exe} missing")
            return 2

    results = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "quick": a.quick, "machine": machine_info(), "load_before": os.getloadavg()[0],
               "only": sorted(only), "raw": {}, "ratios": {}, "notes": [], "errors": {},
               "skipped": {},
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(libgomp default)")}
    work = tempfile.mkdtemp(prefix="clipreel-bench-")
    b = Bench(a, build, work, results)
    results["repeats"] = b.reps
    results["foreign_cpu"] = {}
    wait = a.wait_quiet if a.wait_quiet >= 0 else (0 if a.quick else 120)
    groups = [(("net_vs_conv", "bf16_speedup", "bf16_vs_direct"), b.network), (("vs_upstream",), b.vs_upstream),
              (("startup_ms",), b.startup), (("pipe_vs_ffmpeg", "pipe_vs_twostep", "pipe_vs_twostep_crop"), b.pipeline),
              (("overlap", "overlap_lanes"), b.overlap), (("overlap_portrait",), b.overlap_portrait),
              (("rss_8_vs_1", "rss_long_vs_short"), b.rss),
              (("resize_vs_swscale",), b.resize), (("x4plus_vs_onednn",), b.x4plus)]
    try:
        for names, fn in groups:
            if not any(a.want(n) for n in names):
                continue
            if wait > 0:
                wait_quiet(wait)
            t0 = time.monotonic()
            log(f"{', '.join(names)} ...")
            foreign = Foreign()
            try:
                fn()
            except Skipped as e:
                for n in names:
                    if a.want(n):
                        results["skipped"][n] = str(e)
                log(f"{', '.join(names)}: {e}")
            except (BenchError, OSError, subprocess.CalledProcessError) as e:
                for n in names:
                    if a.want(n) and n not in results["ratios"]:
                        results["errors"][n] = str(e)
                log(f"{', '.join(names)}: {e}")
            results["raw"].setdefault("seconds", {})[fn.__name__] = round(time.monotonic() - t0, 1)
            for n in names:
                results["foreign_cpu"][n] = round(foreign.share(), 3)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_after"] = os.getloadavg()[0]
    results["wall_s"] = round(time.monotonic() - t_start, 1)
    results["verdicts"] = {k: verdict(k, s) for k, s in results["ratios"].items()}
    print_table(results)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"bench: wrote {out} ({results['wall_s']:.0f} s)")
    if any(v > 0.10 for v in results["foreign_cpu"].values()):
        print("bench: note: other processes used the CPUs during this run (last column); "
              "ratios are measured side by side, but OpenMP and x264 suffer from sharing 2 "
              "cores: rerun on a quiet machine before trusting a SHORT")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
