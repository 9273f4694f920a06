/*
 * probe.c - open a source and learn what the job needs before any frame work:
 * the video stream, its decoded size, the time of its first decoded frame
 * (source time 0 for video and audio, DESIGN section 3) and its duration.
 * Every failure names the job field and the file.
 */
#include "media/media_int.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavutil/display.h>
#include <libavutil/mastering_display_metadata.h>

#include "core/error.h"
#include "core/job.h"

void reel_source_info_uninit(ReelSourceInfo *info)
{
    avcodec_parameters_free(&info->par);
}

/* A copy of par, or NULL when out of memory */
static AVCodecParameters *par_copy(const AVCodecParameters *par)
{
    AVCodecParameters *c = avcodec_parameters_alloc();

    if (c && avcodec_parameters_copy(c, par) < 0)
        avcodec_parameters_free(&c);
    return c;
}

/*
 * Whether fmt, just opened, holds the stream a probe of the same file found,
 * as it found it: a container whose header lists its streams (not MPEG-TS,
 * say, where streams appear as packets come) and the same codec at the same
 * index.
 */
static int holds_known(const AVFormatContext *fmt, const ReelSourceInfo *known)
{
    const AVCodecParameters *par;

    if (!known || !known->par || (fmt->ctx_flags & AVFMTCTX_NOHEADER) || known->video_stream < 0 ||
        (unsigned)known->video_stream >= fmt->nb_streams)
        return 0;
    par = fmt->streams[known->video_stream]->codecpar;
    return par->codec_type == AVMEDIA_TYPE_VIDEO && par->codec_id == known->par->codec_id;
}

int reel_media_open_video(const char *path, int threads, const ReelSourceInfo *known,
                          ReelDecoderPool **pool, AVFormatContext **pfmt, AVCodecContext **pdec,
                          int *pstream)
{
    AVFormatContext *fmt = NULL;
    AVCodecContext *dec = NULL;
    const AVCodec *codec = NULL;
    const AVCodecParameters *par;
    int ret, st;

    *pfmt = NULL;
    *pdec = NULL;
    if ((ret = avformat_open_input(&fmt, path, NULL, NULL)) < 0)
        return ret;
    if (holds_known(fmt, known)) {
        /* the probe's parameters (the decode delay it measured among them), so
         * the decoder starts as it would have after the search */
        st = known->video_stream;
        par = known->par;
        if (!(codec = avcodec_find_decoder(par->codec_id))) {
            ret = AVERROR_DECODER_NOT_FOUND;
            goto fail;
        }
    } else {
        if ((ret = avformat_find_stream_info(fmt, NULL)) < 0)
            goto fail;
        if ((st = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0)) < 0) {
            ret = st;
            goto fail;
        }
        par = fmt->streams[st]->codecpar;
    }
    for (unsigned i = 0; i < fmt->nb_streams; i++)
        fmt->streams[i]->discard = (int)i == st ? AVDISCARD_DEFAULT : AVDISCARD_ALL;
    if (!(dec = avcodec_alloc_context3(codec))) {
        ret = AVERROR(ENOMEM);
        goto fail;
    }
    if ((ret = avcodec_parameters_to_context(dec, par)) < 0)
        goto fail;
    dec->pkt_timebase = fmt->streams[st]->time_base;
    dec->thread_count = threads;
    if (pool && !(*pool = reel_framepool_attach(dec))) {
        ret = AVERROR(ENOMEM);
        goto fail;
    }
    if ((ret = avcodec_open2(dec, codec, NULL)) < 0)
        goto fail;
    *pfmt = fmt;
    *pdec = dec;
    *pstream = st;
    return 0;
fail:
    avcodec_free_context(&dec);
    if (pool)
        reel_framepool_detach(pool);
    avformat_close_input(&fmt);
    return ret;
}

void reel_rotated_size(int W, int H, double deg, int *rw, int *rh)
{
    double r = fmod(fmod(deg, 360.0) + 360.0, 360.0);
    if (r == 0.0 || r == 180.0) {
        *rw = W, *rh = H;
    } else if (r == 90.0 || r == 270.0) {
        *rw = H, *rh = W;
    } else {
        double a = r * M_PI / 180.0, c = fabs(cos(a)), s = fabs(sin(a));
        *rw = (int)ceil(W * c + H * s - 1e-9);
        *rh = (int)ceil(W * s + H * c - 1e-9);
    }
}

/* Side data of a stream or a frame, when it is whole */
static const void *stream_data(const AVStream *s, enum AVPacketSideDataType type, size_t need)
{
    size_t size = 0;
    const uint8_t *p = av_stream_get_side_data(s, type, &size);

    return p && size >= need ? p : NULL;
}

