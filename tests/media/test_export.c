/*
 * test_export.c - reel_export_run on generated sources, judged by ffprobe and by
 * decoded pixels and samples: sizes, frame counts and durations exactly as the
 * timeline gives them; audio length; chapters in the MP4 and the .vtt; moov
 * before mdat; a moving marker landing where the crop keyframes put it; dissolve
 * and fade frames; a 60 fps source at its real speed; silence for a clip
 * without audio; rotation; bad sources failing with nothing written, the first
 * bad clip in job order named though the sources are probed at once; an
 * output that cannot be created stopping the stages already running.
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
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>

#include "core/error.h"
#include "core/job.h"
#include "core/log.h"
#include "core/timeline.h"
#include "media/export.h"
#include "media_util.h"






static int export_to(ReelJob *job, const char *out, char *err)
{
    ReelExportOptions o = {0};
    o.output_path = out;
    return reel_export_run(job, &o, NULL, err);
}

static void export_ok(ReelJob *job, const char *out)
{
    char err[REEL_ERRMSG_SIZE] = "";
    if (export_to(job, out, err) < 0)
        fail_msg("export failed: %s", err);
}




/* Decoded frames of a file, as RGB24 (BT.709 limited converted), by index. */
typedef struct Frames {
    int w, h, count;
    uint8_t **rgb; /* rgb[i] or NULL when not kept */
} Frames;

static Frames decode_frames(const char *path, const int *keep, int nkeep)
{
    AVFormatContext *fmt = NULL;
    Frames fr = {0};
    assert_int_equal(avformat_open_input(&fmt, path, NULL, NULL), 0);
    assert_true(avformat_find_stream_info(fmt, NULL) >= 0);
    const AVCodec *codec;
    int st = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    assert_true(st >= 0);
    AVCodecContext *dec = avcodec_alloc_context3(codec);
    avcodec_parameters_to_context(dec, fmt->streams[st]->codecpar);
    assert_int_equal(avcodec_open2(dec, codec, NULL), 0);
    AVPacket *pkt = av_packet_alloc();
    AVFrame *f = av_frame_alloc();
    struct SwsContext *sws = NULL;
    fr.rgb = calloc(100000, sizeof(*fr.rgb));
    int eof = 0;
    while (!eof) {
        if (av_read_frame(fmt, pkt) < 0) {
            avcodec_send_packet(dec, NULL);
            eof = 1;
        } else {
            if (pkt->stream_index == st)
                avcodec_send_packet(dec, pkt);
            av_packet_unref(pkt);
        }
        while (avcodec_receive_frame(dec, f) == 0) {
            int idx = fr.count++, want = 0;
            for (int k = 0; k < nkeep; k++)
                want |= keep[k] == idx;
            fr.w = f->width, fr.h = f->height;
            if (want && idx < 100000) {
                if (!sws) {
                    sws = sws_getContext(f->width, f->height, f->format, f->width, f->height,
                                         AV_PIX_FMT_RGB24, SWS_BICUBIC | SWS_ACCURATE_RND |
                                         SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
                    sws_setColorspaceDetails(sws, sws_getCoefficients(SWS_CS_ITU709), 0,
                                             sws_getCoefficients(SWS_CS_ITU709), 1, 0, 1 << 16,
                                             1 << 16);
                }
                fr.rgb[idx] = malloc((size_t)f->width * f->height * 3);
                uint8_t *d[4] = {fr.rgb[idx]};
                int ds[4] = {f->width * 3};
                sws_scale(sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, d, ds);
            }
        }
    }
    sws_freeContext(sws);
    av_frame_free(&f);
    av_packet_free(&pkt);
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
    return fr;
}

static void frames_free(Frames *fr)
{
    for (int i = 0; i < 100000; i++)
        free(fr->rgb[i]);
    free(fr->rgb);
}

static const uint8_t *px(const Frames *fr, int i, int x, int y)
{
    assert_non_null(fr->rgb[i]);
    return fr->rgb[i] + ((size_t)y * fr->w + x) * 3;
}

/* Decoded audio: total samples (per channel) and RMS over [a, b). */
static int64_t audio_samples(const char *path, int64_t a, int64_t b, double *rms)
{
    AVFormatContext *fmt = NULL;
    assert_int_equal(avformat_open_input(&fmt, path, NULL, NULL), 0);
    assert_true(avformat_find_stream_info(fmt, NULL) >= 0);
    const AVCodec *codec;
    int st = av_find_best_stream(fmt, AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
    assert_true(st >= 0);
    AVCodecContext *dec = avcodec_alloc_context3(codec);
    avcodec_parameters_to_context(dec, fmt->streams[st]->codecpar);
    assert_int_equal(avcodec_open2(dec, codec, NULL), 0);
    AVPacket *pkt = av_packet_alloc();
    AVFrame *f = av_frame_alloc();
    int64_t pos = 0;
    double acc = 0;
    int64_t cnt = 0;
    int eof = 0;
    /* the encoder's priming samples are trimmed by the edit list: skip them */
    int64_t skip = fmt->streams[st]->codecpar->initial_padding;
    while (!eof) {
        if (av_read_frame(fmt, pkt) < 0) {
            avcodec_send_packet(dec, NULL);
            eof = 1;
        } else {
            if (pkt->stream_index == st)
                avcodec_send_packet(dec, pkt);
            av_packet_unref(pkt);
        }
        while (avcodec_receive_frame(dec, f) == 0) {
            for (int i = 0; i < f->nb_samples; i++) {
                if (skip > 0) {
                    skip--;
                    continue;
                }
                if (pos >= a && pos < b) {
                    for (int c = 0; c < 2; c++) {
                        double v = ((float *)f->data[c])[i];
                        acc += v * v;
                        cnt++;
                    }
                }
                pos++;
            }
        }
    }
    if (rms)
        *rms = cnt ? sqrt(acc / cnt) : 0;
    av_frame_free(&f);
    av_packet_free(&pkt);
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
    return pos;
}

static int moov_before_mdat(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char h[8];
    long off = 0;
    int moov = -1, mdat = -1, i = 0;
    assert_non_null(f);
    while (fseek(f, off, SEEK_SET) == 0 && fread(h, 1, 8, f) == 8) {
        uint32_t size = (uint32_t)h[0] << 24 | h[1] << 16 | h[2] << 8 | h[3];
        if (!memcmp(h + 4, "moov", 4))
            moov = i;
        if (!memcmp(h + 4, "mdat", 4))
            mdat = i;
        if (size < 8)
            break;
        off += size;
        i++;
    }
    fclose(f);
    return moov >= 0 && mdat >= 0 && moov < mdat;
}


/* ---- tests ------------------------------------------------------------------ */

static void test_reel_structure(void **state)
{
    gen("a30.mp4", "testsrc2=size=320x240:rate=30", "sine=frequency=440:sample_rate=44100", 3);
    gen("b25.mp4", "testsrc=size=160x120:rate=25", "sine=frequency=880:sample_rate=48000", 2);
    const char *json =
        "{\"clips\":[{\"clipIndex\":3,\"source\":\"b25.mp4\",\"fileName\":\"second.mp4\"},"
        "{\"clipIndex\":1,\"source\":\"a30.mp4\",\"clipName\":\"First\","
        "\"trimRange\":{\"start\":0.5,\"end\":2.5},"
        "\"segments\":{\"boundaries\":[0,1,2,3],\"segmentSpeeds\":{\"1\":0.5}},"
        "\"cropKeyframes\":[{\"time\":0.5,\"x\":10,\"y\":10,\"width\":90,\"height\":160},"
        "{\"time\":2.5,\"x\":200,\"y\":60,\"width\":90,\"height\":160}]}],"
        "\"transition\":{\"type\":\"dissolve\",\"duration\":0.4},"
        "\"output\":{\"width\":180,\"height\":320,\"upscale\":{\"mode\":\"off\"}}}";
    ReelJob *job = job_of(json);
    const char *out = data("structure.mp4");
    export_ok(job, out);

    ReelLayout lay;
    assert_int_equal(reel_layout_init(&lay, job), 0);
    /* clip "First": 0.5 s at 1x + 1 s at 0.5x + 0.5 s = 3 s = 90 frames; the 25 fps clip 60 */
    assert_int_equal(lay.clips[0].nb_frames, 90);
    assert_int_equal(lay.clips[1].nb_frames, 60);
    assert_int_equal(lay.clips[0].d_out, 12);
    assert_int_equal(lay.nb_frames, 138);

    json_t *p = ffprobe(out);
    json_t *v = stream_of(p, "video"), *a = stream_of(p, "audio");
    assert_non_null(v);
    assert_non_null(a);
    assert_int_equal((int)jnum(v, "width"), 180);
    assert_int_equal((int)jnum(v, "height"), 320);
    assert_string_equal(json_string_value(json_object_get(v, "r_frame_rate")), "30/1");
    assert_string_equal(json_string_value(json_object_get(v, "pix_fmt")), "yuv420p");
    assert_string_equal(json_string_value(json_object_get(v, "color_space")), "bt709");
    assert_int_equal((int)jnum(v, "nb_read_frames"), 138);
    double vdur = jnum(v, "duration"), adur = jnum(a, "duration");
    assert_true(fabs(vdur - 138 / 30.0) < 1e-3);
    assert_true(fabs(adur - vdur) <= 1024.0 / 48000 + 1e-6);
    assert_int_equal((int)jnum(a, "sample_rate"), 48000);
    assert_int_equal((int)jnum(a, "channels"), 2);
    /* decoded audio length in samples: the reel's, within one AAC frame */
    int64_t ns = audio_samples(out, 0, 0, NULL);
    assert_true(llabs(ns - lay.nb_samples) <= 1024);

    json_t *ch = json_object_get(p, "chapters");
    assert_int_equal(json_array_size(ch), 2);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(ch, 0), "tags"), "title")),
                        "First");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(ch, 1), "tags"), "title")),
                        "second");
    /* the second chapter starts where its dissolve begins: frame 78 */
    assert_true(fabs(jnum(json_array_get(ch, 1), "start_time") - 78 / 30.0) < 1e-3);
    assert_true(fabs(jnum(json_array_get(ch, 1), "end_time") - 138 / 30.0) < 1e-3);
    json_decref(p);

    char *vtt = slurp(data("structure.chapters.vtt"));
    assert_non_null(vtt);
    assert_non_null(strstr(vtt, "WEBVTT"));
    assert_non_null(strstr(vtt, "00:00:00.000 --> 00:00:02.600\nFirst"));
    assert_non_null(strstr(vtt, "00:00:02.600 --> 00:00:04.600\nsecond"));
    assert_true(moov_before_mdat(out));
    reel_layout_uninit(&lay);
    reel_job_free(&job);
}

