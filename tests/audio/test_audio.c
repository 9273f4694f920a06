/*
 * test_audio.c - the reel audio timeline (src/media/audio.c) on real files.
 *
 * Sources are made at test time with the ffmpeg CLI (lavfi testsrc2 at 160x90
 * plus aevalsrc tones and pulses) into the folder given as argv[1]. Each test
 * parses an engine-shape job, lays it out, renders every sample through
 * reel_audio_read and checks what DESIGN section 3 promises: exact lengths,
 * pitch kept through atempo, silence for missing audio, unity-gain mono,
 * fades that dip to silence, crossfades that hold both signals, and sample
 * sync with the first video frame. Expected positions are computed here by
 * hand from the contract, not read back from the code under test.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/log.h>

#include "core/error.h"
#include "core/job.h"
#include "core/log.h"
#include "core/timeline.h"
#include "media/audio.h"

#define RATE 48000

static char fixdir[1024] = "fixtures";

static const char *fix(const char *name)
{
    static char paths[8][1200];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof(paths[0]), "%s/%s", fixdir, name);
    return p;
}

/* ---- fixtures -------------------------------------------------------------- */

static int run_ffmpeg(const char *args, const char *out)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "ffmpeg -nostdin -hide_banner -loglevel error -y %s '%s'", args,
             out);
    int ret = system(cmd);
    if (ret != 0)
        fprintf(stderr, "fixture failed: %s\n", cmd);
    return ret;
}

#define VIDEO(rate, dur) "-f lavfi -i testsrc2=s=160x90:r=" #rate ":d=" #dur " "
#define X264 "-c:v libx264 -preset ultrafast -pix_fmt yuv420p "
#define AAC "-c:a aac -b:a 192k "

static int make_fixtures(void **state)
{
    static const struct {
        const char *name, *args;
    } f[] = {
        {"tone1k.mp4",
         VIDEO(30,
               3) "-f lavfi -i \"aevalsrc='0.5*sin(2*PI*1000*t)':s=48000:c=stereo:d=3\" " X264 AAC},
        {"tone440.mp4",
         VIDEO(30,
               3) "-f lavfi -i \"aevalsrc='0.5*sin(2*PI*440*t)':s=48000:c=stereo:d=3\" " X264 AAC},
        {"noaudio.mp4", VIDEO(30, 3) X264},
        {"mono44k.mp4",
         VIDEO(30,
               3) "-f lavfi -i \"aevalsrc='0.5*sin(2*PI*440*t)':s=44100:c=mono:d=3\" " X264 AAC},
        /* 440 Hz before source time 1.0 s, 1000 Hz after: shows where segments cut */
        {"steps.mp4", VIDEO(30, 3) "-f lavfi -i "
                                   "\"aevalsrc='0.5*if(lt(t,1),sin(2*PI*440*t),sin(2*PI*1000*t))':"
                                   "s=48000:c=stereo:d=3\" " X264 AAC},
        /* 60 fps video, a 5 ms pulse at 1.0 s (AAC, video starts at 0) */
        {"sync60.mp4",
         VIDEO(60,
               3) "-f lavfi -i \"aevalsrc='0.8*between(t,1.0,1.005)':s=48000:c=stereo:d=3\" " X264
             AAC},
        /* 60 fps video that starts at 0.25 s, 44.1 kHz PCM with the pulse at
         * stream time 1.25 s = source time 1.0 s */
        {"sync60off.mkv",
         "-itsoffset 0.25 " VIDEO(
             60,
             3) "-f lavfi -i \"aevalsrc='0.8*between(t,1.25,1.255)':s=44100:c=stereo:d=3.25\" " X264
                "-c:a pcm_s16le "},
        /* 5.1 with a 1 kHz tone in the centre channel only */
        {"surround.mkv",
         VIDEO(30, 2) "-f lavfi -i "
                      "\"aevalsrc='0|0|0.5*sin(2*PI*1000*t)|0|0|0':s=48000:c=5.1:d=2\" " X264
                      "-c:a pcm_s16le "},
        /* 3 s of video, 1 s of audio */
        {"shortaudio.mp4",
         VIDEO(30,
               3) "-f lavfi -i \"aevalsrc='0.5*sin(2*PI*1000*t)':s=48000:c=stereo:d=1\" " X264 AAC},
        /* 10 s whose tone says the second: 300 Hz + 100 Hz per whole second */
        {"clock.mp4",
         VIDEO(30,
               10) "-f lavfi -i "
                   "\"aevalsrc='0.5*sin(2*PI*(300+100*floor(t))*t)':s=48000:c=stereo:d=10\" " X264
                       AAC},
        /* 2.5 s of 1 kHz whose timestamps jump 0.5 s forward at 1.0 s: a hole */
        {"gap.mkv",
         VIDEO(30, 3) "-f lavfi -i \"aevalsrc='0.5*sin(2*PI*1000*t)':s=48000:c=stereo:d=2.5\" "
                      "-af \"asetpts='PTS+if(gte(T,1),0.5/TB,0)'\" " X264 "-c:a pcm_s16le "},
        {"tone1k.mkv",
         VIDEO(30, 3) "-f lavfi -i \"aevalsrc='0.5*sin(2*PI*1000*t)':s=48000:c=stereo:d=3\" " X264
                      "-c:a libmp3lame -b:a 128k "},
    };
    char cmd[1200];
    (void)state;

    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", fixdir);
    if (system(cmd) != 0)
        return -1;
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        struct stat st;
        if (stat(fix(f[i].name), &st) == 0 && st.st_size > 0)
            continue;
        if (run_ffmpeg(f[i].args, fix(f[i].name)) != 0)
            return -1;
    }
    /* a damaged copy: 4 KiB of junk in the middle of the mkv */
    {
        struct stat st;
        FILE *in, *out;
        if (stat(fix("tone1k.mkv"), &st) != 0)
            return -1;
        in = fopen(fix("tone1k.mkv"), "rb");
        out = fopen(fix("corrupt.mkv"), "wb");
        if (!in || !out)
            return -1;
        char *buf = malloc((size_t)st.st_size);
        if (!buf || fread(buf, 1, (size_t)st.st_size, in) != (size_t)st.st_size)
            return -1;
        srand(7);
        for (long k = st.st_size / 2; k < st.st_size / 2 + 4096 && k < st.st_size; k++)
            buf[k] = (char)(rand() & 0xff);
        fwrite(buf, 1, (size_t)st.st_size, out);
        free(buf);
        fclose(in);
        fclose(out);
    }
    {
        FILE *g = fopen(fix("garbage.mp4"), "wb");
        if (!g)
            return -1;
        fputs("this is not a video file\n", g);
        fclose(g);
    }
    return 0;
}