static const void *frame_data(const AVFrame *f, enum AVFrameSideDataType type, size_t need)
{
    const AVFrameSideData *sd = av_frame_get_side_data(f, type);

    return sd && sd->size >= need ? sd->data : NULL;
}

/*
 * The brightest light an HDR10 source declares, in cd/m2: its content light
 * level (MaxCLL), else its mastering display's peak luminance, as the
 * container has them (MP4's clli and mdcv boxes, Matroska's colour
 * elements), else as the first frame's SEI has them; 0 when none is given.
 * These are the figures a display tone maps HDR10 to its own peak by.
 */
static double declared_peak(const AVStream *s, const AVFrame *f)
{
    const AVContentLightMetadata *cll =
        stream_data(s, AV_PKT_DATA_CONTENT_LIGHT_LEVEL, sizeof(*cll));
    const AVMasteringDisplayMetadata *md =
        stream_data(s, AV_PKT_DATA_MASTERING_DISPLAY_METADATA, sizeof(*md));

    if (!cll)
        cll = frame_data(f, AV_FRAME_DATA_CONTENT_LIGHT_LEVEL, sizeof(*cll));
    if (!md)
        md = frame_data(f, AV_FRAME_DATA_MASTERING_DISPLAY_METADATA, sizeof(*md));
    if (cll && cll->MaxCLL > 0)
        return cll->MaxCLL;
    if (md && md->has_luminance && md->max_luminance.den > 0 && md->max_luminance.num > 0)
        return av_q2d(md->max_luminance);
    return 0.0;
}

/*
 * The turn, counter-clockwise in degrees (0-360), that a stream's display
 * matrix asks of its frames: phones store a portrait video's frames landscape
 * and mark them to be shown turned a quarter. Players, browsers (the editor
 * the crops are drawn in) and ffmpeg's own autorotation show the turned frame.
 * Within half a degree of a quarter turn it is that quarter turn, made
 * exactly. A mirrored matrix is taken for its rotation alone.
 */
static double display_rotation(const AVStream *s)
{
    size_t size = 0;
    const int32_t *m =
        (const int32_t *)av_stream_get_side_data(s, AV_PKT_DATA_DISPLAYMATRIX, &size);

    if (!m || size < 9 * sizeof(int32_t))
        return 0.0;
    double a = av_display_rotation_get(m), q = round(a / 90.0) * 90.0;
    if (isnan(a))
        return 0.0;
    if (fabs(a - q) < 0.5)
        a = q;
    return fmod(fmod(a, 360.0) + 360.0, 360.0);
}

/*
 * The end of stream st, in seconds, from its packets' times: the rest of the
 * file read (demuxed, not decoded), for a file whose header gives no duration
 * (a Matroska file written to a pipe, which has no index either). -1 when no
 * packet has a time.
 */
static double read_to_end(AVFormatContext *fmt, AVPacket *pkt, int st)
{
    const AVStream *s = fmt->streams[st];
    int64_t last = AV_NOPTS_VALUE;

    while (av_read_frame(fmt, pkt) >= 0) {
        int64_t t = pkt->pts != AV_NOPTS_VALUE ? pkt->pts : pkt->dts;
        if (pkt->stream_index == st && t != AV_NOPTS_VALUE) {
            t += pkt->duration > 0 ? pkt->duration : 0;
            if (last == AV_NOPTS_VALUE || t > last)
                last = t;
        }
        av_packet_unref(pkt);
    }
    return last == AV_NOPTS_VALUE ? -1.0 : last * av_q2d(s->time_base);
}

