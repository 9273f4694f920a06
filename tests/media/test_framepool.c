/*
 * test_framepool.c - decoders write their frames into media/framepool's
 * buffers (huge pages) exactly as into libavcodec's own: every frame of each
 * source, decoded both ways with frame threads, has the same pixels; the
 * frames came from the pools (lines and planes 64-byte aligned) except where
 * the pools step aside (a palette); a change of frame size mid-stream gets a
 * new pool; frames outlive their decoder. A source opened with what its probe
 * found decodes as when opened alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>

#include "core/error.h"
#include "media/framepool.h"
#include "media/media_int.h"
#include "media_util.h"

typedef struct Decoding {
    AVFormatContext *fmt;
    AVCodecContext *dec;
    ReelDecoderPool *pool;
    AVPacket *pkt;
    int stream, eof;
} Decoding;

static void open_known(Decoding *d, const char *path, int pooled, const ReelSourceInfo *known)
{
    memset(d, 0, sizeof(*d));
    assert_int_equal(reel_media_open_video(path, 0, known, pooled ? &d->pool : NULL, &d->fmt,
                                           &d->dec, &d->stream),
                     0);
    assert_true(pooled == (d->pool != NULL));
    assert_non_null(d->pkt = av_packet_alloc());
}

static void open_decoding(Decoding *d, const char *path, int pooled)
{
    open_known(d, path, pooled, NULL);
}

/* the next frame, or NULL at the end */
static AVFrame *next_frame(Decoding *d)
{
    AVFrame *f = av_frame_alloc();
    assert_non_null(f);
    for (;;) {
        int r = avcodec_receive_frame(d->dec, f);
        if (r == 0)
            return f;
        if (r == AVERROR_EOF) {
            av_frame_free(&f);
            return NULL;
        }
        assert_int_equal(r, AVERROR(EAGAIN));
        if (d->eof) {
            av_frame_free(&f);
            return NULL;
        }
        if (av_read_frame(d->fmt, d->pkt) < 0) {
            d->eof = 1;
            assert_int_equal(avcodec_send_packet(d->dec, NULL), 0);
        } else {
            if (d->pkt->stream_index == d->stream)
                assert_int_equal(avcodec_send_packet(d->dec, d->pkt), 0);
            av_packet_unref(d->pkt);
        }
    }
}

static void close_decoding(Decoding *d)
{
    avcodec_free_context(&d->dec);
    reel_framepool_detach(&d->pool);
    avformat_close_input(&d->fmt);
    av_packet_free(&d->pkt);
}

static void assert_same_pixels(const AVFrame *a, const AVFrame *b, int n)
{
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(a->format);
    assert_int_equal(a->format, b->format);
    assert_int_equal(a->width, b->width);
    assert_int_equal(a->height, b->height);
    if (d->flags & AV_PIX_FMT_FLAG_PAL) { /* the palette: 256 entries of 4 bytes */
        assert_memory_equal(a->data[1], b->data[1], 1024);
        assert_null(a->data[2]);
    }
    for (int p = 0; p < 4 && a->data[p] && !(p == 1 && (d->flags & AV_PIX_FMT_FLAG_PAL)); p++) {
        int h = p == 1 || p == 2 ? AV_CEIL_RSHIFT(a->height, d->log2_chroma_h) : a->height;
        int bytes = av_image_get_linesize(a->format, a->width, p);
        assert_true(bytes > 0);
        for (int y = 0; y < h; y++)
            if (memcmp(a->data[p] + (ptrdiff_t)y * a->linesize[p],
                       b->data[p] + (ptrdiff_t)y * b->linesize[p], (size_t)bytes))
                fail_msg("frame %d plane %d line %d differs", n, p, y);
    }
}