/* Chapter titles as typed, whatever they hold: in the .vtt escaped as cue text
 * (no "-->" to end a cue, no tags, no blank line), whole (no byte cut from a
 * long UTF-8 title); in the MP4 as typed */
static void test_chapter_titles(void **state)
{
    char name[2048] = "<b>Tom & Jerry</b> --> \\\"go\\\"\\nnext ";
    char want_vtt[4096] = "&lt;b&gt;Tom &amp; Jerry&lt;/b&gt; --&gt; \"go\" next ";
    char want_mp4[2048] = "<b>Tom & Jerry</b> --> \"go\"\nnext ";
    char json[4096];

    (void)state;
    for (int i = 0; i < 300; i++) { /* 600 bytes of "é" */
        strcat(name, "\xc3\xa9");
        strcat(want_vtt, "\xc3\xa9");
        strcat(want_mp4, "\xc3\xa9");
    }
    gen("a30.mp4", "testsrc2=size=320x240:rate=30", "sine=frequency=440:sample_rate=44100", 3);
    snprintf(json, sizeof(json),
             "{\"clips\":[{\"source\":\"a30.mp4\",\"clipName\":\"%s\",\"trimRange\":"
             "{\"start\":0,\"end\":0.5}},{\"source\":\"a30.mp4\",\"clipName\":\"B\","
             "\"trimRange\":{\"start\":0,\"end\":0.5}}],\"output\":{\"width\":160,"
             "\"height\":120,\"upscale\":{\"mode\":\"off\"}}}",
             name);
    ReelJob *job = job_of(json);
    export_ok(job, data("titles.mp4"));
    char *vtt = slurp(data("titles.chapters.vtt"));
    assert_non_null(vtt);
    char cue[8192];
    snprintf(cue, sizeof(cue), "00:00:00.000 --> 00:00:00.500\n%s\n\nchapter-2\n", want_vtt);
    if (!strstr(vtt, cue))
        fail_msg("want the cue\n%s\nin\n%s", cue, vtt);
    int arrows = 0;
    for (const char *p = vtt; (p = strstr(p, "-->")); p++)
        arrows++;
    assert_int_equal(arrows, 2); /* the two timing lines' */
    json_t *p = ffprobe(data("titles.mp4"));
    json_t *ch = json_object_get(p, "chapters");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(json_array_get(ch, 0), "tags"), "title")),
        want_mp4);
    json_decref(p);
    reel_job_free(&job);
}

/* Weight of a pixel for a marker's centroid: luma (a white marker) or blue
 * minus green (a marker that differs from the grey around it only in Cb). */
static double marker_weight(const uint8_t *p, int chroma)
{
    double l = chroma ? (double)p[2] - p[1] : p[1];
    return l > (chroma ? 30 : 60) ? l : 0;
}

/* A marker in a source lands where the crop keyframes put it (error <= 1 px
 * after scaling), in 5 frames of the output. */
static void check_marker(const char *source, const char *crop_json, int chroma)
{
    char json[1024];
    snprintf(json, sizeof(json),
             "{\"clips\":[{\"source\":\"%s\",\"cropKeyframes\":[%s]}],"
             "\"output\":{\"width\":320,\"height\":240,\"include_audio\":false,"
             "\"upscale\":{\"mode\":\"off\"}}}",
             source, crop_json);
    ReelJob *job = job_of(json);
    char out[1200];
    snprintf(out, sizeof(out), "%s", data("marker_out.mp4"));
    export_ok(job, out);
    int keep[] = {0, 10, 25, 40, 57};
    Frames fr = decode_frames(out, keep, 5);
    Frames src = decode_frames(data(source), keep, 5); /* where the marker really is */
    assert_int_equal(fr.count, 60);
    for (int k = 0; k < 5; k++) {
        int n = keep[k];
        double t = n / 30.0; /* 30 fps source at speed 1: output n shows source n */
        ReelRect r = reel_crop_at(&job->clips[0], t, 320, 240, 9, 16);
        double c[2][2];
        const Frames *fs[2] = {&src, &fr};
        for (int i = 0; i < 2; i++) {
            double sx = 0, sy = 0, sw = 0;
            for (int y = 0; y < fs[i]->h; y++)
                for (int x = 0; x < fs[i]->w; x++) {
                    double l = marker_weight(px(fs[i], n, x, y), chroma);
                    sx += x * l, sy += y * l, sw += l;
                }
            assert_true(sw > 0);
            c[i][0] = sx / sw, c[i][1] = sy / sw;
        }
        /* pixel centres aligned: out = (src - crop + 0.5) * scale - 0.5 */
        double ex = (c[0][0] - r.x + 0.5) * 320.0 / r.width - 0.5;
        double ey = (c[0][1] - r.y + 0.5) * 240.0 / r.height - 0.5;
        if (fabs(c[1][0] - ex) > 1.0 || fabs(c[1][1] - ey) > 1.0)
            fail_msg("%s frame %d: marker at %.2f,%.2f, expected %.2f,%.2f (crop %d,%d %dx%d)",
                     source, n, c[1][0], c[1][1], ex, ey, r.x, r.y, r.width, r.height);
    }
    frames_free(&src);
    frames_free(&fr);
    reel_job_free(&job);
}

static const char *MARKER_CROPS = "{\"time\":0,\"x\":0,\"y\":10,\"width\":160,\"height\":120},"
                                  "{\"time\":1.9,\"x\":150,\"y\":100,\"width\":160,"
                                  "\"height\":120}";

static void test_marker_follows_crop(void **state)
{
    /* an 8x8 white square moving 3 px right and 2 px down per frame; untagged
     * (BT.601): the RGB path */
    gen("marker.mp4",
        "color=black:s=320x240:r=30:d=2[bg];color=white:s=8x8:r=30:d=2[fg];"
        "[bg][fg]overlay=x=20+3*n:y=40+2*n",
        NULL, 2);
    check_marker("marker.mp4", MARKER_CROPS, 0);
}

static void test_marker_yuv_path(void **state)
{
    /* BT.709 sources are cropped and scaled in YUV. The crop moves through odd
     * and even offsets: a white square (luma) and a square that differs from
     * the grey around it only in Cb (chroma siting) must both land exactly. */
    struct stat sb;
    if (stat(data("marker709.mp4"), &sb) != 0)
        sh("ffmpeg -v error -y -f lavfi -i \"color=black:s=320x240:r=30:d=2[bg];"
           "color=white:s=8x8:r=30:d=2[fg];[bg][fg]overlay=x=20+3*n:y=40+2*n\" -vf "
           "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p -colorspace bt709 "
           "-color_primaries bt709 -color_trc bt709 -c:v libx264 -preset veryfast -crf 4 %s",
           data("marker709.mp4"));
    if (stat(data("chroma709.mp4"), &sb) != 0)
        sh("ffmpeg -v error -y -f lavfi -i \"nullsrc=s=320x240:r=30:d=2,format=yuv420p,"
           "geq=lum=128:cb='if(between(2*X,20+3*N,35+3*N)*between(2*Y,40+2*N,55+2*N),220,128)'"
           ":cr=128\" -colorspace bt709 -color_primaries bt709 -color_trc bt709 -c:v libx264 "
           "-preset veryfast -crf 4 %s",
           data("chroma709.mp4"));
    check_marker("marker709.mp4", MARKER_CROPS, 0);
    check_marker("chroma709.mp4", MARKER_CROPS, 1);
    /* the same with a crop that never moves to an even offset */
    static const char *odd = "{\"time\":0,\"x\":11,\"y\":13,\"width\":160,\"height\":120},"
                             "{\"time\":1.9,\"x\":141,\"y\":103,\"width\":160,"
                             "\"height\":120}";
    check_marker("marker709.mp4", odd, 0);
    check_marker("chroma709.mp4", odd, 1);
}