int reel_media_probe(const char *path, const char *what, double rotation, ReelSourceInfo *info,
                     char *errmsg)
{
    AVFormatContext *fmt = NULL;
    AVCodecContext *dec = NULL;
    ReelDecoderPool *pool = NULL;
    AVPacket *pkt = av_packet_alloc();
    AVFrame *frame = av_frame_alloc();
    char buf[128];
    int ret, st, got = 0;

    memset(info, 0, sizeof(*info));
    if (!pkt || !frame) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "%s: out of memory", what);
        goto end;
    }
    /* one thread: frame threads would decode a frame per thread before the
     * first came out, and start and fill a pool per thread (~0.1 s for a
     * 1080p source here, for one frame that takes ~5 ms alone) */
    if ((ret = reel_media_open_video(path, 1, NULL, &pool, &fmt, &dec, &st)) < 0) {
        if (ret == AVERROR_STREAM_NOT_FOUND)
            ret = reel_fail(errmsg, REEL_ERROR_MEDIA, "%s: %s has no video stream", what, path);
        else
            ret = reel_fail(errmsg, REEL_ERROR_MEDIA, "%s: cannot read %s: %s", what, path,
                            reel_strerror(ret, buf, sizeof(buf)));
        goto end;
    }
    /* decode the first frame: its time is source time 0 */
    while (!got) {
        ret = av_read_frame(fmt, pkt);
        if (ret < 0) {
            avcodec_send_packet(dec, NULL); /* drain */
        } else if (pkt->stream_index != st) {
            av_packet_unref(pkt);
            continue;
        } else {
            avcodec_send_packet(dec, pkt); /* errors show as no frame */
            av_packet_unref(pkt);
        }
        int r = avcodec_receive_frame(dec, frame);
        if (r == 0) {
            got = 1;
        } else if (ret < 0 && r != AVERROR(EAGAIN)) {
            break;
        }
    }
    if (!got) {
        ret =
            reel_fail(errmsg, REEL_ERROR_MEDIA, "%s: %s has no decodable video frames", what, path);
        goto end;
    }
    AVStream *s = fmt->streams[st];
    int64_t pts = frame->best_effort_timestamp;
    if (pts == AV_NOPTS_VALUE)
        pts = s->start_time != AV_NOPTS_VALUE ? s->start_time : 0;
    info->t0 = pts * av_q2d(s->time_base);
    info->width = frame->width;
    info->height = frame->height;
    info->video_stream = st;
    /* the end of the video: stream duration if known, else the container's */
    double end = -1.0;
    if (s->duration != AV_NOPTS_VALUE && s->duration > 0) {
        double start = s->start_time != AV_NOPTS_VALUE ? s->start_time * av_q2d(s->time_base) : 0;
        end = start + s->duration * av_q2d(s->time_base);
    } else if (fmt->duration > 0) {
        double start =
            fmt->start_time != AV_NOPTS_VALUE ? fmt->start_time / (double)AV_TIME_BASE : 0;
        end = start + fmt->duration / (double)AV_TIME_BASE;
    }
    if (end <= info->t0) /* none declared (a Matroska file written to a pipe) */
        end = read_to_end(fmt, pkt, st);
    if (end <= info->t0) {
        ret =
            reel_fail(errmsg, REEL_ERROR_MEDIA, "%s: %s has no duration (truncated?)", what, path);
        goto end;
    }
    info->duration = end - info->t0;
    if (info->width <= 0 || info->height <= 0 || info->width > 16384 || info->height > 16384) {
        ret = reel_fail(errmsg, REEL_ERROR_MEDIA, "%s: %s: unsupported frame size %dx%d", what,
                        path, info->width, info->height);
        goto end;
    }
    info->rotation = fmod(display_rotation(s) + rotation, 360.0);
    info->pq_peak = declared_peak(s, frame);
    reel_rotated_size(info->width, info->height, info->rotation, &info->rot_width,
                      &info->rot_height);
    if (!(info->par = par_copy(s->codecpar))) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "%s: out of memory", what);
        goto end;
    }
    ret = 0;
end:
    av_frame_free(&frame);
    av_packet_free(&pkt);
    avcodec_free_context(&dec);
    reel_framepool_detach(&pool);
    avformat_close_input(&fmt);
    return ret;
}

/* ---- every clip's source ---------------------------------------------------- */

#define PROBE_THREADS 8

typedef struct ProbeWork {
    const ReelJob *job;
    ReelSourceInfo *info;
    const int *first; /* k -> the first clip probing the same source and rotation */
    int *ret;         /* k -> its probe's result */
    char (*err)[REEL_ERRMSG_SIZE];
    atomic_int next; /* the next clip to take */
} ProbeWork;

static void clip_what(const ReelClip *c, char *what, size_t size)
{
    snprintf(what, size, "clips[clipIndex=%d].source", c->clip_index);
}

static void *probe_worker(void *arg)
{
    ProbeWork *w = arg;
    int k;

    while ((k = atomic_fetch_add(&w->next, 1)) < w->job->nb_clips) {
        const ReelClip *c = &w->job->clips[k];
        char what[64];

        if (w->first[k] != k)
            continue;
        clip_what(c, what, sizeof(what));
        w->ret[k] = reel_media_probe(c->source, what, c->rotation, &w->info[k], w->err[k]);
    }
    return NULL;
}

static int cpus(void)
{
    cpu_set_t set;

    return sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0 ? CPU_COUNT(&set)
                                                                               : 1;
}