/* Decode path both ways; returns the frames the pools served. */
static long decode_both(const char *path, int *frames)
{
    Decoding own, ours;
    AVFrame *a, *b, *kept = NULL;
    int n = 0;

    open_decoding(&own, path, 0);
    open_decoding(&ours, path, 1);
    while ((a = next_frame(&own))) {
        b = next_frame(&ours);
        if (!b)
            fail_msg("%s: the pooled decoder ended at frame %d", path, n);
        assert_same_pixels(a, b, n);
        const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(b->format);
        if (!(d->flags & AV_PIX_FMT_FLAG_PAL))
            for (int p = 0; p < 4 && b->data[p]; p++) {
                assert_int_equal(b->linesize[p] % 64, 0);
                assert_int_equal((uintptr_t)b->data[p] % 64, 0);
            }
        av_frame_free(&a);
        if (!kept)
            kept = b; /* read again after its decoder is gone */
        else
            av_frame_free(&b);
        n++;
    }
    b = next_frame(&ours);
    assert_null(b);
    long served = reel_framepool_served(ours.pool);
    close_decoding(&own);
    close_decoding(&ours);
    if (kept) {
        /* the first frame is still whole: decode it again and compare */
        Decoding again;
        open_decoding(&again, path, 0);
        a = next_frame(&again);
        assert_non_null(a);
        assert_same_pixels(kept, a, 0);
        av_frame_free(&a);
        close_decoding(&again);
    }
    av_frame_free(&kept);
    *frames = n;
    return served;
}

static void make(const char *name, const char *args)
{
    struct stat sb;
    if (stat(data(name), &sb) != 0)
        sh("ffmpeg -v error -y %s %s", args, data(name));
}

#define SRC(w, h, secs) "-f lavfi -i testsrc2=size=" #w "x" #h ":rate=25:duration=" #secs