static void test_dissolve_and_fade(void **state)
{
    gen("red.mp4", "color=red:s=160x120:r=30", "sine=frequency=440:sample_rate=48000", 1);
    gen("blue.mp4", "color=blue:s=160x120:r=30", "sine=frequency=1000:sample_rate=48000", 1);
    const char *tpl = "{\"clips\":[{\"source\":\"red.mp4\"},{\"source\":\"blue.mp4\"}],"
                      "\"transition\":{\"type\":\"%s\",\"duration\":0.5},"
                      "\"output\":{\"width\":160,\"height\":120,\"upscale\":{\"mode\":\"off\"}}}";
    char json[1024];

    /* dissolve: D = 15, clip 2 starts at frame 15; reel frame 22 = red 22 + blue 7 */
    snprintf(json, sizeof(json), tpl, "dissolve");
    ReelJob *job = job_of(json);
    export_ok(job, data("dissolve.mp4"));
    int keep[] = {5, 22, 40};
    Frames fr = decode_frames(data("dissolve.mp4"), keep, 3);
    assert_int_equal(fr.count, 45);
    const uint8_t *mid = px(&fr, 22, 80, 60);
    double wr = 8.0 / 15, wb = 7.0 / 15;
    assert_true(fabs(mid[0] - 255 * wr) < 12);
    assert_true(fabs(mid[2] - 255 * wb) < 12);
    assert_true(px(&fr, 5, 80, 60)[0] > 240 && px(&fr, 5, 80, 60)[2] < 15);
    assert_true(px(&fr, 40, 80, 60)[2] > 240 && px(&fr, 40, 80, 60)[0] < 15);
    frames_free(&fr);
    /* the audio crossfades: both tones in the overlap, not silent */
    double rms;
    audio_samples(data("dissolve.mp4"), 18 * 1600, 27 * 1600, &rms);
    assert_true(rms > 0.03); /* lavfi sine: amplitude 1/8, RMS 0.088 */
    reel_job_free(&job);

    /* fade: length kept (60 frames), dark around the join, first frame of clip 2 black */
    snprintf(json, sizeof(json), tpl, "fade");
    job = job_of(json);
    export_ok(job, data("fade.mp4"));
    json_t *p = ffprobe(data("fade.mp4"));
    assert_int_equal((int)jnum(stream_of(p, "video"), "nb_read_frames"), 60); /* 30 + 30 */
    json_decref(p);
    /* the audio dips to silence at the join (frames 29-30) and is back after */
    double join, after;
    audio_samples(data("fade.mp4"), 29 * 1600 + 800, 30 * 1600 + 800, &join);
    audio_samples(data("fade.mp4"), 50 * 1600, 55 * 1600, &after);
    assert_true(join < 0.2 * after);
    reel_job_free(&job);
}

static void test_fade_dark(void **state)
{
    gen("white.mp4", "color=white:s=160x120:r=30", NULL, 1);
    ReelJob *job = job_of("{\"clips\":[{\"source\":\"white.mp4\"},{\"source\":\"white.mp4\"}],"
                          "\"transition\":{\"type\":\"fade\",\"duration\":0.5},"
                          "\"output\":{\"width\":160,\"height\":120,\"upscale\":{\"mode\":\"off\"}}}");
    export_ok(job, data("fadew.mp4"));
    int keep[] = {5, 22, 29, 30, 37, 55};
    Frames fr = decode_frames(data("fadew.mp4"), keep, 6);
    assert_int_equal(fr.count, 60);
    assert_true(px(&fr, 5, 80, 60)[1] > 240);          /* before the fade */
    assert_true(fabs(px(&fr, 22, 80, 60)[1] - 255 * 8.0 / 15) < 12); /* fading out */
    assert_true(px(&fr, 29, 80, 60)[1] < 30);          /* last frame of clip 1: 1/15 */
    assert_true(px(&fr, 30, 80, 60)[1] < 6);           /* first frame of clip 2: black */
    assert_true(fabs(px(&fr, 37, 80, 60)[1] - 255 * 7.0 / 15) < 12); /* fading in */
    assert_true(px(&fr, 55, 80, 60)[1] > 240);
    frames_free(&fr);
    reel_job_free(&job);
}

static void test_60fps_real_speed(void **state)
{
    /* luma = 16 + 1.5 * source frame number: output frame n at 30 fps must show
     * source frame 2n, not n */
    gen("count60.mp4", "color=black:s=64x64:r=60,geq=lum='16+1.5*N':cb=128:cr=128", NULL, 2);
    ReelJob *job = job_of("{\"clips\":[{\"source\":\"count60.mp4\"}],\"globalAspectRatio\":\"1:1\","
                          "\"output\":{\"width\":64,\"height\":64,\"crf\":1,"
                          "\"include_audio\":false,\"upscale\":{\"mode\":\"off\"}}}");
    export_ok(job, data("count60_out.mp4"));
    int keep[] = {3, 20, 45};
    Frames fr = decode_frames(data("count60_out.mp4"), keep, 3);
    assert_int_equal(fr.count, 60); /* 2 s at 30 fps */
    for (int k = 0; k < 3; k++) {
        int n = keep[k];
        /* back to limited-range luma from the decoded RGB grey */
        double y = 16 + px(&fr, n, 32, 32)[1] * 219.0 / 255.0;
        double want = 16 + 1.5 * (2 * n);
        if (fabs(y - want) > 3)
            fail_msg("output frame %d shows luma %.1f, expected %.1f (source frame %d)", n, y,
                     want, 2 * n);
    }
    frames_free(&fr);
    reel_job_free(&job);
}

/* A 64x64 reel at 30 fps of source `name` (0.5 s to 2.0 s of it when trimmed),
 * near lossless, into data(out) */
static void export_counter(const char *name, int trimmed, char *out, size_t size)
{
    char json[512];
    snprintf(json, sizeof(json),
             "{\"clips\":[{\"source\":\"%s\"%s}],\"globalAspectRatio\":\"1:1\",\"output\":"
             "{\"width\":64,\"height\":64,\"fps\":30,\"crf\":1,\"include_audio\":false,"
             "\"upscale\":{\"mode\":\"off\"}}}",
             name, trimmed ? ",\"trimRange\":{\"start\":0.5,\"end\":2.0}" : "");
    snprintf(out, size, "%s_%s.mp4", name, trimmed ? "trim" : "reel");
    ReelJob *job = job_of(json);
    export_ok(job, data(out));
    reel_job_free(&job);
}

/* Every frame of the counter reel data(out) (luma = 16 + 3 * source frame
 * number, read from its Y plane) shows source frame first + its number, and
 * there are `count` of them */
static void assert_counter_frames(const char *out, const char *what, int first, int count)
{
    char cmd[1024];
    static uint8_t frame[64 * 64 * 3 / 2];
    int n = 0;

    snprintf(cmd, sizeof(cmd), "ffmpeg -v error -i %s -f rawvideo -pix_fmt yuv420p -", data(out));
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    while (fread(frame, 1, sizeof(frame), f) == sizeof(frame)) {
        int y = frame[32 * 64 + 32];
        if (abs(y - (16 + 3 * (first + n))) > 1)
            fail_msg("%s: output frame %d shows source frame %.1f, not %d", what, n, (y - 16) / 3.0,
                     first + n);
        n++;
    }
    assert_int_equal(pclose(f), 0);
    assert_int_equal(n, count);
}

/*
 * A trimmed clip starts on the right frame whatever the container: an MPEG-TS
 * file has no index, so a seek lands on the packet at the trim's time and the
 * decoder skips to the next key frame (here 1 s later). Before the fix the
 * reel showed that key frame in place of the 15 frames before it. Key frames
 * every 30, B-frames between; every frame of the reel is checked.
 */