int reel_media_probe_clips(const ReelJob *job, ReelSourceInfo *info, char *errmsg)
{
    int n = job->nb_clips, sources = 0, started = 0, ret = 0;
    ProbeWork w = {.job = job, .info = info};
    pthread_t tid[PROBE_THREADS - 1];
    int *first = calloc((size_t)n + 1, sizeof(*first));
    int *rets = calloc((size_t)n + 1, sizeof(*rets));

    w.err = calloc((size_t)n + 1, sizeof(*w.err));
    if (!first || !rets || !w.err) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "out of memory");
        goto end;
    }
    for (int k = 0; k < n; k++) {
        const ReelClip *c = &job->clips[k];

        first[k] = -1; /* no source: nothing to probe */
        for (int j = 0; c->source && j < k && first[k] < 0; j++)
            if (job->clips[j].source && !strcmp(job->clips[j].source, c->source) &&
                job->clips[j].rotation == c->rotation)
                first[k] = j;
        if (c->source && first[k] < 0)
            first[k] = k, sources++;
    }
    w.first = first;
    w.ret = rets;
    atomic_init(&w.next, 0);
    /* each probe decodes on one thread; this thread probes too */
    for (int want = sources < cpus() ? sources : cpus();
         started < want - 1 && started < PROBE_THREADS - 1; started++)
        if (pthread_create(&tid[started], NULL, probe_worker, &w) != 0)
            break;
    probe_worker(&w);
    for (int i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    for (int k = 0; k < n; k++) {
        char what[64];

        clip_what(&job->clips[k], what, sizeof(what));
        if (first[k] < 0) {
            ret = reel_fail(errmsg, REEL_ERROR_INVALID_JOB, "%s: missing", what);
            break;
        }
        if (first[k] == k && rets[k] < 0) {
            ret = rets[k];
            if (errmsg)
                snprintf(errmsg, REEL_ERRMSG_SIZE, "%s", w.err[k]);
            break;
        }
        if (first[k] != k) { /* the same source: its own copy of the parameters */
            info[k] = info[first[k]];
            if (!(info[k].par = par_copy(info[first[k]].par))) {
                ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "out of memory");
                break;
            }
        }
    }
end:
    free(first);
    free(rets);
    free(w.err);
    return ret;
}

void reel_rotate_rgb(const uint8_t *src, int W, int H, int ss, uint8_t *dst, int dw, int dh, int ds,
                     double deg)
{
    double r = fmod(fmod(deg, 360.0) + 360.0, 360.0);

    if (r == 0.0 || r == 90.0 || r == 180.0 || r == 270.0) {
        for (int y = 0; y < dh; y++) {
            uint8_t *d = dst + (size_t)y * ds;
            for (int x = 0; x < dw; x++) {
                int sx, sy; /* counter-clockwise: dst (x, y) shows src (sx, sy) */
                if (r == 0.0)
                    sx = x, sy = y;
                else if (r == 90.0)
                    sx = W - 1 - y, sy = x;
                else if (r == 180.0)
                    sx = W - 1 - x, sy = H - 1 - y;
                else
                    sx = y, sy = H - 1 - x;
                memcpy(d + 3 * x, src + (size_t)sy * ss + 3 * sx, 3);
            }
        }
        return;
    }
    double a = r * M_PI / 180.0, c = cos(a), s = sin(a);
    double cx = (W - 1) / 2.0, cy = (H - 1) / 2.0, dcx = (dw - 1) / 2.0, dcy = (dh - 1) / 2.0;
    for (int y = 0; y < dh; y++) {
        uint8_t *d = dst + (size_t)y * ds;
        for (int x = 0; x < dw; x++) {
            /* image y points down, so a counter-clockwise turn on screen maps
             * dst offset (u, v) back to src by the clockwise matrix */
            double u = x - dcx, v = y - dcy;
            double fx = c * u - s * v + cx, fy = s * u + c * v + cy;
            int x0 = (int)floor(fx), y0 = (int)floor(fy);
            double ax = fx - x0, ay = fy - y0;
            for (int ch = 0; ch < 3; ch++) {
                double acc = 0.0;
                for (int k = 0; k < 4; k++) {
                    int px = x0 + (k & 1), py = y0 + (k >> 1);
                    double w = ((k & 1) ? ax : 1 - ax) * ((k >> 1) ? ay : 1 - ay);
                    if (px >= 0 && py >= 0 && px < W && py < H)
                        acc += w * src[(size_t)py * ss + 3 * px + ch];
                }
                d[3 * x + ch] = (uint8_t)(acc + 0.5 > 255 ? 255 : acc + 0.5);
            }
        }
    }
}
