/*
 * media_util.c - helpers shared by the media tests: generated sources, jobs,
 * ffprobe as JSON, files. See media_util.h.
 */
#include "media_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>

#include "core/error.h"

char data_dir[1024];

const char *data(const char *name)
{
    static char bufs[8][1200];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", data_dir, name);
    return b;
}

void sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (system(cmd) != 0)
        fail_msg("command failed: %s", cmd);
}

/* Generate a source once: name, lavfi video graph, optional lavfi audio, seconds. */
void gen(const char *name, const char *video, const char *audio, double secs)
{
    struct stat sb;
    if (stat(data(name), &sb) == 0)
        return;
    if (audio)
        sh("ffmpeg -v error -y -f lavfi -i \"%s\" -f lavfi -i \"%s\" -t %g -c:v libx264 -preset "
           "veryfast -crf 4 -pix_fmt yuv420p -c:a aac -b:a 128k -shortest %s",
           video, audio, secs, data(name));
    else
        sh("ffmpeg -v error -y -f lavfi -i \"%s\" -t %g -c:v libx264 -preset veryfast -crf 4 "
           "-pix_fmt yuv420p %s",
           video, secs, data(name));
}

ReelJob *job_of(const char *json)
{
    char err[REEL_ERRMSG_SIZE];
    ReelJob *job = NULL;
    if (reel_job_parse(&job, json, data_dir, NULL, err) < 0)
        fail_msg("job: %s", err);
    return job;
}

json_t *ffprobe(const char *path)
{
    char cmd[2048], *buf = NULL;
    size_t len = 0;
    FILE *p, *mem = open_memstream(&buf, &len);
    snprintf(cmd, sizeof(cmd),
             "ffprobe -v error -count_frames -show_streams -show_chapters -show_format -of json %s",
             path);
    p = popen(cmd, "r");
    assert_non_null(p);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0)
        fwrite(chunk, 1, n, mem);
    assert_int_equal(pclose(p), 0);
    fclose(mem);
    json_error_t e;
    json_t *j = json_loads(buf, 0, &e);
    free(buf);
    assert_non_null(j);
    return j;
}

json_t *stream_of(json_t *probe, const char *type)
{
    json_t *streams = json_object_get(probe, "streams");
    for (size_t i = 0; i < json_array_size(streams); i++) {
        json_t *s = json_array_get(streams, i);
        if (!strcmp(json_string_value(json_object_get(s, "codec_type")), type))
            return s;
    }
    return NULL;
}

double jnum(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_string(v))
        return atof(json_string_value(v));
    return json_number_value(v);
}

char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

void remux_turned(const char *src, const char *dst, double ccw)
{
    AVFormatContext *in = NULL, *out = NULL;
    AVPacket *pkt = av_packet_alloc();

    assert_non_null(pkt);
    assert_int_equal(avformat_open_input(&in, src, NULL, NULL), 0);
    assert_true(avformat_find_stream_info(in, NULL) >= 0);
    assert_true(avformat_alloc_output_context2(&out, NULL, NULL, dst) >= 0);
    for (unsigned i = 0; i < in->nb_streams; i++) {
        AVStream *s = avformat_new_stream(out, NULL);
        assert_non_null(s);
        assert_true(avcodec_parameters_copy(s->codecpar, in->streams[i]->codecpar) >= 0);
        s->codecpar->codec_tag = 0;
        s->time_base = in->streams[i]->time_base;
        if (s->codecpar->codec_type == AVMEDIA_TYPE_VIDEO) {
            int32_t *m = (int32_t *)av_stream_new_side_data(s, AV_PKT_DATA_DISPLAYMATRIX,
                                                            9 * sizeof(int32_t));
            assert_non_null(m);
            av_display_rotation_set(m, -ccw); /* it takes clockwise degrees */
        }
    }
    assert_true(avio_open(&out->pb, dst, AVIO_FLAG_WRITE) >= 0);
    assert_true(avformat_write_header(out, NULL) >= 0);
    while (av_read_frame(in, pkt) >= 0) {
        av_packet_rescale_ts(pkt, in->streams[pkt->stream_index]->time_base,
                             out->streams[pkt->stream_index]->time_base);
        assert_true(av_interleaved_write_frame(out, pkt) >= 0);
    }
    assert_true(av_write_trailer(out) >= 0);
    avio_closep(&out->pb);
    avformat_free_context(out);
    avformat_close_input(&in);
    av_packet_free(&pkt);
}