static void test_trim_without_index(void **state)
{
    (void)state;
    static const char *const names[] = {"count3_g30.ts", "count3_g30.mp4", "count3_g30_pipe.mkv"};
    struct stat sb;

    if (stat(data("count3_g30.ts"), &sb) != 0)
        sh("ffmpeg -v error -y -f lavfi -i \"color=black:s=64x64:r=30,"
           "geq=lum='16+3*N':cb=128:cr=128\" -t 2.2 -c:v libx264 -preset veryfast -crf 4 -g 30 "
           "-bf 2 -pix_fmt yuv420p %s",
           data("count3_g30.ts"));
    if (stat(data("count3_g30.mp4"), &sb) != 0) /* the same stream, with an index */
        sh("ffmpeg -v error -y -i %s -c copy %s", data("count3_g30.ts"), data("count3_g30.mp4"));
    if (stat(data("count3_g30_pipe.mkv"), &sb) != 0) /* written to a pipe: no index, no duration */
        sh("ffmpeg -v error -i %s -c copy -f matroska - > %s", data("count3_g30.ts"),
           data("count3_g30_pipe.mkv"));
    for (int i = 0; i < 3; i++) {
        char out[64];
        export_counter(names[i], 1, out, sizeof(out));
        assert_counter_frames(out, names[i], 15, 45); /* 0.5 s to 2.0 s */
    }
}

/*
 * Every frame of a Matroska source in its place: Matroska keeps times in
 * milliseconds, so a 30 fps frame 66.67 ms in reads 67. Before stop 21 every
 * third frame was dropped and its neighbour shown twice (0 1 1 3 4 4 ...).
 */
static void test_millisecond_times(void **state)
{
    (void)state;
    static const char *const names[] = {"count30.mkv", "count30.webm"};
    static const char *const codecs[] = {"-c:v libx264 -crf 4 -g 30 -bf 2",
                                         "-c:v libvpx-vp9 -lossless 1"};
    struct stat sb;

    for (int i = 0; i < 2; i++) {
        char out[64];
        if (stat(data(names[i]), &sb) != 0)
            sh("ffmpeg -v error -y -f lavfi -i \"color=black:s=64x64:r=30,geq=lum='16+3*N':"
               "cb=128:cr=128\" -t 2 %s -pix_fmt yuv420p %s",
               codecs[i], data(names[i]));
        export_counter(names[i], 0, out, sizeof(out));
        assert_counter_frames(out, names[i], 0, 60);
    }
}

static void test_silent_clip(void **state)
{
    gen("silent.mp4", "testsrc=size=160x120:rate=30", NULL, 1);
    gen("tone.mp4", "testsrc=size=160x120:rate=30", "sine=frequency=440:sample_rate=48000", 1);
    ReelJob *job = job_of("{\"clips\":[{\"source\":\"silent.mp4\"},{\"source\":\"tone.mp4\"}],"
                          "\"output\":{\"width\":160,\"height\":120,\"upscale\":{\"mode\":\"off\"}}}");
    export_ok(job, data("silent_out.mp4"));
    double rms_silent, rms_tone;
    int64_t n = audio_samples(data("silent_out.mp4"), 0, 46000, &rms_silent);
    audio_samples(data("silent_out.mp4"), 50000, 94000, &rms_tone);
    assert_true(llabs(n - 96000) <= 1024);
    assert_true(rms_silent < 1e-3);
    assert_true(rms_tone > 0.03);
    reel_job_free(&job);

    job = job_of("{\"clips\":[{\"source\":\"tone.mp4\"}],\"output\":{\"width\":160,\"height\":120,"
                 "\"include_audio\":false,\"upscale\":{\"mode\":\"off\"}}}");
    export_ok(job, data("noaudio.mp4"));
    json_t *p = ffprobe(data("noaudio.mp4"));
    assert_null(stream_of(p, "audio"));
    json_decref(p);
    reel_job_free(&job);
}

static void test_rotation(void **state)
{
    /* a white square in the top-right corner; rotated 90 CCW it is top-left */
    gen("corner.mp4",
        "color=black:s=320x240:r=30:d=1[bg];color=white:s=40x40:r=30:d=1[fg];"
        "[bg][fg]overlay=x=280:y=0",
        NULL, 1);
    ReelJob *job = job_of("{\"clips\":[{\"source\":\"corner.mp4\",\"rotation\":90,"
                          "\"cropKeyframes\":[{\"time\":0,\"x\":0,\"y\":0,\"width\":240,"
                          "\"height\":320}]}],\"output\":{\"width\":240,\"height\":320,"
                          "\"include_audio\":false,\"upscale\":{\"mode\":\"off\"}}}");
    export_ok(job, data("rot.mp4"));
    int keep[] = {10};
    Frames fr = decode_frames(data("rot.mp4"), keep, 1);
    assert_int_equal(fr.w, 240);
    assert_int_equal(fr.h, 320);
    assert_true(px(&fr, 10, 10, 10)[1] > 200);
    assert_true(px(&fr, 10, 230, 10)[1] < 40);
    assert_true(px(&fr, 10, 10, 310)[1] < 40);
    frames_free(&fr);
    reel_job_free(&job);
}

static void test_upscale_small(void **state)
{
    gen("tiny.mp4", "testsrc2=size=96x64:rate=30", NULL, 0.2);
    ReelJob *job = job_of("{\"clips\":[{\"source\":\"tiny.mp4\",\"cropKeyframes\":["
                          "{\"time\":0,\"x\":20,\"y\":10,\"width\":32,\"height\":32}]}],"
                          "\"globalAspectRatio\":\"1:1\",\"output\":{\"include_audio\":false,"
                          "\"upscale\":{\"mode\":\"auto\"}}}");
    ReelExportStats st;
    ReelExportOptions o = {0};
    char err[REEL_ERRMSG_SIZE] = "";
    o.output_path = data("tiny_up.mp4");
    if (reel_export_run(job, &o, &st, err) < 0)
        fail_msg("%s", err);
    assert_int_equal(st.width, 128); /* default size: 32 x 4 */
    assert_int_equal(st.height, 128);
    assert_int_equal(st.upscaled_clips, 1);
    assert_int_equal(st.frames, 6);
    assert_string_equal(st.upscale_precision, "fp32"); /* the default */
    reel_job_free(&job);
}

/* output.upscale.precision "bf16" reaches the model: it runs bf16 where the CPU
 * computes bf16 natively, else fp32; the frames stay close to the fp32 export's. */
static void test_upscale_bf16_job(void **state)
{
    static const char *const jobs[2] = {
        "{\"clips\":[{\"source\":\"tiny.mp4\",\"cropKeyframes\":[{\"time\":0,\"x\":20,"
        "\"y\":10,\"width\":32,\"height\":32}]}],\"globalAspectRatio\":\"1:1\",\"output\":{"
        "\"include_audio\":false,\"upscale\":{\"mode\":\"auto\",\"precision\":\"fp32\"}}}",
        "{\"clips\":[{\"source\":\"tiny.mp4\",\"cropKeyframes\":[{\"time\":0,\"x\":20,"
        "\"y\":10,\"width\":32,\"height\":32}]}],\"globalAspectRatio\":\"1:1\",\"output\":{"
        "\"include_audio\":false,\"upscale\":{\"mode\":\"auto\",\"precision\":\"bf16\"}}}"};
    static const char *const outs[2] = {"tiny_fp32.mp4", "tiny_bf16.mp4"};
    static const int keep[6] = {0, 1, 2, 3, 4, 5};
    Frames fr[2];
    (void)state;

    gen("tiny.mp4", "testsrc2=size=96x64:rate=30", NULL, 0.2);
    __builtin_cpu_init();
    for (int k = 0; k < 2; k++) {
        ReelJob *job = job_of(jobs[k]);
        ReelExportStats st;
        ReelExportOptions o = {0};
        char err[REEL_ERRMSG_SIZE] = "";
        o.output_path = data(outs[k]);
        if (reel_export_run(job, &o, &st, err) < 0)
            fail_msg("%s", err);
        assert_int_equal(st.frames, 6);
        assert_string_equal(st.upscale_precision,
                            k && __builtin_cpu_supports("avx512bf16") ? "bf16" : "fp32");
        fr[k] = decode_frames(data(outs[k]), keep, 6);
        assert_int_equal(fr[k].count, 6);
        reel_job_free(&job);
    }
    double se = 0, n = 0;
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < fr[0].w * fr[0].h * 3; j++) {
            double d = (double)fr[0].rgb[i][j] - fr[1].rgb[i][j];
            se += d * d, n++;
        }
    double psnr = se > 0 ? 10 * log10(255.0 * 255.0 * n / se) : 99;
    print_message("bf16 job vs fp32 job: PSNR %.2f dB\n", psnr);
    assert_true(psnr >= 35.0);
    frames_free(&fr[0]);
    frames_free(&fr[1]);
}

/* Frames upscaled side by side (lanes, one transform worker each) make the
 * same reel as one at a time: the compositor takes them in order, across a
 * dissolve between two upscaled clips. */