/* Source time 0: the first decoded video frame's timestamp, as the video probe finds it. */
static double first_video_pts(const char *path)
{
    AVFormatContext *fmt = NULL;
    AVCodecContext *dec = NULL;
    AVPacket *pkt = av_packet_alloc();
    AVFrame *frame = av_frame_alloc();
    const AVCodec *codec = NULL;
    double t = 0.0;
    int vs;

    assert_int_equal(avformat_open_input(&fmt, path, NULL, NULL), 0);
    assert_true(avformat_find_stream_info(fmt, NULL) >= 0);
    vs = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    assert_true(vs >= 0);
    dec = avcodec_alloc_context3(codec);
    avcodec_parameters_to_context(dec, fmt->streams[vs]->codecpar);
    dec->pkt_timebase = fmt->streams[vs]->time_base;
    assert_int_equal(avcodec_open2(dec, codec, NULL), 0);
    for (;;) {
        int ret = avcodec_receive_frame(dec, frame);
        if (ret == 0) {
            t = (double)frame->best_effort_timestamp * av_q2d(fmt->streams[vs]->time_base);
            break;
        }
        assert_int_equal(ret, AVERROR(EAGAIN));
        ret = av_read_frame(fmt, pkt);
        if (ret < 0) {
            avcodec_send_packet(dec, NULL);
            continue;
        }
        if (pkt->stream_index == vs)
            avcodec_send_packet(dec, pkt);
        av_packet_unref(pkt);
    }
    av_frame_free(&frame);
    av_packet_free(&pkt);
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
    return t;
}

/* ---- rendering ------------------------------------------------------------- */

typedef struct Render {
    ReelJob *job;
    ReelLayout layout;
    float *l, *r;
    int64_t n;
    double seconds; /* wall time of the reads */
} Render;