static void test_codecs(void **state)
{
    (void)state;
    static const struct {
        const char *name, *args;
    } cases[] = {
        {"h264_420.mp4", SRC(322, 182, 2) " -c:v libx264 -bf 3 -pix_fmt yuv420p"},
        {"h264_444_odd.mp4", SRC(161, 97, 1) " -c:v libx264 -pix_fmt yuv444p"},
        {"hevc_10bit.mp4", SRC(320, 240, 1) " -c:v libx265 -x265-params log-level=error "
                                            "-pix_fmt yuv420p10le"},
        {"vp9.webm", SRC(200, 120, 1) " -c:v libvpx-vp9 -deadline realtime -pix_fmt yuv420p"},
        {"mpeg4.avi", SRC(176, 144, 1) " -c:v mpeg4 -q:v 3"},
        {"mjpeg_422.mov", SRC(130, 66, 1) " -c:v mjpeg -pix_fmt yuvj422p"},
        {"prores_422_10bit.mov", SRC(96, 64, 1) " -c:v prores_ks -profile:v 2"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int frames;
        make(cases[i].name, cases[i].args);
        long served = decode_both(data(cases[i].name), &frames);
        print_message("%s: %d frames, %ld from the pools\n", cases[i].name, frames, served);
        assert_true(frames >= 20);
        assert_true(served >= frames);
    }
}

static void test_palette_keeps_libavcodec(void **state)
{
    (void)state;
    int frames;
    make("pal8.mkv", SRC(64, 48, 1) " -c:v png -pix_fmt pal8");
    long served = decode_both(data("pal8.mkv"), &frames);
    assert_true(frames >= 20);
    assert_int_equal(served, 0);
}

static void test_size_change(void **state)
{
    (void)state;
    int frames;
    struct stat sb;
    if (stat(data("sizes.ts"), &sb) != 0) {
        make("size_a.ts", SRC(320, 240, 1) " -c:v libx264 -pix_fmt yuv420p");
        make("size_b.ts", SRC(160, 96, 1) " -c:v libx264 -pix_fmt yuv420p");
        sh("cat %s %s > %s", data("size_a.ts"), data("size_b.ts"), data("sizes.ts"));
    }
    long served = decode_both(data("sizes.ts"), &frames);
    assert_true(frames >= 40);
    assert_true(served >= frames);
}

/*
 * Opened with what a probe found, a source in a container with a header skips
 * avformat_find_stream_info (an H.264 stream's pixel format is then still
 * unknown to the demuxer: it is what that search decodes frames to learn) and
 * decodes the same frames, with the same times, as when opened alone; MPEG-TS,
 * whose streams appear as packets come, searches as before.
 */
static void test_open_with_probe(void **state)
{
    (void)state;
    static const struct {
        const char *name, *args;
        int skips;
    } cases[] = {
        {"h264_420.mp4", SRC(322, 182, 2) " -c:v libx264 -bf 3 -pix_fmt yuv420p", 1},
        {"h264_pyramid.mkv",
         SRC(200, 120, 2) " -c:v libx264 -x264-params "
                          "bframes=3:b-pyramid=normal -pix_fmt yuv420p",
         1},
        {"hevc_10bit.mp4",
         SRC(320, 240, 1) " -c:v libx265 -x265-params log-level=error "
                          "-pix_fmt yuv420p10le",
         1},
        {"vp9.webm", SRC(200, 120, 1) " -c:v libvpx-vp9 -deadline realtime -pix_fmt yuv420p", 1},
        {"mpeg4_b.avi", SRC(176, 144, 1) " -c:v mpeg4 -bf 2 -q:v 3", 1},
        {"h264.ts", SRC(200, 120, 2) " -c:v libx264 -bf 3 -pix_fmt yuv420p", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *path = data(cases[i].name);
        char err[REEL_ERRMSG_SIZE];
        ReelSourceInfo info;
        Decoding alone, known;
        AVFrame *a, *b;
        int n = 0;

        make(cases[i].name, cases[i].args);
        assert_int_equal(reel_media_probe(path, "clips[0].source", 0.0, &info, err), 0);
        assert_non_null(info.par);
        open_decoding(&alone, path, 1);
        open_known(&known, path, 1, &info);
        assert_int_equal(known.stream, alone.stream);
        enum AVPixelFormat demuxer_fmt = known.fmt->streams[known.stream]->codecpar->format;
        if (cases[i].skips && alone.dec->codec_id == AV_CODEC_ID_H264)
            assert_int_equal(demuxer_fmt, AV_PIX_FMT_NONE);
        if (!cases[i].skips)
            assert_int_not_equal(demuxer_fmt, AV_PIX_FMT_NONE);
        assert_int_equal(known.dec->has_b_frames, alone.dec->has_b_frames);
        while ((a = next_frame(&alone))) {
            b = next_frame(&known);
            if (!b)
                fail_msg("%s: opened with the probe's, it ended at frame %d", path, n);
            assert_same_pixels(a, b, n);
            if (a->best_effort_timestamp != b->best_effort_timestamp)
                fail_msg("%s: frame %d at %lld, alone at %lld", path, n,
                         (long long)b->best_effort_timestamp, (long long)a->best_effort_timestamp);
            av_frame_free(&a);
            av_frame_free(&b);
            n++;
        }
        assert_null(next_frame(&known));
        print_message("%s: %d frames alike, %s\n", cases[i].name, n,
                      demuxer_fmt == AV_PIX_FMT_NONE ? "no search" : "searched");
        assert_true(n >= 20);
        close_decoding(&alone);
        close_decoding(&known);
        reel_source_info_uninit(&info);
        assert_null(info.par);
    }
}

int main(void)
{
    const char *d = getenv("REEL_TEST_DATA");
    snprintf(data_dir, sizeof(data_dir), "%s", d ? d : "data");
    mkdir(data_dir, 0755);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codecs),
        cmocka_unit_test(test_palette_keeps_libavcodec),
        cmocka_unit_test(test_size_change),
        cmocka_unit_test(test_open_with_probe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