static void test_upscale_lanes_same_reel(void **state)
{
    static const char *const json =
        "{\"clips\":[{\"source\":\"tiny.mp4\",\"cropKeyframes\":[{\"time\":0,\"x\":20,"
        "\"y\":10,\"width\":32,\"height\":32}]},{\"source\":\"tiny2.mp4\",\"cropKeyframes\":["
        "{\"time\":0,\"x\":8,\"y\":4,\"width\":32,\"height\":32},{\"time\":0.3,\"x\":60,"
        "\"y\":30,\"width\":32,\"height\":32}]}],\"globalAspectRatio\":\"1:1\","
        "\"transition\":{\"type\":\"dissolve\",\"duration\":0.1},"
        "\"output\":{\"include_audio\":false,\"upscale\":{\"mode\":\"always\"}}}";
    static const int lanes[2] = {1, 3};
    static const char *const outs[2] = {"lanes1.mp4", "lanes3.mp4"};
    int keep[12];
    Frames fr[2];
    (void)state;

    gen("tiny.mp4", "testsrc2=size=96x64:rate=30", NULL, 0.2);
    gen("tiny2.mp4", "testsrc=size=96x64:rate=30", NULL, 0.3);
    for (int i = 0; i < 12; i++)
        keep[i] = i;
    for (int k = 0; k < 2; k++) {
        ReelJob *job = job_of(json);
        ReelExportStats st;
        ReelExportOptions o = {0};
        char err[REEL_ERRMSG_SIZE] = "";
        o.output_path = data(outs[k]);
        o.threads = 3; /* 3 lanes of one thread each: more workers than this machine's cores */
        o.lanes = lanes[k];
        if (reel_export_run(job, &o, &st, err) < 0)
            fail_msg("lanes %d: %s", lanes[k], err);
        assert_int_equal(st.frames, 12); /* 6 + 9 - 3 dissolved */
        assert_int_equal(st.upscaled_clips, 2);
        fr[k] = decode_frames(data(outs[k]), keep, 12);
        assert_int_equal(fr[k].count, 12);
        reel_job_free(&job);
    }
    for (int i = 0; i < 12; i++)
        assert_memory_equal(fr[0].rgb[i], fr[1].rgb[i], (size_t)fr[0].w * fr[0].h * 3);
    frames_free(&fr[0]);
    frames_free(&fr[1]);
}

static int dir_has_leftovers(const char *dir, const char *stem)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "ls %s | grep -q '^%s'", dir, stem);
    return system(cmd) == 0;
}

/* The bad sources' files: a good one, text, a truncated MP4, audio only */
static void make_bad_sources(void)
{
    gen("good.mp4", "testsrc=size=160x120:rate=30", NULL, 1);
    sh("echo 'not a video' > %s", data("text.mp4"));
    sh("head -c 3000 %s > %s", data("good.mp4"), data("trunc.mp4"));
    sh("ffmpeg -v error -y -f lavfi -i sine=d=1 -c:a aac %s", data("audioonly.m4a"));
}

static void test_bad_sources(void **state)
{
    (void)state;
    make_bad_sources();
    static const char *const bad[][2] = {
        {"missing.mp4", "missing.mp4"},
        {"text.mp4", "text.mp4"},
        {"trunc.mp4", "trunc.mp4"},
        {"audioonly.m4a", "no video stream"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char json[512], err[REEL_ERRMSG_SIZE] = "";
        snprintf(json, sizeof(json),
                 "{\"clips\":[{\"source\":\"good.mp4\"},{\"source\":\"%s\"}],"
                 "\"output\":{\"width\":160,\"height\":120,\"upscale\":{\"mode\":\"off\"}}}",
                 bad[i][0]);
        ReelJob *job = job_of(json);
        int ret = export_to(job, data("badout.mp4"), err);
        if (ret >= 0 || !strstr(err, bad[i][1]) || !strstr(err, "clips[clipIndex=1].source"))
            fail_msg("%s: expected an error naming the file, got %d: %s", bad[i][0], ret, err);
        assert_false(dir_has_leftovers(data_dir, "badout"));
        reel_job_free(&job);
    }
}

/* Sources are probed at once; the error is still the first bad clip's in job
 * order, whichever probe fails first */
static void test_bad_sources_order(void **state)
{
    static const struct {
        const char *clips, *want_clip, *want;
    } cases[] = {
        {"{\"source\":\"good.mp4\"},{\"source\":\"trunc.mp4\"},{\"source\":\"text.mp4\"},"
         "{\"source\":\"good.mp4\"},{\"clipName\":\"no source\"}",
         "clips[clipIndex=1].source", "trunc.mp4"},
        {"{\"source\":\"good.mp4\"},{\"source\":\"good.mp4\"},{\"clipName\":\"no source\"},"
         "{\"source\":\"text.mp4\"},{\"source\":\"text.mp4\"}",
         "clips[clipIndex=2].source", "missing"},
        {"{\"source\":\"good.mp4\"},{\"source\":\"good.mp4\"},{\"source\":\"good.mp4\"},"
         "{\"source\":\"audioonly.m4a\"},{\"source\":\"audioonly.m4a\"}",
         "clips[clipIndex=3].source", "no video stream"},
    };

    (void)state;
    make_bad_sources();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char json[1024], err[REEL_ERRMSG_SIZE] = "";
        snprintf(json, sizeof(json),
                 "{\"clips\":[%s],"
                 "\"output\":{\"width\":160,\"height\":120,\"upscale\":{\"mode\":\"off\"}}}",
                 cases[i].clips);
        ReelJob *job = job_of(json);
        int ret = export_to(job, data("badout.mp4"), err);
        if (ret >= 0 || !strstr(err, cases[i].want_clip) || !strstr(err, cases[i].want))
            fail_msg("case %zu: expected %s: ...%s, got %d: %s", i, cases[i].want_clip,
                     cases[i].want, ret, err);
        assert_false(dir_has_leftovers(data_dir, "badout"));
        reel_job_free(&job);
    }
}

/* The output cannot be created: the stages that were already decoding (and
 * upscaling) stop, the error names the path, nothing is left behind */
static void test_bad_output(void **state)
{
    static const char *const modes[] = {"off", "always"};

    (void)state;
    gen("long.mp4", "testsrc2=size=320x240:rate=30", NULL, 10);
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        char json[512], err[REEL_ERRMSG_SIZE] = "", out[1200];
        snprintf(json, sizeof(json),
                 "{\"clips\":[{\"source\":\"long.mp4\",\"cropKeyframes\":[{\"time\":0,"
                 "\"x\":20,\"y\":10,\"width\":32,\"height\":32}]}],\"globalAspectRatio\":"
                 "\"1:1\",\"output\":{\"upscale\":{\"mode\":\"%s\"}}}",
                 modes[i]);
        snprintf(out, sizeof(out), "%s/no-such-dir/out.mp4", data_dir);
        ReelJob *job = job_of(json);
        int ret = export_to(job, out, err);
        if (ret >= 0 || !strstr(err, "no-such-dir/out.mp4"))
            fail_msg("upscale %s: expected an error naming the output, got %d: %s", modes[i], ret,
                     err);
        assert_int_equal(access(out, F_OK), -1);
        reel_job_free(&job);
    }
}

/* A phone's portrait video: frames stored landscape, marked to be shown turned
 * a quarter (a display matrix). The crop's coordinates are those of the frame
 * as shown (the editor's, a browser's, ffmpeg's): the reel of the marked file
 * is the reel of the same frames stored upright, for each quarter turn, and the
 * clip's own rotation applies after the file's (quarter turns in YUV, other
 * angles through RGB). */