static void render_free(Render *rd)
{
    free(rd->l);
    free(rd->r);
    reel_layout_uninit(&rd->layout);
    reel_job_free(&rd->job);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Parse, lay out and render a whole reel, reading `chunk` samples at a time. */
static void render_chunked(Render *rd, const char *json, int chunk)
{
    char err[REEL_ERRMSG_SIZE] = "";
    ReelAudioReel *ar = NULL;
    double vsp[16];
    int ret;

    memset(rd, 0, sizeof(*rd));
    if (reel_job_parse(&rd->job, json, NULL, NULL, err) < 0)
        fail_msg("parse: %s", err);
    assert_int_equal(reel_layout_init(&rd->layout, rd->job), 0);
    assert_true(rd->job->nb_clips <= 16);
    for (int i = 0; i < rd->job->nb_clips; i++)
        vsp[i] = first_video_pts(rd->job->clips[i].source);
    if (reel_audio_open(&ar, rd->job, &rd->layout, vsp, err) < 0)
        fail_msg("open: %s", err);
    rd->l = calloc((size_t)rd->layout.nb_samples + (size_t)chunk, sizeof(float));
    rd->r = calloc((size_t)rd->layout.nb_samples + (size_t)chunk, sizeof(float));
    assert_non_null(rd->l);
    assert_non_null(rd->r);
    double t0 = now_s();
    while ((ret = reel_audio_read(ar, rd->l + rd->n, rd->r + rd->n, chunk)) > 0) {
        assert_true(ret <= chunk);
        rd->n += ret;
        assert_true(rd->n <= rd->layout.nb_samples);
    }
    rd->seconds = now_s() - t0;
    if (ret < 0)
        fail_msg("read: %s", reel_audio_errmsg(ar));
    assert_int_equal(rd->n, rd->layout.nb_samples);
    /* the end stays the end */
    assert_int_equal(reel_audio_read(ar, rd->l, rd->r, chunk), 0);
    reel_audio_close(&ar);
    assert_null(ar);
}

static void render(Render *rd, const char *json)
{
    render_chunked(rd, json, 1021);
}

/* ---- signal measures ------------------------------------------------------- */

/* Amplitude of frequency f in x[a, b) (Goertzel, normalised: a full-scale sine of
 * amplitude A gives ~A when the window holds whole periods). */
static double tone_amp(const float *x, int64_t a, int64_t b, double f)
{
    double w = 2.0 * M_PI * f / RATE, c = 2.0 * cos(w), s1 = 0, s2 = 0;
    for (int64_t i = a; i < b; i++) {
        double s0 = x[i] + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    double re = s1 - s2 * cos(w), im = s2 * sin(w);
    return 2.0 * sqrt(re * re + im * im) / (double)(b - a);
}

static double rms(const float *x, int64_t a, int64_t b)
{
    double s = 0;
    for (int64_t i = a; i < b; i++)
        s += (double)x[i] * x[i];
    return sqrt(s / (double)(b - a));
}

static double peak(const float *x, int64_t a, int64_t b)
{
    double p = 0;
    for (int64_t i = a; i < b; i++)
        p = fmax(p, fabs(x[i]));
    return p;
}

/* Frequency from the zero-crossing rate of x[a, b). */
static double zc_freq(const float *x, int64_t a, int64_t b)
{
    int64_t n = 0;
    for (int64_t i = a + 1; i < b; i++)
        if ((x[i - 1] < 0) != (x[i] < 0))
            n++;
    return (double)n / 2.0 / ((double)(b - a) / RATE);
}

#define CLIP(src, extra) "{\"clipIndex\":%d,\"source\":\"%s\"," extra "}"

static char *jobf(const char *fmt, ...)
{
    static char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return buf;
}

/* ---- tests ----------------------------------------------------------------- */

/* Three clips, dissolve, several speeds: the sample count is the contract's, and
 * the samples do not depend on how the caller chunks its reads. */
static void test_total_count_and_chunking(void **state)
{
    (void)state;
    const char *json =
        jobf("{\"clips\":["
             "{\"clipIndex\":0,\"source\":\"%s\",\"trimRange\":{\"start\":0.2,\"end\":2.5},"
             " \"segments\":{\"boundaries\":[0,1,3],\"segmentSpeeds\":{\"1\":0.5}}},"
             "{\"clipIndex\":1,\"source\":\"%s\",\"trimRange\":{\"start\":0,\"end\":1.3}},"
             "{\"clipIndex\":2,\"source\":\"%s\",\"trimRange\":{\"start\":0.5,\"end\":2.9},"
             " \"segments\":{\"boundaries\":[0,1.7,3],\"segmentSpeeds\":{\"0\":3,\"1\":1.5}}}],"
             "\"transition\":{\"type\":\"dissolve\",\"duration\":0.5},\"output\":{\"fps\":30}}",
             fix("tone440.mp4"), fix("noaudio.mp4"), fix("steps.mp4"));
    /* By hand: clip 0 = 0.8 s + 1.5 s / 0.5 = 3.8 s = 114 frames; clip 1 = 39 frames;
     * clip 2 = 1.2 / 3 + 1.2 / 1.5 = 1.2 s = 36 frames. D = min(15, 57, 19) = 15 and
     * min(15, 19, 18) = 15: 114 + 39 + 36 - 30 = 159 frames = 254400 samples. */
    Render a, b, c;
    render_chunked(&a, json, 1021);
    assert_int_equal(a.layout.nb_frames, 159);
    assert_int_equal(a.n, 254400);
    render_chunked(&b, json, 7);
    render_chunked(&c, json, 48000);
    assert_int_equal(b.n, a.n);
    assert_int_equal(c.n, a.n);
    assert_memory_equal(a.l, b.l, (size_t)a.n * sizeof(float));
    assert_memory_equal(a.r, b.r, (size_t)a.n * sizeof(float));
    assert_memory_equal(a.l, c.l, (size_t)a.n * sizeof(float));
    /* not all silence */
    assert_true(rms(a.l, 0, a.n) > 0.1);
    render_free(&a);
    render_free(&b);
    render_free(&c);

    /* 29.97 fps: r = 1601.6 samples per frame, rounded at clip edges */
    Render d;
    render(&d,
           jobf("{\"clips\":[" CLIP(0, "\"trimRange\":{\"start\":0,\"end\":1.01}") "," CLIP(
                    1, "\"trimRange\":{\"start\":0,\"end\":1.01}") "],\"output\":{\"fps\":29.97}}",
                0, fix("tone1k.mp4"), 1, fix("tone440.mp4")));
    /* 1.01 s at 30000/1001 = 30.27 -> 30 frames each; 60 frames * 1601.6 = 96096 */
    assert_int_equal(d.layout.nb_frames, 60);
    assert_int_equal(d.n, 96096);
    assert_int_equal(d.layout.clips[1].audio_start, 48048);
    render_free(&d);
}

/* Speed 0.5 through atempo: twice as long, same pitch. */
static void test_atempo_keeps_pitch(void **state)
{
    (void)state;
    Render rd;
    render(&rd, jobf("{\"clips\":[" CLIP(
                         0, "\"trimRange\":{\"start\":0,\"end\":2},"
                            "\"segments\":{\"boundaries\":[0,3],"
                            "\"segmentSpeeds\":{\"0\":0.5}}") "],\"output\":{\"fps\":30}}",
                     0, fix("tone1k.mp4")));
    assert_int_equal(rd.n, 4 * RATE); /* 2 s at half speed = 120 frames */
    double f = zc_freq(rd.l, RATE / 10, rd.n - RATE / 10);
    assert_true(fabs(f - 1000.0) < 10.0);
    /* a tone at full level across the whole segment, to its last 10 ms */
    assert_true(fabs(rms(rd.l, RATE / 10, rd.n - RATE / 10) - 0.5 / sqrt(2)) < 0.03);
    assert_true(rms(rd.l, rd.n - RATE / 50, rd.n - RATE / 100) > 0.25);
    assert_true(tone_amp(rd.r, RATE, 2 * RATE, 500.0) < 0.05); /* not resampled down */
    render_free(&rd);
}

/* A source without audio gives exact zeros of its exact length. */
static void test_no_audio_is_silence(void **state)
{
    (void)state;
    Render rd;
    render(&rd, jobf("{\"clips\":[" CLIP(0, "\"trimRange\":{\"start\":0,\"end\":1}") "," CLIP(
                         1, "\"trimRange\":{\"start\":0.5,\"end\":2}") "],"
                                                                       "\"output\":{\"fps\":30}}",
                     0, fix("tone1k.mp4"), 1, fix("noaudio.mp4")));
    assert_int_equal(rd.n, RATE + 72000); /* 30 + 45 frames */
    assert_true(rms(rd.l, 0, RATE) > 0.3);
    for (int64_t i = RATE; i < rd.n; i++) {
        if (rd.l[i] != 0.0f || rd.r[i] != 0.0f)
            fail_msg("sample %lld is %g/%g, not silence", (long long)i, rd.l[i], rd.r[i]);
    }
    render_free(&rd);
}

/* Mono 44.1 kHz goes to both channels at unity gain (not -3 dB). */
static void test_mono_unity_gain(void **state)
{
    (void)state;
    Render rd;
    render(&rd,
           jobf("{\"clips\":[" CLIP(
                    0, "\"trimRange\":{\"start\":0.5,\"end\":2.5}") "],\"output\":{\"fps\":30}}",
                0, fix("mono44k.mp4")));
    assert_int_equal(rd.n, 2 * RATE);
    assert_memory_equal(rd.l, rd.r, (size_t)rd.n * sizeof(float));
    /* 440 Hz: 0.1 s holds 44 whole periods */
    double a = tone_amp(rd.l, RATE / 2, RATE / 2 + 4800, 440.0);
    assert_true(fabs(a - 0.5) < 0.02);
    assert_true(fabs(peak(rd.l, RATE / 2, RATE) - 0.5) < 0.03);
    render_free(&rd);
}

/* 5.1 with a centre-only tone: both sides carry it at -3 dB (the documented downmix). */
static void test_surround_downmix(void **state)
{
    (void)state;
    Render rd;
    render(&rd, jobf("{\"clips\":[" CLIP(
                         0, "\"trimRange\":{\"start\":0,\"end\":1.5}") "],\"output\":{\"fps\":30}}",
                     0, fix("surround.mkv")));
    assert_int_equal(rd.n, 72000);
    assert_memory_equal(rd.l, rd.r, (size_t)rd.n * sizeof(float));
    assert_true(fabs(tone_amp(rd.l, 24000, 28800, 1000.0) - 0.5 * M_SQRT1_2) < 0.01);
    render_free(&rd);
}

/* Fade (dip to black): gains ramp linearly and reach silence at the join. */
static void test_fade_dips_at_join(void **state)
{
    (void)state;
    Render rd;
    render(&rd, jobf("{\"clips\":[" CLIP(0, "\"trimRange\":{\"start\":0,\"end\":1}") "," CLIP(
                         1, "\"trimRange\":{\"start\":0,\"end\":1}") "],"
                                                                     "\"transition\":{\"type\":"
                                                                     "\"fade\",\"duration\":0.5},"
                                                                     "\"output\":{\"fps\":30}}",
                     0, fix("tone1k.mp4"), 1, fix("tone440.mp4")));
    /* no overlap: 60 frames; D = 15 frames = 24000 samples on each side of the join */
    assert_int_equal(rd.n, 2 * RATE);
    assert_int_equal(rd.layout.clips[1].audio_start, RATE);
    assert_true(rms(rd.l, RATE - 96, RATE + 96) < 0.005);
    assert_true(peak(rd.l, RATE - 48, RATE + 48) < 0.01);
    /* linear ramps: gain 1 before frame 15, 0.5 at frame 22.5, and mirrored after */
    double full = 0.5;
    assert_true(fabs(tone_amp(rd.l, 4800, 9600, 1000.0) - full) < 0.02);
    assert_true(fabs(tone_amp(rd.l, 36000 - 2400, 36000 + 2400, 1000.0) - 0.5 * full) < 0.02);
    assert_true(fabs(tone_amp(rd.l, 60000 - 2400, 60000 + 2400, 440.0) - 0.5 * full) < 0.02);
    assert_true(fabs(tone_amp(rd.l, 86400, 91200, 440.0) - full) < 0.02);
    /* the envelope is a straight line: 1/4 and 3/4 down the ramp */
    assert_true(fabs(tone_amp(rd.l, 30000 - 1200, 30000 + 1200, 1000.0) - 0.75 * full) < 0.03);
    assert_true(fabs(tone_amp(rd.l, 42000 - 1200, 42000 + 1200, 1000.0) - 0.25 * full) < 0.03);
    render_free(&rd);
}

/* Dissolve: clip 1 starts D frames early and the overlap holds both tones. */
static void test_dissolve_crossfade(void **state)
{
    (void)state;
    Render rd;
    render(&rd,
           jobf("{\"clips\":[" CLIP(0, "\"trimRange\":{\"start\":0,\"end\":1}") "," CLIP(
                    1, "\"trimRange\":{\"start\":0,\"end\":1}") "],"
                                                                "\"transition\":{\"type\":"
                                                                "\"dissolve\",\"duration\":0.5},"
                                                                "\"output\":{\"fps\":30}}",
                0, fix("tone440.mp4"), 1, fix("tone1k.mp4")));
    /* 30 + 30 - 15 frames; clip 1 starts at frame 15 = sample 24000 */
    assert_int_equal(rd.n, 72000);
    assert_int_equal(rd.layout.clips[1].audio_start, 24000);
    /* before the overlap: 440 only; middle: both at half; after: 1000 only */
    assert_true(fabs(tone_amp(rd.l, 4800, 9600, 440.0) - 0.5) < 0.02);
    assert_true(tone_amp(rd.l, 4800, 9600, 1000.0) < 0.01);
    assert_true(fabs(tone_amp(rd.l, 33600, 38400, 440.0) - 0.25) < 0.02);
    assert_true(fabs(tone_amp(rd.l, 33600, 38400, 1000.0) - 0.25) < 0.02);
    assert_true(fabs(tone_amp(rd.l, 62400, 67200, 1000.0) - 0.5) < 0.02);
    assert_true(tone_amp(rd.l, 62400, 67200, 440.0) < 0.01);
    /* a linear crossfade of two unrelated tones: each at half amplitude, so the
     * RMS in the middle is 0.25 (sqrt(2 * 0.25^2 / 2)), not silence, not 0.5 */
    assert_true(fabs(rms(rd.l, 33600, 38400) - 0.25) < 0.02);
    render_free(&rd);
}

/* A 60 fps source with audio: a pulse at source time 1.0 s lands on its sample. */
static int64_t pulse_at(const float *x, int64_t a, int64_t b)
{
    for (int64_t i = a; i < b; i++)
        if (fabs(x[i]) > 0.4)
            return i;
    return -1;
}

static void check_sync(const char *src, int64_t tolerance)
{
    Render rd;
    render(&rd, jobf("{\"clips\":[" CLIP(0, "\"trimRange\":{\"start\":0,\"end\":1}") "," CLIP(
                         1, "\"trimRange\":{\"start\":0,\"end\":2},"
                            "\"segments\":{\"boundaries\":[0,0.8,3],"
                            "\"segmentSpeeds\":{\"0\":2}}") "],\"output\":{\"fps\":30}}",
                     0, fix("tone440.mp4"), 1, src));
    /* clip 1 starts at sample 48000; its first segment (0.8 s at 2x) is 12 frames =
     * 19200 samples; the second reads from 0.8 s, so 1.0 s is 9600 samples in. */
    int64_t want = RATE + 19200 + 9600;
    assert_int_equal(rd.n, RATE + 19200 + 57600); /* 48 frames in clip 1 */
    int64_t got = pulse_at(rd.l, RATE, rd.n);
    if (getenv("AUDIO_TEST_VERBOSE"))
        fprintf(stderr, "%s: pulse at %lld, expected %lld\n", src, (long long)got, (long long)want);
    if (llabs(got - want) > tolerance)
        fail_msg("%s: pulse at sample %lld, expected %lld", src, (long long)got, (long long)want);
    render_free(&rd);
}

static void test_sync_60fps(void **state)
{
    (void)state;
    assert_true(fabs(first_video_pts(fix("sync60off.mkv")) - 0.25) < 0.002);
    check_sync(fix("sync60off.mkv"), 1); /* PCM 44.1 kHz, video starting at 0.25 s */
    check_sync(fix("sync60.mp4"), 4);    /* AAC: the codec may smear the edge a little */
}

/* Phase (radians) of a frequency-f sine in x[a, b), measured against sin(w (i - ref)). */
static double tone_phase(const float *x, int64_t a, int64_t b, double f, int64_t ref)
{
    double w = 2.0 * M_PI * f / RATE, re = 0, im = 0;
    for (int64_t i = a; i < b; i++) {
        re += x[i] * sin(w * (double)(i - ref));
        im += x[i] * cos(w * (double)(i - ref));
    }
    return atan2(im, re);
}

/* Speeds 2, 0.25 and 3: each segment is exactly its frames' samples long. The
 * source is 440 Hz before 1.0 s and 1000 Hz (phase 0 at 1.0 s) after, with a
 * boundary at 1.0 s: the speed-1 segment after the join must start exactly at
 * the join with the source's phase, and the changed segment keeps its pitch
 * and its level up to the join. */
static void check_step(double speed, double trim_start, int64_t join, int64_t total)
{
    Render rd;
    render(&rd, jobf("{\"clips\":[{\"clipIndex\":0,\"source\":\"%s\","
                     "\"trimRange\":{\"start\":%g,\"end\":2},"
                     "\"segments\":{\"boundaries\":[0,1,3],\"segmentSpeeds\":{\"0\":%g}}}],"
                     "\"output\":{\"fps\":30}}",
                     fix("steps.mp4"), trim_start, speed));
    assert_int_equal(rd.n, total);
    /* the changed segment: 440 Hz well before the join (atempo smears content by
     * up to one window, ~20 ms per stage, so not right at it), no gap at its end */
    double a440 = tone_amp(rd.l, join - 4800, join - 2400, 440.0);
    double a1k = tone_amp(rd.l, join - 4800, join - 2400, 1000.0);
    if (!(a440 > 0.4 && a1k < 0.05))
        fail_msg("speed %g: before the join 440 Hz %.3f, 1 kHz %.3f", speed, a440, a1k);
    if (rms(rd.l, join - 480, join) < 0.25)
        fail_msg("speed %g: the segment fades out before its end (rms %.3f)", speed,
                 rms(rd.l, join - 480, join));
    double f = zc_freq(rd.l, join / 4, join * 3 / 4);
    if (fabs(f - 440.0) > 8.0)
        fail_msg("speed %g: %.1f Hz in the segment, expected 440", speed, f);
    /* the next segment starts exactly at the join: 1 kHz in phase with source 1.0 s
     * (one sample late or early is 7.5 degrees; AAC at 192 kb/s keeps it within 0.1) */
    a1k = tone_amp(rd.l, join + 48, join + 1008, 1000.0);
    double ph = tone_phase(rd.l, join + 48, join + 1008, 1000.0, join) * 180.0 / M_PI;
    if (getenv("AUDIO_TEST_VERBOSE"))
        fprintf(stderr, "speed %g: join phase %.2f deg\n", speed, ph);
    if (!(a1k > 0.45 && fabs(ph) < 3.0))
        fail_msg("speed %g: after the join 1 kHz %.3f at phase %.1f deg", speed, a1k, ph);
    render_free(&rd);
}

static void test_speed_lengths(void **state)
{
    (void)state;
    /* 1 s at 2x = 15 frames = 24000 samples, then 1 s = 48000 */
    check_step(2.0, 0.0, 24000, 72000);
    /* 0.5 s at 0.25x = 60 frames = 96000 samples, then 48000 */
    check_step(0.25, 0.5, 96000, 144000);
    /* 1 s at 3x = 10 frames = 16000, then 48000 */
    check_step(3.0, 0.0, 16000, 64000);
    /* 0.9 s at 3x = 9 frames = 14400, then 48000 */
    check_step(3.0, 0.1, 14400, 62400);
}

/* Audio shorter than the video: silence for the missing part. */
static void test_short_audio_padded(void **state)
{
    (void)state;
    Render rd;
    render(&rd,
           jobf("{\"clips\":[" CLIP(
                    0, "\"trimRange\":{\"start\":0.5,\"end\":2.5}") "],\"output\":{\"fps\":30}}",
                0, fix("shortaudio.mp4")));
    assert_int_equal(rd.n, 2 * RATE);
    assert_true(rms(rd.l, 0, RATE / 2 - 2400) > 0.3);
    for (int64_t i = RATE / 2 + 2400; i < rd.n; i++)
        if (rd.l[i] != 0.0f || rd.r[i] != 0.0f)
            fail_msg("sample %lld is %g after the audio ended", (long long)i, rd.l[i]);
    render_free(&rd);
}

/* A clip deep into a long source seeks, and the tone says where it landed. */
static void test_seek_deep_and_back(void **state)
{
    (void)state;
    Render rd;
    /* clip 0 plays 8.2..9 (1100 Hz), clip 1 the same source 1.2..2 (400 Hz) */
    render(&rd, jobf("{\"clips\":[" CLIP(0, "\"trimRange\":{\"start\":8.2,\"end\":9}") "," CLIP(
                         1, "\"trimRange\":{\"start\":1.2,\"end\":2}") "],"
                                                                       "\"output\":{\"fps\":30}}",
                     0, fix("clock.mp4"), 1, fix("clock.mp4")));
    assert_int_equal(rd.n, 2 * 38400);
    /* the frequency at t is 300 + 100 floor(t) plus the chirp term; measure by zero crossings */
    double f0 = zc_freq(rd.l, 4800, 33600), f1 = zc_freq(rd.l, 38400 + 4800, 38400 + 33600);
    /* d/dt of (300 + 100k) t inside second k is 300 + 100k: 1100 Hz and 400 Hz */
    if (fabs(f0 - 1100.0) > 15.0 || fabs(f1 - 400.0) > 15.0)
        fail_msg("frequencies %.1f and %.1f, expected 1100 and 400", f0, f1);
    render_free(&rd);
}

/* At 1 fps a frame is 48000 samples, so frame rounding makes the next segment
 * start 0.4 s BEFORE where the previous read ended (beyond the rewind history:
 * a real seek back) and the content must still come from the right place. */
static void test_segment_rewind(void **state)
{
    (void)state;
    Render rd;
    render(&rd, jobf("{\"clips\":[" CLIP(
                         0, "\"trimRange\":{\"start\":0,\"end\":4},"
                            "\"segments\":{\"boundaries\":[0,1.6,4]}") "],\"output\":{\"fps\":1}}",
                     0, fix("clock.mp4")));
    /* segment 0: 1.6 s -> 2 frames = source [0, 2 s); segment 1: 2.4 s -> frames 2..4,
     * read from 1.6 s: 400 Hz for 0.4 s, then 500 Hz */
    assert_int_equal(rd.n, 4 * RATE);
    double f0 = zc_freq(rd.l, 60000, 90000);                 /* source 1.25..1.875: 400 Hz */
    double f1 = zc_freq(rd.l, 96000 + 960, 96000 + 18240);   /* 1.62..1.98: 400 Hz */
    double f2 = zc_freq(rd.l, 96000 + 20160, 96000 + 66240); /* 2.02..2.98: 500 Hz */
    if (fabs(f0 - 400) > 10 || fabs(f1 - 400) > 10 || fabs(f2 - 500) > 10)
        fail_msg("frequencies %.1f %.1f %.1f, expected 400 400 500", f0, f1, f2);
    render_free(&rd);
}

/* Clips shorter than a read chunk: many start and end inside one read, and a
 * dissolve of 2-frame clips gets D = 1: never more than two clips at once. */
static void test_tiny_clips(void **state)
{
    (void)state;
    for (int t = 0; t < 2; t++) {
        Render rd;
        const char *len = t == 0 ? "0.034" : "0.067"; /* 1 frame, 2 frames */
        char clip[5][512];
        for (int i = 0; i < 5; i++)
            snprintf(clip[i], sizeof(clip[i]),
                     "{\"clipIndex\":%d,\"source\":\"%s\",\"trimRange\":{\"start\":%d,"
                     "\"end\":%d%s}}",
                     i, fix(i == 2 ? "noaudio.mp4" : "tone1k.mp4"), i % 2, i % 2, len + 1);
        render_chunked(&rd,
                       jobf("{\"clips\":[%s,%s,%s,%s,%s],\"transition\":{\"type\":"
                            "\"%s\",\"duration\":0.5},\"output\":{\"fps\":30}}",
                            clip[0], clip[1], clip[2], clip[3], clip[4],
                            t == 0 ? "fade" : "dissolve"),
                       48000);
        if (t == 0) {
            /* 1-frame clips: D = 0, back to back; clip 2 has no audio */
            assert_int_equal(rd.n, 5 * 1600);
            assert_true(rms(rd.l, 0, 3200) > 0.3);
            assert_true(peak(rd.l, 3200, 4800) == 0.0);
            assert_true(rms(rd.l, 4800, 8000) > 0.3);
        } else {
            /* 2-frame clips, D = 1: 10 - 4 frames; clip 2 covers frames 2..4 with
             * weights 0 and 1/1 ... it only ever overlaps one neighbour at a time */
            assert_int_equal(rd.layout.clips[1].d_in, 1);
            assert_int_equal(rd.n, 6 * 1600);
            assert_true(rms(rd.l, 0, 1600) > 0.3);
        }
        render_free(&rd);
    }
}

/* A hole in the audio timestamps is silence, and what follows keeps its time. */
static void test_timestamp_gap(void **state)
{
    (void)state;
    Render rd;
    int level = reel_log_get_level();
    reel_log_set_level(REEL_LOG_QUIET);
    render(&rd, jobf("{\"clips\":[" CLIP(
                         0, "\"trimRange\":{\"start\":0,\"end\":3}") "],\"output\":{\"fps\":30}}",
                     0, fix("gap.mkv")));
    reel_log_set_level(level);
    assert_int_equal(rd.n, 3 * RATE);
    /* packets of 1024: the last before the jump ends at 47 * 1024 = 48128; the next
     * one is stamped 1.503 s (Matroska rounds to ms) = sample 72144 */
    assert_true(fabs(tone_amp(rd.l, 38400, 43200, 1000.0) - 0.5) < 0.01);
    assert_true(peak(rd.l, 48128, 72144) == 0.0);
    assert_true(peak(rd.r, 48128, 72144) == 0.0);
    assert_true(fabs(peak(rd.l, 72144, 72144 + 480) - 0.5) < 0.01);
    /* 2.5 s of audio shifted by 0.5 s ends at 3 s: tone to the end */
    assert_true(fabs(tone_amp(rd.l, 3 * RATE - 4800, 3 * RATE, 1000.0) - 0.5) < 0.01);
    render_free(&rd);
}

/* A damaged stream mid-way: no error, exact length, the good part plays. */
static void test_corrupt_stream_is_silence(void **state)
{
    (void)state;
    Render rd;
    int level = reel_log_get_level();
    reel_log_set_level(REEL_LOG_QUIET);
    render(&rd, jobf("{\"clips\":[" CLIP(
                         0, "\"trimRange\":{\"start\":0,\"end\":3}") "],\"output\":{\"fps\":30}}",
                     0, fix("corrupt.mkv")));
    reel_log_set_level(level);
    assert_int_equal(rd.n, 3 * RATE);
    assert_true(fabs(tone_amp(rd.l, 4800, 9600, 1000.0) - 0.5) < 0.03);
    render_free(&rd);
}

/* An unreadable source fails at open with a message naming the file. */
static void test_unreadable_source(void **state)
{
    (void)state;
    const char *bad[] = {"/nonexistent/clipreel/missing.mp4", fix("garbage.mp4")};
    int level = reel_log_get_level();
    reel_log_set_level(REEL_LOG_QUIET);
    for (int i = 0; i < 2; i++) {
        char err[REEL_ERRMSG_SIZE] = "";
        ReelJob *job = NULL;
        ReelLayout layout;
        ReelAudioReel *ar = NULL;
        double vsp[2] = {0, 0};
        const char *json =
            jobf("{\"clips\":[" CLIP(0, "\"trimRange\":{\"start\":0,\"end\":1}") "," CLIP(
                     1, "\"trimRange\":{\"start\":0,\"end\":1}") "],\"output\":{\"fps\":30}}",
                 0, fix("tone1k.mp4"), 1, bad[i]);
        assert_int_equal(reel_job_parse(&job, json, NULL, NULL, err), 0);
        assert_int_equal(reel_layout_init(&layout, job), 0);
        assert_true(reel_audio_open(&ar, job, &layout, vsp, err) < 0);
        assert_null(ar);
        if (!strstr(err, bad[i]) || !strstr(err, "clipIndex=1"))
            fail_msg("message does not name the file and clip: %s", err);
        reel_layout_uninit(&layout);
        reel_job_free(&job);
    }
    reel_log_set_level(level);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_total_count_and_chunking),
        cmocka_unit_test(test_atempo_keeps_pitch),
        cmocka_unit_test(test_no_audio_is_silence),
        cmocka_unit_test(test_mono_unity_gain),
        cmocka_unit_test(test_surround_downmix),
        cmocka_unit_test(test_fade_dips_at_join),
        cmocka_unit_test(test_dissolve_crossfade),
        cmocka_unit_test(test_sync_60fps),
        cmocka_unit_test(test_speed_lengths),
        cmocka_unit_test(test_short_audio_padded),
        cmocka_unit_test(test_seek_deep_and_back),
        cmocka_unit_test(test_segment_rewind),
        cmocka_unit_test(test_tiny_clips),
        cmocka_unit_test(test_timestamp_gap),
        cmocka_unit_test(test_corrupt_stream_is_silence),
        cmocka_unit_test(test_unreadable_source),
    };
    if (argc > 1)
        snprintf(fixdir, sizeof(fixdir), "%s", argv[1]);
    if (system("ffmpeg -version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "ffmpeg CLI not found: skipping the audio tests\n");
        return 77;
    }
    av_log_set_level(AV_LOG_QUIET);
    return cmocka_run_group_tests(tests, make_fixtures, NULL);
}