static void test_display_rotation(void **state)
{
    static const struct {
        const char *filter; /* upright -> stored */
        double ccw;         /* the turn that shows the stored frame upright */
    } turns[] = {{"transpose=clock", 90}, {"transpose=cclock", 270}, {"hflip,vflip", 180}};
    /* a clip's crop; the clip's own rotation */
    static const struct {
        int x, y, w, h;
        double rotation;
    } crops[] = {{0, 0, 40, 40, 0},  {100, 250, 40, 40, 0}, {20, 60, 120, 120, 0},
                 {0, 0, 40, 40, 90}, {31, 77, 42, 42, 0},   {60, 100, 80, 80, 30}};
    const int keep[] = {0, 15, 29};

    (void)state;
    /* upright 160x320 (portrait), lossless: a white square top left, the test pattern */
    sh("ffmpeg -v error -y -f lavfi -i \"testsrc2=size=160x320:rate=30:duration=1,drawbox=x=0:"
       "y=0:w=40:h=40:color=white:t=fill\" -c:v libx264 -qp 0 -pix_fmt yuv444p %s",
       data("upright.mp4"));
    for (size_t t = 0; t < sizeof(turns) / sizeof(turns[0]); t++) {
        char stored[1200], marked[1200];
        snprintf(stored, sizeof(stored), "%s/stored%zu.mp4", data_dir, t);
        snprintf(marked, sizeof(marked), "%s/marked%zu.mp4", data_dir, t);
        sh("ffmpeg -v error -y -i %s -vf %s -c:v libx264 -qp 0 -pix_fmt yuv444p %s",
           data("upright.mp4"), turns[t].filter, stored);
        remux_turned(stored, marked, turns[t].ccw);
        for (size_t c = 0; c < sizeof(crops) / sizeof(crops[0]); c++) {
            const char *srcs[] = {"upright.mp4", marked};
            Frames fr[2];
            for (int k = 0; k < 2; k++) {
                char json[1024], out[1200], err[REEL_ERRMSG_SIZE] = "";
                snprintf(json, sizeof(json),
                         "{\"clips\":[{\"source\":\"%s\",\"rotation\":%g,\"cropKeyframes\":"
                         "[{\"time\":0,\"x\":%d,\"y\":%d,\"width\":%d,\"height\":%d}]}],"
                         "\"globalAspectRatio\":\"1:1\",\"output\":{\"width\":%d,\"height\":"
                         "%d,\"upscale\":{\"mode\":\"off\"}}}",
                         srcs[k], crops[c].rotation, crops[c].x, crops[c].y, crops[c].w, crops[c].h,
                         crops[c].w, crops[c].h);
                snprintf(out, sizeof(out), "%s/turned_%d.mp4", data_dir, k);
                ReelJob *job = job_of(json);
                if (export_to(job, out, err) < 0)
                    fail_msg("turn %g, crop %zu, %s: %s", turns[t].ccw, c, srcs[k], err);
                reel_job_free(&job);
                fr[k] = decode_frames(out, keep, 3);
                assert_int_equal(fr[k].count, 30);
            }
            double se = 0, n = 0, white = 0;
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < fr[0].w * fr[0].h * 3; j++) {
                    double d = (double)fr[0].rgb[keep[i]][j] - fr[1].rgb[keep[i]][j];
                    se += d * d, n++;
                    white += fr[1].rgb[keep[i]][j];
                }
            double psnr = se > 0 ? 10 * log10(255.0 * 255.0 * n / se) : 99;
            white /= n; /* the first crop is the white square, the second none of it */
            if (psnr < 40 || (c == 0 && white < 230) || (c == 1 && white > 200))
                fail_msg("turn %g, crop %zu: PSNR %.1f dB against the upright file, mean %.0f",
                         turns[t].ccw, c, psnr, white);
            frames_free(&fr[0]);
            frames_free(&fr[1]);
        }
    }
}

/* A source in HDR (BT.2100 HLG or PQ, BT.2020, 10-bit), as phones record by
 * default, comes out in the reel's SDR BT.709 with the colours it was shot
 * in: patches of known SDR colours are encoded here from the standard's
 * formulas (display light, SDR white at 203 cd/m2, BT.2020 primaries; HLG's
 * OOTF on luminance, for a 1000 cd/m2 display) and must come back within a few
 * levels. Greys are also checked on sources made by zimg (ffmpeg's zscale), an
 * implementation of its own. SDR white (reference white) is rolled off a little. */
#define HDR_PATCHES 8
/* Six frames of HDR_PATCHES patches of 32x32 side by side into the command
 * cmd's input; patch k's pixel is the 3 samples of `bytes` bytes at
 * px + 3 * bytes * k */
static void pipe_patches(const char *cmd, const void *px, size_t bytes)
{
    FILE *f = popen(cmd, "w");
    assert_non_null(f);
    for (int n = 0; n < 6; n++)
        for (int y = 0; y < 32; y++)
            for (int k = 0; k < HDR_PATCHES; k++)
                for (int x = 0; x < 32; x++)
                    fwrite((const uint8_t *)px + 3 * bytes * k, bytes, 3, f);
    assert_int_equal(pclose(f), 0);
}

static void make_hdr_source(const char *path, int pq, const uint8_t (*rgb)[3])
{
    static const double m[9] = {0.6274, 0.3293, 0.0433, 0.0691, 0.9195,
                                0.0114, 0.0164, 0.0880, 0.8956}; /* BT.709 -> BT.2020 */
    const double a = 0.17883277, b = 1 - 4 * a, c = 0.5 - a * log(4 * a);
    uint16_t px[HDR_PATCHES][3];
    char cmd[2048];

    for (int k = 0; k < HDR_PATCHES; k++) {
        double l[3], d[3], e[3];
        for (int ch = 0; ch < 3; ch++)
            l[ch] = pow(rgb[k][ch] / 255.0, 2.4); /* SDR display light (BT.1886) */
        for (int ch = 0; ch < 3; ch++)
            d[ch] = 203.0 * (m[3 * ch] * l[0] + m[3 * ch + 1] * l[1] + m[3 * ch + 2] * l[2]);
        double yd = 0.2627 * d[0] + 0.6780 * d[1] + 0.0593 * d[2];
        for (int ch = 0; ch < 3; ch++) {
            if (pq) {
                double y = pow(d[ch] / 10000.0, 2610.0 / 16384);
                e[ch] =
                    pow((3424.0 / 4096 + 2413.0 / 128 * y) / (1 + 2392.0 / 128 * y), 2523.0 / 32);
            } else { /* the OOTF undone, then the OETF */
                double s = yd > 0 ? pow(yd / 1000.0, -0.2 / 1.2) * d[ch] / 1000.0 : 0;
                e[ch] = s <= 1.0 / 12 ? sqrt(3 * s) : a * log(12 * s - b) + c;
            }
            px[k][ch] = (uint16_t)lrint(fmin(fmax(e[ch], 0), 1) * 65535);
        }
    }
    snprintf(cmd, sizeof(cmd),
             "ffmpeg -v error -y -f rawvideo -pix_fmt rgb48le -s %dx32 -r 30 -i - -vf "
             "scale=out_color_matrix=bt2020:out_range=tv,format=yuv420p10le -colorspace bt2020nc "
             "-color_primaries bt2020 -color_trc %s -color_range tv -c:v libx265 -x265-params "
             "log-level=error:lossless=1 %s",
             32 * HDR_PATCHES, pq ? "smpte2084" : "arib-std-b67", path);
    pipe_patches(cmd, px, 2); /* little-endian hosts */
}

/* The reel of src (shown turned ccw quarter turns: 0, 1 or 2) as full-range RGB
 * at the middle of each patch, in the order the source has them */
static void hdr_reel_patches(const char *src, int ccw, uint8_t (*got)[3])
{
    const int long_side = 32 * HDR_PATCHES, w = ccw == 1 ? 32 : long_side,
              h = ccw == 1 ? long_side : 32;
    char json[1024], cmd[2048];
    snprintf(json, sizeof(json),
             "{\"clips\":[{\"source\":\"%s\"}],\"globalAspectRatio\":\"%d:%d\",\"output\":"
             "{\"width\":%d,\"height\":%d,\"upscale\":{\"mode\":\"off\"}}}",
             src, w / 32, h / 32, w, h);
    ReelJob *job = job_of(json);
    export_ok(job, data("hdr_reel.mp4"));
    reel_job_free(&job);
    snprintf(cmd, sizeof(cmd),
             "ffmpeg -v error -i %s -frames:v 1 -vf scale=in_color_matrix=bt709:in_range=tv:"
             "out_range=pc:flags=accurate_rnd+full_chroma_int,format=rgb24 -f rawvideo -",
             data("hdr_reel.mp4"));
    FILE *f = popen(cmd, "r");
    static uint8_t frame[32 * HDR_PATCHES * 32 * 3];
    assert_non_null(f);
    assert_int_equal(fread(frame, 1, sizeof(frame), f), sizeof(frame));
    uint8_t rest[4096];
    while (fread(rest, 1, sizeof(rest), f) > 0)
        ;
    assert_int_equal(pclose(f), 0);
    for (int k = 0; k < HDR_PATCHES; k++) {
        int c = 32 * k + 16, x = ccw == 0 ? c : ccw == 1 ? 16 : long_side - 1 - c;
        int y = ccw == 0 ? 16 : ccw == 1 ? long_side - 1 - c : 15;
        memcpy(got[k], frame + ((size_t)y * w + x) * 3, 3);
    }
}

/* got within 3 levels of want, or 0.4 % of white in light: a saturated
 * colour's weak component is the difference of two large BT.2020 ones, so the
 * 10-bit source's rounding shows larger there in levels (PQ: 36 for 30) */
static void assert_patches(const uint8_t (*got)[3], const uint8_t (*want)[3], const char *what)
{
    for (int k = 0; k < HDR_PATCHES; k++)
        for (int ch = 0; ch < 3; ch++)
            if (abs(got[k][ch] - want[k][ch]) > 3 &&
                fabs(pow(got[k][ch] / 255.0, 2.4) - pow(want[k][ch] / 255.0, 2.4)) > 0.004)
                fail_msg("%s patch %d: got %d %d %d, want %d %d %d", what, k, got[k][0], got[k][1],
                         got[k][2], want[k][0], want[k][1], want[k][2]);
}

static void test_hdr_sources(void **state)
{
    /* red, green, blue, skin, grey, dark green, light grey, deep blue: all inside
     * BT.709 and below the roll-off (light 0.8 of SDR white) */
    static const uint8_t want[HDR_PATCHES][3] = {{200, 30, 30},   {30, 200, 30},   {30, 30, 200},
                                                 {224, 172, 105}, {128, 128, 128}, {40, 60, 50},
                                                 {220, 220, 220}, {20, 40, 110}};
    uint8_t got[HDR_PATCHES][3];

    (void)state;
    /* both routes: in YUV (no AI, the default) and through RGB (what AI and free
     * rotations take); and a source shown turned (phones' portrait video: in
     * its own 10-bit YUV first) */
    for (int pq = 0; pq < 2; pq++) {
        make_hdr_source(data("hdr_src.mp4"), pq, want);
        for (int rgb = 0; rgb < 2; rgb++) {
            char what[64];
            if (rgb)
                setenv("CLIPREEL_CONVERT", "rgb", 1);
            for (int ccw = 0; ccw < 3; ccw++) {
                if (ccw)
                    remux_turned(data("hdr_src.mp4"), data("hdr_turned.mp4"), 90.0 * ccw);
                hdr_reel_patches(data(ccw ? "hdr_turned.mp4" : "hdr_src.mp4"), ccw, got);
                snprintf(what, sizeof(what), "%s, %s route, turned %d", pq ? "PQ" : "HLG",
                         rgb ? "RGB" : "YUV", 90 * ccw);
                assert_patches((const uint8_t(*)[3])got, want, what);
            }
            unsetenv("CLIPREEL_CONVERT");
        }
    }
    /* SDR white is HDR reference white (HLG 75 %, PQ 58 %): rolled off to 0.90 of
     * white in light, 244; the roll-off keeps the order of the greys below it */
    static const uint8_t whites[HDR_PATCHES][3] = {
        {255, 255, 255}, {250, 250, 250}, {240, 240, 240}, {230, 230, 230},
        {220, 220, 220}, {210, 210, 210}, {200, 200, 200}, {190, 190, 190}};
    for (int pq = 0; pq < 2; pq++) {
        make_hdr_source(data("hdr_src.mp4"), pq, whites);
        hdr_reel_patches(data("hdr_src.mp4"), 0, got);
        if (abs(got[0][1] - 244) > 2)
            fail_msg("%s: reference white at %d, want 244", pq ? "PQ" : "HLG", got[0][1]);
        for (int k = 1; k < HDR_PATCHES; k++)
            if (got[k][1] >= got[k - 1][1])
                fail_msg("%s: grey %d at %d, not below %d", pq ? "PQ" : "HLG", whites[k][1],
                         got[k][1], got[k - 1][1]);
    }
    /* greys by zimg */
    static const char *const zimg[] = {"arib-std-b67", "smpte2084"};
    for (int z = 0; z < 2; z++) {
        sh("ffmpeg -v error -y -f lavfi -i \"color=c=0x404040:size=64x32:d=0.2,format=rgb24[a];"
           "color=c=0xb4b4b4:size=64x32:d=0.2,format=rgb24[b];[a][b]hstack,format=gbrpf32le,"
           "zscale=tin=bt709:t=linear:npl=203,zscale=p=bt2020:pin=bt709,zscale=t=%s:npl=203:"
           "m=bt2020nc:r=tv,format=yuv420p10le\" -colorspace bt2020nc -color_primaries bt2020 "
           "-color_trc %s -color_range tv -c:v libx265 -x265-params log-level=error:lossless=1 "
           "%s",
           zimg[z], zimg[z], data("hdr_zimg.mp4"));
        char json[1024];
        snprintf(json, sizeof(json),
                 "{\"clips\":[{\"source\":\"hdr_zimg.mp4\"}],\"globalAspectRatio\":\"4:1\","
                 "\"output\":{\"width\":128,\"height\":32,\"upscale\":{\"mode\":\"off\"}}}");
        ReelJob *job = job_of(json);
        export_ok(job, data("hdr_zimg_reel.mp4"));
        reel_job_free(&job);
        json_t *p = ffprobe(data("hdr_zimg_reel.mp4"));
        json_t *v = stream_of(p, "video");
        assert_string_equal(json_string_value(json_object_get(v, "color_transfer")), "bt709");
        assert_string_equal(json_string_value(json_object_get(v, "color_primaries")), "bt709");
        json_decref(p);
        char cmd[2048];
        snprintf(cmd, sizeof(cmd),
                 "ffmpeg -v error -i %s -frames:v 1 -f rawvideo -pix_fmt yuv420p - | od -An -tu1 "
                 "-v -w128 | sed -n 16p", /* row 15 of the Y plane, as coded */
                 data("hdr_zimg_reel.mp4"));
        FILE *f = popen(cmd, "r");
        int left = 0, right = 0;
        assert_non_null(f);
        assert_int_equal(fscanf(f, "%d", &left), 1);
        for (int i = 1; i < 96; i++)
            assert_int_equal(fscanf(f, "%d", &right), 1);
        pclose(f);
        /* 0x40 and 0xb4 in limited range: 71 and 171 */
        if (abs(left - 71) > 3 || abs(right - 171) > 3)
            fail_msg("zimg's %s greys: Y %d and %d, want 71 and 171", zimg[z], left, right);
    }
}

/* SDR sources in other colours than the reel's (BT.601's matrix, full range)
 * come out in BT.709 limited range with their colours, by both routes: in
 * YUV (no AI, the default) and through RGB (CLIPREEL_CONVERT=rgb) */
/* PQ greys of HDR_PATCHES light levels (cd/m2), 32x32 each, lossless HEVC, the
 * x265 options x265 (HDR10 metadata) added */
static void make_pq_greys(const char *path, const double *nits, const char *x265)
{
    uint16_t px[HDR_PATCHES][3];
    char cmd[2048];

    for (int k = 0; k < HDR_PATCHES; k++) {
        double y = pow(nits[k] / 10000.0, 2610.0 / 16384);
        double e = pow((3424.0 / 4096 + 2413.0 / 128 * y) / (1 + 2392.0 / 128 * y), 2523.0 / 32);
        px[k][0] = px[k][1] = px[k][2] = (uint16_t)lrint(e * 65535);
    }
    snprintf(cmd, sizeof(cmd),
             "ffmpeg -v error -y -f rawvideo -pix_fmt rgb48le -s %dx32 -r 30 -i - -vf "
             "scale=out_color_matrix=bt2020:out_range=tv,format=yuv420p10le -colorspace bt2020nc "
             "-color_primaries bt2020 -color_trc smpte2084 -color_range tv -c:v libx265 "
             "-x265-params 'log-level=error:lossless=1%s%s' %s",
             32 * HDR_PATCHES, *x265 ? ":" : "", x265, path);
    pipe_patches(cmd, px, 2);
}

/* The SDR code a grey of `nits` should get when the roll-off lands `peak` on
 * white (docs/internals/media.md, HDR: reference white 203 cd/m2, knee 0.8) */
static double pq_grey_code(double nits, double peak)
{
    double l = nits / 203.0, w = (peak / 203.0 - 0.8) / 0.2;
    if (l > 0.8) {
        double s = (l - 0.8) / 0.2;
        l = fmin(0.8 + 0.2 * s * (1 + s / (w * w)) / (1 + s), 1.0);
    }
    return 255.0 * pow(l, 1 / 2.4);
}

/*
 * An HDR10 source's declared peak is what its roll-off lands on white: its
 * MaxCLL, else its mastering display's peak, else 1000 cd/m2. A master of 250
 * cd/m2 then shows its brightest grey as white (255) instead of 248.
 */
static void test_pq_declared_peak(void **state)
{
    static const double nits[HDR_PATCHES] = {100, 160, 203, 230, 250, 300, 400, 1000};
    static const struct {
        const char *x265, *what;
        double peak;
    } cases[] = {
        {"", "no metadata", 1000},
        {"max-cll=250,100", "MaxCLL 250", 250},
        {"master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(2500000,50)",
         "mastering display of 250", 250},
        {"max-cll=250,100:master-display=G(13250,34500)B(7500,3000)R(34000,16000)"
         "WP(15635,16450)L(40000000,50)",
         "MaxCLL 250 on a mastering display of 4000", 250},
    };
    uint8_t got[HDR_PATCHES][3], yuv[HDR_PATCHES][3];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        make_pq_greys(data("pq_greys.mp4"), nits, cases[i].x265);
        for (int rgb = 0; rgb < 2; rgb++) {
            if (rgb)
                setenv("CLIPREEL_CONVERT", "rgb", 1);
            hdr_reel_patches(data("pq_greys.mp4"), 0, got);
            unsetenv("CLIPREEL_CONVERT");
            /* 3 levels, as test_hdr_sources allows (the 10-bit source's rounding and
             * the reel's encode); a peak taken wrongly moves the 250 cd/m2 grey by 7 */
            for (int k = 0; k < HDR_PATCHES; k++) {
                double want = pq_grey_code(nits[k], cases[i].peak);
                if (fabs(got[k][1] - want) > 3)
                    fail_msg("%s, %s route: %g cd/m2 at %d, want %.1f", cases[i].what,
                             rgb ? "RGB" : "YUV", nits[k], got[k][1], want);
            }
            /* both routes read the source alike: the RGB one no longer through
             * swscale's 16-bit R'G'B' (256/257 of the value: 2 levels low here) */
            for (int k = 0; rgb && k < HDR_PATCHES; k++)
                if (abs(got[k][1] - yuv[k][1]) > 1)
                    fail_msg("%s: %g cd/m2 at %d by the RGB route, %d by the YUV route",
                             cases[i].what, nits[k], got[k][1], yuv[k][1]);
            if (!rgb)
                memcpy(yuv, got, sizeof(yuv));
            print_message("%s, %s route:", cases[i].what, rgb ? "RGB" : "YUV");
            for (int k = 0; k < HDR_PATCHES; k++)
                print_message(" %g cd/m2 %d (%.1f)", nits[k], got[k][1],
                              pq_grey_code(nits[k], cases[i].peak));
            print_message("\n");
        }
    }
}

static void test_sdr_colours(void **state)
{
    static const uint8_t want[HDR_PATCHES][3] = {{200, 30, 30},   {30, 200, 30},   {30, 30, 200},
                                                 {224, 172, 105}, {128, 128, 128}, {40, 60, 50},
                                                 {235, 235, 235}, {20, 40, 110}};
    static const struct {
        const char *matrix, *range, *tag;
    } kinds[] = {
        {"bt601", "tv", "smpte170m"}, {"bt709", "pc", "bt709"}, {"bt601", "pc", "bt470bg"}};
    uint8_t got[HDR_PATCHES][3];
    char cmd[2048], what[96];

    (void)state;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        snprintf(cmd, sizeof(cmd),
                 "ffmpeg -v error -y -f rawvideo -pix_fmt rgb24 -s %dx32 -r 30 -i - -vf "
                 "scale=out_color_matrix=%s:out_range=%s:flags=accurate_rnd,format=yuv420p "
                 "-colorspace %s -color_range %s -c:v libx264 -qp 0 -frames:v 6 %s",
                 32 * HDR_PATCHES, kinds[i].matrix, kinds[i].range, kinds[i].tag, kinds[i].range,
                 data("sdr_src.mp4"));
        pipe_patches(cmd, want, 1);
        for (int rgb = 0; rgb < 2; rgb++) {
            if (rgb)
                setenv("CLIPREEL_CONVERT", "rgb", 1);
            hdr_reel_patches(data("sdr_src.mp4"), 0, got);
            unsetenv("CLIPREEL_CONVERT");
            snprintf(what, sizeof(what), "%s %s range, %s route", kinds[i].matrix, kinds[i].range,
                     rgb ? "RGB" : "YUV");
            for (int k = 0; k < HDR_PATCHES; k++)
                for (int ch = 0; ch < 3; ch++)
                    if (abs(got[k][ch] - want[k][ch]) > 2)
                        fail_msg("%s patch %d: got %d %d %d, want %d %d %d", what, k, got[k][0],
                                 got[k][1], got[k][2], want[k][0], want[k][1], want[k][2]);
        }
    }
}

/* An output that is one of the inputs (a clip's source, by any name; the job's
 * file), a folder, or both the reel and its chapters: refused before any work,
 * the error names the path, the input is untouched */
static void test_outputs_over_inputs(void **state)
{
    char src[1200], link[1200], dotted[1200], job_file[1200], x[1200], cmd[8192];

    (void)state;
    gen("mine.mp4", "testsrc2=size=160x120:rate=30", "sine=frequency=440", 1);
    char *dir = realpath(data_dir, NULL); /* the job's sources: absolute, as-is */
    assert_non_null(dir);
    snprintf(src, sizeof(src), "%s/keep.mp4", dir);
    free(dir);
    snprintf(link, sizeof(link), "%s", data("keep-link.mp4"));
    snprintf(dotted, sizeof(dotted), "%s/./keep.mp4", data_dir);
    snprintf(job_file, sizeof(job_file), "%s", data("keep.json"));
    snprintf(x, sizeof(x), "%s", data("x.mp4"));
    sh("cp %s %s && ln -f %s %s && cp %s %s.was", data("mine.mp4"), src, src, link, src, src);
    FILE *f = fopen(job_file, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"clips\":[{\"source\":\"%s\"}],\"output\":{\"width\":160,\"height\":120,"
            "\"upscale\":{\"mode\":\"off\"}}}",
            src);
    fclose(f);
    sh("cp %s %s.was", job_file, job_file);
    ReelJob *job = job_of(slurp(job_file));
    struct {
        const char *out, *chapters, *want;
    } cases[] = {
        {src, NULL, "keep.mp4: is clips[clipIndex=0]'s source"},
        {link, NULL, "keep-link.mp4: is clips[clipIndex=0]'s source"},
        {dotted, NULL, "/./keep.mp4: is clips[clipIndex=0]'s source"},
        {x, src, "keep.mp4: is clips[clipIndex=0]'s source"},
        {job_file, NULL, "keep.json: is the job file"},
        {x, job_file, "keep.json: is the job file"},
        {x, x, "x.mp4: both the reel and its chapters"},
        {data_dir, NULL, ": is a folder"},
        {x, data_dir, ": is a folder"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ReelExportOptions o = {0};
        char err[REEL_ERRMSG_SIZE] = "";
        const char *parts[] = {x}; /* the assembly checks before it reads its parts */

        o.output_path = cases[i].out;
        o.chapters_path = cases[i].chapters;
        o.job_path = job_file;
        int ret = reel_export_run(job, &o, NULL, err);
        if (ret >= 0 || !strstr(err, cases[i].want))
            fail_msg("case %zu (%s): want an error with '%s', got %d: %s", i, cases[i].out,
                     cases[i].want, ret, err);
        err[0] = '\0';
        ret = reel_export_assemble(job, parts, &o, NULL, err);
        if (ret >= 0 || !strstr(err, cases[i].want))
            fail_msg("assembly, case %zu: want '%s', got %d: %s", i, cases[i].want, ret, err);
    }
    snprintf(cmd, sizeof(cmd), "cmp -s %s %s.was && cmp -s %s %s.was", src, src, job_file,
             job_file);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(access(x, F_OK), -1);
    reel_job_free(&job);
}

static void test_cancel(void **state)
{
    gen("long.mp4", "testsrc2=size=320x240:rate=30", NULL, 10);
    ReelJob *job =
        job_of("{\"clips\":[{\"source\":\"long.mp4\"}],"
               "\"output\":{\"width\":320,\"height\":240,\"upscale\":{\"mode\":\"off\"}}}");
    atomic_int cancel = 1; /* cancelled before it starts: stops at once, writes nothing */
    ReelExportOptions o = {0};
    char err[REEL_ERRMSG_SIZE];
    o.output_path = data("cancelled.mp4");
    o.cancel = &cancel;
    assert_int_equal(reel_export_run(job, &o, NULL, err), REEL_ERROR_CANCELLED);
    assert_false(dir_has_leftovers(data_dir, "cancelled"));
    reel_job_free(&job);
}

int main(void)
{
    const char *d = getenv("REEL_TEST_DATA");
    snprintf(data_dir, sizeof(data_dir), "%s", d ? d : "media-data");
    mkdir(data_dir, 0755);
    reel_log_set_level(REEL_LOG_QUIET);
    av_log_set_level(AV_LOG_QUIET);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reel_structure),
        cmocka_unit_test(test_chapter_titles),
        cmocka_unit_test(test_marker_follows_crop),
        cmocka_unit_test(test_marker_yuv_path),
        cmocka_unit_test(test_dissolve_and_fade),
        cmocka_unit_test(test_fade_dark),
        cmocka_unit_test(test_60fps_real_speed),
        cmocka_unit_test(test_trim_without_index),
        cmocka_unit_test(test_millisecond_times),
        cmocka_unit_test(test_silent_clip),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_upscale_small),
        cmocka_unit_test(test_upscale_bf16_job),
        cmocka_unit_test(test_upscale_lanes_same_reel),
        cmocka_unit_test(test_bad_sources),
        cmocka_unit_test(test_bad_sources_order),
        cmocka_unit_test(test_display_rotation),
        cmocka_unit_test(test_hdr_sources),
        cmocka_unit_test(test_sdr_colours),
        cmocka_unit_test(test_pq_declared_peak),
        cmocka_unit_test(test_bad_output),
        cmocka_unit_test(test_outputs_over_inputs),
        cmocka_unit_test(test_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
