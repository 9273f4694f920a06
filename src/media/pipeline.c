/*
 * pipeline.c - reel_export_run(): one job in, one finished reel out
 * (DESIGN sections 3 and 4; export.h has the contract).
 *
 * DESIGN
 *
 *   probe (caller's thread)      every source opened, first frame decoded, the
 *        |                       job completed with sizes and durations, the
 *        |                       layout computed, the muxer's header written to
 *        |                       a temporary file: every input error is found
 *        |                       before a frame is processed.
 *        v
 *   decode thread                clip by clip: seek to the trim, decode forward,
 *        |  ReelQueue decoded    and for each output frame n pick the source
 *        |  (DecItem, 8)         frame with the largest pts <= t + 1 us (a
 *        |                       reference, not a copy: repeats are free).
 *        v
 *   transform thread             YUV path (BT.709 source, no model, no
 *        |  ReelQueue composed   rotation): crop + Lanczos straight to yuv420p.
 *        |  (AVFrame yuv420p,    RGB path: region to RGB (source tags), rotate,
 *        |   8, from a pool)     crop, upscale (model loaded once), Lanczos,
 *        |                       to BT.709 limited yuv420p. Then the compositor
 *        |                       in YUV: fades scale towards black, a dissolve
 *        |                       holds the last D frames of clip k until clip
 *        |                       k+1's first D arrive and blends.
 *        v
 *   encode thread (caller's)     libx264 (or the lossless part encoder); the
 *                                audio packets up to each video frame's end,
 *                                interleaved into ONE mp4; trailer
 *                                (+faststart), rename.
 *
 *   audio thread                 the audio timeline (audio.h) encoded to AAC
 *      ReelQueue audio_pkts      (PCM for a part) ahead of the video, at most
 *      (AVPacket, AUDIO_AHEAD)   AUDIO_AHEAD packets; an empty packet ends.
 *
 * Ownership: a DecItem owns its frame reference until the transform stage
 * frees it; an output frame belongs to the queue until popped, then to the popper.
 * Memory is bounded by the two frame queues (8 frames each), the audio
 * packet queue (~1 MB of AAC, 8 MB of a part's PCM), the dissolve hold
 * (D output frames) and one source frame per stage: nothing grows with the
 * number or the length of the clips.
 *
 * Errors: the first failure (or a cancel) is recorded once, both queues are
 * aborted so every stage returns, the temporary files are deleted and the
 * recorded message is returned. Nothing is ever left at the output paths.
 */
#include "media/export.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#include "core/error.h"
#include "core/log.h"
#include "core/timeline.h"
#include "media/audio.h"
#include "media/framepool.h"
#include "media/hdr.h"
#include "media/media_int.h"
#include "media/queue.h"
#include "media/resize.h"
#include "upscale/upscale.h"

#define QUEUE_FRAMES 8
#define PROGRESS_INTERVAL_S 0.1
#define AUDIO_FRAME 1024
#define AUDIO_AHEAD 1024 /* encoded audio packets queued ahead of the video (~21 s) */

typedef struct DecItem {
    AVFrame *frame; /* NULL marks the end of the reel */
    int64_t seq;    /* place in the reel's stream of decoded frames */
    int clip;
    int64_t n;
    double t;
} DecItem;

/*
 * A transformed frame on its way to the compositor. A worker may run up to
 * PARK frames ahead of the frame the compositor waits for, or twice the
 * workers when there are more than 4 (Export.park_ahead). Each worker used to wait
 * for its frame's turn, idling its core whenever the other lane's frame came
 * late (its thread preempted by libx264's, say). A 68x120 crop upscaled on two
 * lanes into 270 frames of 272x480, 4 alternating runs: 9.10-10.16 s with
 * 1.83-1.91 CPUs busy before, 8.89-9.07 s with 1.96-1.97 parked; the same
 * bytes out.
 */
#define PARK 8
#define PARK_SLOTS (2 * REEL_UPSCALE_MAX_LANES) /* park_ahead's most */

typedef struct Parked {
    AVFrame *frame; /* NULL: the end of the reel */
    int64_t seq;
    int clip;
    int64_t n;
    int used;
} Parked;

/* What one run of the pipeline makes (reel_export_run, _part, _assemble). */
typedef enum ExportMode {
    MODE_REEL = 0, /* the finished MP4 */
    MODE_PART,     /* one clip, no transitions, into a lossless NUT part */
    MODE_ASSEMBLE, /* the reel from parts: sources are parts, no model */
} ExportMode;

#define PART_FRAMES_KEY "clipreel_frames"

typedef struct Export {
    ReelJob *job;
    ExportMode mode;
    const ReelExportOptions *opt;
    ReelLayout layout;
    ReelSourceInfo *src;
    int out_w, out_h;
    double fps;
    int64_t clip_frames_total; /* sum of N over clips: the work measure */

    ReelUpscaler *up;
    int own_up;
    pthread_mutex_t model_lock; /* open_model: the first worker that needs it loads it */

    /* Transform workers: nworkers threads take decoded frames as they come and
     * transform them at once (worker i upscales on the model's lane i); the
     * compositor then takes them strictly in decode order (deliver): the worker
     * whose frame is next (next_seq, under lock) composites it, then the parked
     * frames that follow it; a frame that is not next yet is parked and its
     * worker goes on to the next one, at most park_ahead frames ahead. */
    int nworkers;
    int64_t decoded_seq; /* decode stage only: frames handed out so far */
    pthread_cond_t turn; /* with lock: next_seq moved on, or err set */
    int64_t next_seq;
    Parked park[PARK_SLOTS]; /* with lock: frame seq in slot seq % PARK_SLOTS */
    int park_ahead;          /* PARK, or twice nworkers if more */
    AVFrame *held[1024]; /* compositor (the turn's holder only): dissolve's held frames */
    int64_t emitted;     /* compositor: reel frames emitted */

    ReelQueue decoded, composed;
    ReelQueue audio_pkts;   /* the audio stage's encoded packets, in order; an empty one ends */
    AVBufferPool *out_pool; /* output frames (yuv420p): no allocation per frame */
    int ls_y, ls_c;         /* their luma and chroma line sizes */

    pthread_mutex_t lock; /* guards everything below */
    int err;
    char errmsg[REEL_ERRMSG_SIZE];
    double percent;
    int64_t clip_frames_done, reel_frames_done;
    double t_start, t_last_progress;
    ReelPhase phase;
    double phase_start;
    double phase_s[REEL_PHASE_CANCELLED + 1];
    unsigned char *clip_upscaled; /* per clip: a frame of it went through the model */
} Export;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

const char *reel_phase_name(ReelPhase phase)
{
    static const char *const names[] = {"queued",   "downloading", "loading_model", "processing",
                                        "encoding", "finalizing",  "uploading",     "complete",
                                        "error",    "cancelled"};
    return (unsigned)phase < sizeof(names) / sizeof(names[0]) ? names[phase] : "unknown";
}

double reel_progress_as_step(const ReelProgress *p, ReelPhase *phase)
{
    double pct = p->percent;

    *phase = p->phase;
    if (*phase == REEL_PHASE_COMPLETE || *phase == REEL_PHASE_ERROR ||
        *phase == REEL_PHASE_CANCELLED)
        *phase = REEL_PHASE_FINALIZING;
    if (!(pct >= 0))
        pct = 0;
    return pct > 100 ? 100 : pct;
}

const char *reel_phase_message(ReelPhase phase, int clip, int total, char *buf, size_t size)
{
    switch (phase) {
    case REEL_PHASE_QUEUED:
        return "Queued";
    case REEL_PHASE_DOWNLOADING:
        return "Downloading source clips...";
    case REEL_PHASE_LOADING_MODEL:
        return "Loading AI model...";
    case REEL_PHASE_PROCESSING:
        if (clip > 0 && total > 0) {
            snprintf(buf, size, "Processing clip %d/%d...", clip, total);
            return buf;
        }
        return "Processing clips...";
    case REEL_PHASE_ENCODING:
        return "Encoding...";
    case REEL_PHASE_FINALIZING:
        return "Finalizing...";
    case REEL_PHASE_UPLOADING:
        return "Uploading result...";
    default:
        return "Working...";
    }
}

/* Record the export's first failure (later ones are dropped; msg is logged
 * unless its maker did), wake the turn takers and stop every stage. */
static int record_failure(Export *ex, int err, const char *msg, int logged)
{
    pthread_mutex_lock(&ex->lock);
    if (!ex->err) {
        ex->err = err;
        snprintf(ex->errmsg, sizeof(ex->errmsg), "%s", msg);
        if (err != REEL_ERROR_CANCELLED && !logged)
            reel_log(REEL_LOG_ERROR, "export", "%s", ex->errmsg);
        pthread_cond_broadcast(&ex->turn);
    }
    pthread_mutex_unlock(&ex->lock);
    reel_queue_abort(&ex->decoded);
    reel_queue_abort(&ex->composed);
    reel_queue_abort(&ex->audio_pkts);
    return err;
}

/* The same, the message formatted here. */
static int ex_fail(Export *ex, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int ex_fail(Export *ex, int err, const char *fmt, ...)
{
    char msg[REEL_ERRMSG_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return record_failure(ex, err, msg, 0);
}

static int cancelled(Export *ex)
{
    if (ex->opt->cancel && atomic_load(ex->opt->cancel)) {
        ex_fail(ex, REEL_ERROR_CANCELLED, "cancelled");
        return 1;
    }
    return 0;
}

/* Emit a progress event; percent never goes down. */
static void progress(Export *ex, ReelPhase phase, int clip, int force)
{
    ReelProgress p;
    double t = now_s();

    pthread_mutex_lock(&ex->lock);
    if (phase != ex->phase) {
        ex->phase_s[ex->phase] += t - ex->phase_start;
        ex->phase = phase;
        ex->phase_start = t;
        force = 1;
    }
    if (!force && t - ex->t_last_progress < PROGRESS_INTERVAL_S) {
        pthread_mutex_unlock(&ex->lock);
        return;
    }
    ex->t_last_progress = t;
    double pct;
    if (phase == REEL_PHASE_COMPLETE)
        pct = 100.0;
    else if (phase == REEL_PHASE_FINALIZING)
        pct = 97.0;
    else
        pct = 2.0 + 93.0 * (double)ex->clip_frames_done /
                        (double)(ex->clip_frames_total ? ex->clip_frames_total : 1);
    if (pct < ex->percent)
        pct = ex->percent;
    ex->percent = pct;
    memset(&p, 0, sizeof(p));
    p.phase = phase;
    p.clip = clip;
    p.total_clips = ex->job->nb_clips;
    p.frames_done = ex->reel_frames_done;
    p.frames_total = ex->layout.nb_frames;
    p.percent = pct;
    double el = t - ex->t_start;
    p.fps = el > 0 ? ex->reel_frames_done / el : 0.0;
    p.eta_s =
        ex->clip_frames_done > 0 && phase == REEL_PHASE_PROCESSING
            ? el * (double)(ex->clip_frames_total - ex->clip_frames_done) / ex->clip_frames_done
            : -1.0;
    p.message = reel_phase_name(phase);
    if (ex->opt->progress)
        ex->opt->progress(ex->opt->progress_opaque, &p);
    pthread_mutex_unlock(&ex->lock);
}

/* ---- decode stage --------------------------------------------------------- */

typedef struct Decoder {
    AVFormatContext *fmt;
    AVCodecContext *dec;
    ReelDecoderPool *pool;
    AVPacket *pkt;
    int stream;
    double tb, t0;
    int eof;
    int to_key; /* after a seek: packets before the next key frame's are dropped */
    double last_t;
    double slack; /* how late a frame's time may read and still count as due (frame_slack) */
} Decoder;

/*
 * A frame is due at output time t when its time is t or less, give or take
 * its container's rounding: Matroska and WebM keep times in milliseconds, so a
 * 30 fps frame 66.67 ms in reads 67, and taken as it reads it would come one
 * output frame late (every third frame dropped and its neighbour shown twice,
 * until stop 21); QuickTime's 1/600 s ticks round 29.97 fps the same way. So
 * half a tick, at most 1 ms (far below any frame interval), plus 1 us.
 */
static double frame_slack(AVRational tb)
{
    return fmin(0.5 * av_q2d(tb), 1e-3) + 1e-6;
}

static void decoder_close(Decoder *d)
{
    avcodec_free_context(&d->dec);
    reel_framepool_detach(&d->pool);
    avformat_close_input(&d->fmt);
    av_packet_free(&d->pkt);
}

/* The next decoded frame with its source time in *t, or NULL at the end.
 * A packet the decoder rejects is skipped (the previous frame is held). */
static AVFrame *decoder_next(Decoder *d, double *t)
{
    AVFrame *f = av_frame_alloc();
    if (!f)
        return NULL;
    for (;;) {
        int r = avcodec_receive_frame(d->dec, f);
        if (r == 0) {
            int64_t pts = f->best_effort_timestamp;
            *t = pts == AV_NOPTS_VALUE ? d->last_t + 1e-3 : pts * d->tb - d->t0;
            d->last_t = *t;
            return f;
        }
        if (r != AVERROR(EAGAIN) || d->eof)
            break;
        r = av_read_frame(d->fmt, d->pkt);
        if (r < 0) {
            d->eof = 1;
            avcodec_send_packet(d->dec, NULL);
            continue;
        }
        if (d->pkt->stream_index == d->stream) {
            if (d->to_key)
                d->to_key = !(d->pkt->flags & AV_PKT_FLAG_KEY);
            if (!d->to_key && avcodec_send_packet(d->dec, d->pkt) < 0)
                reel_log(REEL_LOG_WARNING, "export", "skipping a damaged video packet");
        }
        av_packet_unref(d->pkt);
    }
    av_frame_free(&f);
    return NULL;
}

static int key_frame(const AVFrame *f)
{
#if LIBAVUTIL_VERSION_INT >= AV_VERSION_INT(58, 29, 100)
    return !!(f->flags & AV_FRAME_FLAG_KEY);
#else
    return f->key_frame;
#endif
}

/*
 * Seek d to source time `at` (<= 0: the start) and decode the first frame
 * from there, its time in *t. NULL when nothing decodes.
 */
static AVFrame *decode_from(Decoder *d, double at, const char *what, double *t)
{
    int64_t ts = (int64_t)floor((fmax(at, 0.0) + d->t0) / d->tb);
    int r;

    /* the start of a stream of packets with times but no index (MPEG-TS, PS):
     * byte 0, since a seek to the first frame's time may land inside that
     * frame's packets and lose it */
    if (at <= 0.0 && (d->fmt->iformat->flags & AVFMT_TS_DISCONT) &&
        !(d->fmt->iformat->flags & AVFMT_NO_BYTE_SEEK))
        r = av_seek_frame(d->fmt, -1, 0, AVSEEK_FLAG_BYTE);
    else
        r = av_seek_frame(d->fmt, d->stream, ts, AVSEEK_FLAG_BACKWARD);
    if (r < 0)
        reel_log(REEL_LOG_WARNING, "export", "%s: seek to %.3f s failed, decoding on", what, at);
    avcodec_flush_buffers(d->dec);
    d->eof = 0;
    /* where the seek landed between key frames (no index), the packets up to
     * the next one only make the decoder complain of missing references */
    d->to_key = at > 0.0;
    return decoder_next(d, t);
}

/*
 * The first frame a trimmed clip needs: the last one at or before source time
 * `want` (its first output frame's), or the first of the file. A seek to
 * `start` lands on a key frame before it in a file with an index (MP4, MOV,
 * Matroska). In one without (MPEG-TS, MPEG-PS), it lands on the packet at that
 * time, and the decoder then skips to the next key frame, which may lie after
 * `want`: the frames in between would be missing, the later one shown in
 * their place. So a landing later than `want`, or on a frame that is not a
 * key frame, seeks again 1, 2, 4... s earlier, down to the start.
 */
static AVFrame *seek_clip(Decoder *d, double start, double want, const char *what, double *t)
{
    double back = 0.0;

    for (;;) {
        double at = start - back;
        AVFrame *f = decode_from(d, at, what, t);

        if (at <= 0.0 || (f && key_frame(f) && *t <= want + d->slack))
            return f;
        reel_log(REEL_LOG_DEBUG, "export", "%s: a seek to %.3f s landed at %s; seeking earlier",
                 what, at,
                 f ? (key_frame(f) ? "a later frame" : "a frame not a key frame") : "the end");
        av_frame_free(&f);
        back = back > 0.0 ? 2.0 * back : 1.0;
    }
}

static int decode_clip(Export *ex, int k)
{
    const ReelClip *clip = &ex->job->clips[k];
    char what[64];
    ReelClipFrames cf = {0};
    Decoder d = {0};
    AVFrame *cur = NULL, *next = NULL;
    double tcur = 0, tnext = 0;
    int ret;

    snprintf(what, sizeof(what), "clips[clipIndex=%d].source", clip->clip_index);
    if ((ret = reel_clip_frames_init(&cf, clip, ex->fps)) < 0)
        return ex_fail(ex, ret, "out of memory");
    if (!(d.pkt = av_packet_alloc()) ||
        (ret = reel_media_open_video(clip->source, 0, &ex->src[k], &d.pool, &d.fmt, &d.dec,
                                     &d.stream)) < 0) {
        ret = ex_fail(ex, REEL_ERROR_MEDIA, "%s: cannot read %s", what, clip->source);
        goto end;
    }
    d.tb = av_q2d(d.fmt->streams[d.stream]->time_base);
    d.slack = frame_slack(d.fmt->streams[d.stream]->time_base);
    d.t0 = ex->src[k].t0;
    if (clip->trim_start > 0.0)
        cur = seek_clip(&d, clip->trim_start, reel_clip_source_time(clip, &cf, ex->fps, 0, NULL),
                        what, &tcur);
    else
        cur = decoder_next(&d, &tcur);
    if (!cur) {
        ret = ex_fail(ex, REEL_ERROR_MEDIA, "%s: %s has no decodable frames at %.3f s", what,
                      clip->source, clip->trim_start);
        goto end;
    }
    next = decoder_next(&d, &tnext);
    for (int64_t n = 0; n < cf.nb_frames; n++) {
        double t = reel_clip_source_time(clip, &cf, ex->fps, n, NULL);
        while (next && tnext <= t + d.slack) {
            av_frame_free(&cur);
            cur = next;
            tcur = tnext;
            next = decoder_next(&d, &tnext);
        }
        if (cancelled(ex)) {
            ret = REEL_ERROR_CANCELLED;
            goto end;
        }
        DecItem *it = calloc(1, sizeof(*it));
        if (!it || !(it->frame = av_frame_clone(cur))) {
            free(it);
            ret = ex_fail(ex, REEL_ERR(ENOMEM), "out of memory");
            goto end;
        }
        it->seq = ex->decoded_seq++;
        it->clip = k;
        it->n = n;
        it->t = t;
        if ((ret = reel_queue_push(&ex->decoded, it)) < 0) {
            av_frame_free(&it->frame);
            free(it);
            goto end;
        }
    }
    ret = 0;
end:
    av_frame_free(&cur);
    av_frame_free(&next);
    decoder_close(&d);
    reel_clip_frames_uninit(&cf);
    return ret;
}

static void free_dec_item(void *p)
{
    DecItem *it = p;
    av_frame_free(&it->frame);
    free(it);
}

static void free_av_frame(void *p)
{
    AVFrame *f = p;
    av_frame_free(&f);
}

static void free_packet(void *p)
{
    AVPacket *pkt = p;
    av_packet_free(&pkt);
}

static void *decode_thread(void *arg)
{
    Export *ex = arg;
    for (int k = 0; k < ex->job->nb_clips; k++)
        if (decode_clip(ex, k) < 0)
            return NULL;
    for (int i = 0; i < ex->nworkers; i++) { /* one end mark per worker */
        DecItem *end = calloc(1, sizeof(*end));
        if (!end) {
            ex_fail(ex, REEL_ERR(ENOMEM), "out of memory");
            return NULL;
        }
        end->seq = ex->decoded_seq;
        if (reel_queue_push(&ex->decoded, end) < 0) {
            free(end);
            return NULL;
        }
    }
    return NULL;
}

/* ---- transform stage -------------------------------------------------------- */

typedef struct Transform {
    struct SwsContext *to_rgb, *resize, *to_yuv, *yuv_scale;
    int src_w, src_h, src_fmt, src_cs, src_range, src_hdr;
    int ys_w, ys_h, ys_fmt, ys_xodd, ys_yodd; /* what yuv_scale was made for */
    ReelResize lanczos;                       /* the YUV path's own scaler (media/resize.h) */
    int own_scaler;                           /* it is used (own_scaler()) */
    int convert_in_yuv; /* no AI: other colours brought to BT.709 in YUV (convert_region) */
    uint8_t *rgb, *rot, *up, *scaled;
    size_t rgb_size, rot_size, up_size, scaled_size;
    AVFrame *turned;  /* a source frame turned a quarter or a half, in YUV (turn_yuv) */
    ReelToneMap *hdr; /* an HDR or BT.2020 source's way to BT.709 (media/hdr.h) */
    double pq_peak;   /* the current clip's source peak, cd/m2 (0: unknown; hdr.h) */
    uint8_t *rgb48;   /* its RGB48 before that (RGB path) */
    size_t rgb48_size;
    AVFrame *mapped; /* a region brought to BT.709 4:2:0 (YUV path: convert_region) */
} Transform;

static int sws_cs_of(int colorspace)
{
    switch (colorspace) {
    case AVCOL_SPC_BT709:
        return SWS_CS_ITU709;
    case AVCOL_SPC_BT2020_NCL:
    case AVCOL_SPC_BT2020_CL:
        return SWS_CS_BT2020;
    case AVCOL_SPC_SMPTE240M:
        return SWS_CS_SMPTE240M;
    case AVCOL_SPC_FCC:
        return SWS_CS_FCC;
    default:
        return SWS_CS_ITU601; /* untagged: BT.601, as FFmpeg reads it */
    }
}

static int grow(uint8_t **buf, size_t *size, size_t need)
{
    if (need <= *size)
        return 0;
    uint8_t *n = av_realloc(*buf, need);
    if (!n)
        return REEL_ERR(ENOMEM);
    *buf = n;
    *size = need;
    return 0;
}

/* The first sample at or before pixel (x, y) in every plane of f (a chroma
 * sample covers 2 pixels in 4:2:0 and 4:2:2: x and y are rounded down). */
static void region_planes(const AVFrame *f, const AVPixFmtDescriptor *desc, int x, int y,
                          const uint8_t *src[4])
{
    for (int c = 0; c < desc->nb_components; c++) {
        const AVComponentDescriptor *cd = &desc->comp[c];
        int chroma = (c == 1 || c == 2) && !(desc->flags & AV_PIX_FMT_FLAG_RGB);
        int sx = chroma ? desc->log2_chroma_w : 0, sy = chroma ? desc->log2_chroma_h : 0;
        if (!src[cd->plane])
            src[cd->plane] = f->data[cd->plane] + (size_t)(y >> sy) * f->linesize[cd->plane] +
                             (size_t)(x >> sx) * cd->step;
    }
}

/* Whether f's Y'CbCr is full range (JPEG's) */
static int full_range(const AVFrame *f)
{
    return f->color_range == AVCOL_RANGE_JPEG || f->format == AV_PIX_FMT_YUVJ420P ||
           f->format == AV_PIX_FMT_YUVJ422P || f->format == AV_PIX_FMT_YUVJ444P;
}

/* tr->hdr made ready for f, of kind hdr (not NONE) */
static int tonemap_for(Export *ex, Transform *tr, const AVFrame *f, ReelHdrKind hdr)
{
    int bt2020 = f->color_primaries == AVCOL_PRI_BT2020 ||
                 (hdr != REEL_HDR_WIDE && f->color_primaries == AVCOL_PRI_UNSPECIFIED);
    if (!reel_tonemap_is(tr->hdr, hdr, bt2020, tr->pq_peak)) {
        reel_tonemap_free(&tr->hdr);
        if (!(tr->hdr = reel_tonemap_new(hdr, bt2020, tr->pq_peak)))
            return ex_fail(ex, REEL_ERR(ENOMEM), "out of memory");
    }
    return 0;
}

/* The red and blue weights of a source's Y'CbCr matrix, the one the RGB path
 * has swscale use (sws_cs_of). */
static void luma_weights(int colorspace, double *kr, double *kb)
{
    switch (sws_cs_of(colorspace)) {
    case SWS_CS_ITU709:
        *kr = 0.2126, *kb = 0.0722;
        break;
    case SWS_CS_BT2020:
        *kr = 0.2627, *kb = 0.0593;
        break;
    case SWS_CS_SMPTE240M:
        *kr = 0.212, *kb = 0.087;
        break;
    case SWS_CS_FCC:
        *kr = 0.30, *kb = 0.11;
        break;
    default:
        *kr = 0.299, *kb = 0.114;
        break;
    }
}

/* Whether a frame the YUV path cannot take as it is (yuv_direct) can be
 * brought to BT.709 in YUV (convert_region): planar Y'CbCr of 8 to 16 bits,
 * chroma subsampled at most 2x each way. */
static int yuv_convertible(const AVFrame *f)
{
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(f->format);
    return d && (d->flags & AV_PIX_FMT_FLAG_PLANAR) && d->nb_components == 3 &&
           !(d->flags & (AV_PIX_FMT_FLAG_RGB | AV_PIX_FMT_FLAG_BE | AV_PIX_FMT_FLAG_HWACCEL |
                         AV_PIX_FMT_FLAG_PAL)) &&
           d->comp[0].depth >= 8 && d->comp[0].depth <= 16 && d->log2_chroma_w <= 1 &&
           d->log2_chroma_h <= 1;
}

/* Region g of f (planar Y'CbCr of 8-16 bits, yuv_convertible) as
 * reel_tonemap_yuv and reel_tonemap_yuv_rgb read it */
static void yuv_region(const AVFrame *f, const ReelRect *g, ReelHdrKind hdr, ReelYuvRegion *src)
{
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(f->format);
    const uint8_t *planes[4] = {NULL};

    *src = (ReelYuvRegion){.width = g->width,
                           .height = g->height,
                           .log2_cw = d->log2_chroma_w,
                           .log2_ch = d->log2_chroma_h,
                           .depth = d->comp[0].depth,
                           .full_range = full_range(f)};
    region_planes(f, d, g->x, g->y, planes);
    for (int p = 0; p < 3; p++) {
        src->plane[p] = planes[p];
        src->stride[p] = f->linesize[p];
    }
    /* untagged: BT.2020's matrix for HDR, BT.601's for SDR (as the RGB path) */
    luma_weights(hdr && f->colorspace == AVCOL_SPC_UNSPECIFIED ? AVCOL_SPC_BT2020_NCL
                                                               : f->colorspace,
                 &src->kr, &src->kb);
}

/* Region (x, y, w, h) of a frame as packed RGB24 in tr->rgb (stride 3 * w):
 * only what the crop needs is converted. */
static int to_rgb(Export *ex, Transform *tr, const AVFrame *f, const ReelRect *reg)
{
    int full = full_range(f);
    int cs = sws_cs_of(f->colorspace);
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(f->format);
    const uint8_t *src[4] = {NULL};
    int ret;

    if (f->format == AV_PIX_FMT_GBRP) { /* parts (and RGB H.264): repack, exactly */
        if (grow(&tr->rgb, &tr->rgb_size, (size_t)reg->width * reg->height * 3 + 64) < 0)
            return ex_fail(ex, REEL_ERR(ENOMEM), "out of memory");
        for (int y = 0; y < reg->height; y++) {
            size_t row = (size_t)(reg->y + y);
            const uint8_t *g = f->data[0] + row * f->linesize[0] + reg->x;
            const uint8_t *b = f->data[1] + row * f->linesize[1] + reg->x;
            const uint8_t *r = f->data[2] + row * f->linesize[2] + reg->x;
            uint8_t *d = tr->rgb + (size_t)y * reg->width * 3;
            for (int x = 0; x < reg->width; x++) {
                d[3 * x] = r[x];
                d[3 * x + 1] = g[x];
                d[3 * x + 2] = b[x];
            }
        }
        return 0;
    }
    if (!desc)
        return ex_fail(ex, REEL_ERROR_MEDIA, "unsupported source pixel format %d", f->format);
    ReelHdrKind hdr = reel_hdr_kind(f->color_trc, f->color_primaries);
    enum AVPixelFormat rgb_fmt = hdr ? AV_PIX_FMT_RGB48 : AV_PIX_FMT_RGB24;
    if (hdr && (ret = tonemap_for(ex, tr, f, hdr)) < 0)
        return ret;
    if (hdr && yuv_convertible(f)) { /* HDR or BT.2020 from planar Y'CbCr: decoded here */
        ReelYuvRegion yr;
        if (grow(&tr->rgb, &tr->rgb_size, (size_t)reg->width * reg->height * 3 + 64) < 0)
            return ex_fail(ex, REEL_ERR(ENOMEM), "out of memory");
        yuv_region(f, reg, hdr, &yr);
        reel_tonemap_yuv_rgb(tr->hdr, &yr, tr->rgb, (ptrdiff_t)reg->width * 3);
        return 0;
    }
    /* other HDR or BT.2020 formats: swscale to 16-bit R'G'B', then to BT.709
     * light and signal */
    if (!tr->to_rgb || reg->width != tr->src_w || reg->height != tr->src_h ||
        f->format != tr->src_fmt || cs != tr->src_cs || full != tr->src_range ||
        (int)hdr != tr->src_hdr) {
        sws_freeContext(tr->to_rgb);
        tr->to_rgb =
            sws_getContext(reg->width, reg->height, f->format, reg->width, reg->height, rgb_fmt,
                           SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT | SWS_FULL_CHR_H_INP,
                           NULL, NULL, NULL);
        if (!tr->to_rgb)
            return ex_fail(ex, REEL_ERROR_MEDIA, "unsupported source pixel format %s",
                           av_get_pix_fmt_name(f->format));
        sws_setColorspaceDetails(tr->to_rgb, sws_getCoefficients(cs), full, sws_getCoefficients(cs),
                                 1, 0, 1 << 16, 1 << 16);
        tr->src_w = reg->width, tr->src_h = reg->height, tr->src_fmt = f->format;
        tr->src_cs = cs, tr->src_range = full, tr->src_hdr = (int)hdr;
        if (grow(&tr->rgb, &tr->rgb_size, (size_t)reg->width * reg->height * 3 + 64) < 0 ||
            (hdr &&
             grow(&tr->rgb48, &tr->rgb48_size, (size_t)reg->width * reg->height * 6 + 64) < 0))
            return ex_fail(ex, REEL_ERR(ENOMEM), "out of memory");
    }
    region_planes(f, desc, reg->x, reg->y, src);
    uint8_t *dst[4] = {hdr ? tr->rgb48 : tr->rgb};
    int dst_stride[4] = {reg->width * (hdr ? 6 : 3)};
    sws_scale(tr->to_rgb, src, f->linesize, 0, reg->height, dst, dst_stride);
    if (hdr)
        reel_tonemap_run(tr->hdr, (const uint16_t *)tr->rgb48, (ptrdiff_t)reg->width * 6,
                         reg->width, reg->height, tr->rgb, (ptrdiff_t)reg->width * 3);
    return 0;
}

/* The part of a W x H frame to convert for crop r: r grown by a margin (so the
 * chroma filter sees the same neighbours as on the whole frame), its origin on
 * the chroma grid, its size constant while r's is (one scaler, not one per
 * position). Formats that cannot be addressed by region convert whole. */
static ReelRect region_of(const AVFrame *f, const ReelRect *r)
{
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(f->format);
    ReelRect whole = {0, 0, f->width, f->height};
    const int margin = 4;

    if (!desc ||
        (desc->flags & (AV_PIX_FMT_FLAG_PAL | AV_PIX_FMT_FLAG_BITSTREAM | AV_PIX_FMT_FLAG_HWACCEL)))
        return whole;
    int ax = 1 << desc->log2_chroma_w, ay = 1 << desc->log2_chroma_h;
    int w = (r->width + 2 * margin + 2 * ax - 1) / ax * ax;
    int h = (r->height + 2 * margin + 2 * ay - 1) / ay * ay;
    if (w >= f->width || h >= f->height)
        return whole;
    ReelRect g;
    g.x = r->x - margin;
    g.x = g.x + w > f->width ? f->width - w : g.x;
    g.x = (g.x < 0 ? 0 : g.x) / ax * ax;
    g.y = r->y - margin;
    g.y = g.y + h > f->height ? f->height - h : g.y;
    g.y = (g.y < 0 ? 0 : g.y) / ay * ay;
    g.width = w;
    g.height = h;
    if (g.x + g.width < r->x + r->width || g.y + g.height < r->y + r->height)
        return whole; /* odd frame sizes: cannot align and cover */
    return g;
}

/* A new output frame: yuv420p, BT.709 limited range, from the pool. */
static AVFrame *new_out_frame(Export *ex)
{
    AVFrame *out = av_frame_alloc();
    if (!out)
        return NULL;
    if (!(out->buf[0] = av_buffer_pool_get(ex->out_pool))) {
        av_frame_free(&out);
        return NULL;
    }
    out->format = AV_PIX_FMT_YUV420P;
    out->width = ex->out_w;
    out->height = ex->out_h;
    out->data[0] = out->buf[0]->data;
    out->data[1] = out->data[0] + (size_t)ex->ls_y * ex->out_h;
    out->data[2] = out->data[1] + (size_t)ex->ls_c * (ex->out_h / 2);
    out->linesize[0] = ex->ls_y;
    out->linesize[1] = out->linesize[2] = ex->ls_c;
    out->color_range = AVCOL_RANGE_MPEG;
    out->colorspace = AVCOL_SPC_BT709;
    out->color_primaries = AVCOL_PRI_BT709;
    out->color_trc = AVCOL_TRC_BT709;
    return out;
}

/* RGB path: Lanczos-3 of a w x h RGB24 region (stride bytes) to the output
 * size, then to the output frame (BT.709 limited yuv420p). */
static AVFrame *rgb_to_out(Export *ex, Transform *tr, const uint8_t *src, int w, int h, int stride)
{
    AVFrame *out;

    if (w != ex->out_w || h != ex->out_h) { /* Lanczos at scale 1 is the identity */
        if (grow(&tr->scaled, &tr->scaled_size, (size_t)ex->out_w * ex->out_h * 3 + 64) < 0)
            return NULL;
        tr->resize = sws_getCachedContext(tr->resize, w, h, AV_PIX_FMT_RGB24, ex->out_w, ex->out_h,
                                          AV_PIX_FMT_RGB24, SWS_LANCZOS | SWS_ACCURATE_RND, NULL,
                                          NULL, NULL);
        if (!tr->resize)
            return NULL;
        const uint8_t *s[4] = {src};
        int ss[4] = {stride};
        uint8_t *d[4] = {tr->scaled};
        int ds[4] = {ex->out_w * 3};
        sws_scale(tr->resize, s, ss, 0, h, d, ds);
        src = tr->scaled;
        stride = ex->out_w * 3;
    }
    if (!tr->to_yuv) {
        tr->to_yuv =
            sws_getContext(ex->out_w, ex->out_h, AV_PIX_FMT_RGB24, ex->out_w, ex->out_h,
                           AV_PIX_FMT_YUV420P, SWS_BICUBIC | SWS_ACCURATE_RND, NULL, NULL, NULL);
        if (!tr->to_yuv)
            return NULL;
        sws_setColorspaceDetails(tr->to_yuv, sws_getCoefficients(SWS_CS_ITU709), 1,
                                 sws_getCoefficients(SWS_CS_ITU709), 0, 0, 1 << 16, 1 << 16);
    }
    if (!(out = new_out_frame(ex)))
        return NULL;
    const uint8_t *s[4] = {src};
    int ss[4] = {stride};
    sws_scale(tr->to_yuv, s, ss, 0, ex->out_h, out->data, out->linesize);
    return out;
}

/* Whether a frame can be cropped and scaled without leaving YUV: a planar or
 * packed YUV format with at most 2x chroma subsampling, already in the
 * output's colour space (BT.709, limited range); swscale does not convert
 * between YUV matrices. */
static int yuv_direct(const AVFrame *f)
{
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(f->format);
    return d && d->nb_components >= 3 && d->log2_chroma_w <= 1 && d->log2_chroma_h <= 1 &&
           !(d->flags & (AV_PIX_FMT_FLAG_RGB | AV_PIX_FMT_FLAG_PAL | AV_PIX_FMT_FLAG_BITSTREAM |
                         AV_PIX_FMT_FLAG_HWACCEL)) &&
           sws_cs_of(f->colorspace) == SWS_CS_ITU709 && f->color_range != AVCOL_RANGE_JPEG &&
           reel_hdr_kind(f->color_trc, f->color_primaries) == REEL_HDR_NONE &&
           f->format != AV_PIX_FMT_YUVJ420P && f->format != AV_PIX_FMT_YUVJ422P &&
           f->format != AV_PIX_FMT_YUVJ444P;
}

/* Region g of a frame (yuv_convertible) in the reel's colours, into
 * tr->mapped: 8-bit 4:2:0, BT.709 limited range, g's size, for the YUV path's
 * scaler. The source's matrix and range undone, and HDR or BT.2020 tone-mapped,
 * per pixel as the RGB path does, without its two RGB conversions and its RGB
 * Lanczos (docs/internals/media.md, Colour). */
static const AVFrame *convert_region(Export *ex, Transform *tr, const AVFrame *f, const ReelRect *g)
{
    ReelHdrKind hdr = reel_hdr_kind(f->color_trc, f->color_primaries);
    ReelYuvRegion src;
    AVFrame *m = tr->mapped;

    if (hdr && tonemap_for(ex, tr, f, hdr) < 0)
        return NULL;
    if (!m || m->width != g->width || m->height != g->height) {
        av_frame_free(&tr->mapped);
        if (!(m = tr->mapped = av_frame_alloc()))
            goto nomem;
        m->format = AV_PIX_FMT_YUV420P, m->width = g->width, m->height = g->height;
        if (av_frame_get_buffer(m, 64) < 0) {
            av_frame_free(&tr->mapped);
            goto nomem;
        }
        m->color_range = AVCOL_RANGE_MPEG;
        m->colorspace = AVCOL_SPC_BT709;
        m->color_primaries = AVCOL_PRI_BT709;
        m->color_trc = AVCOL_TRC_BT709;
    }
    yuv_region(f, g, hdr, &src);
    reel_tonemap_yuv(hdr ? tr->hdr : NULL, &src, m->data, m->linesize);
    return m;
nomem:
    ex_fail(ex, REEL_ERR(ENOMEM), "out of memory");
    return NULL;
}

/* CLIPREEL_CONVERT=rgb: sources in other colours than the reel's take the RGB
 * path even without AI (for the tests, which check both routes, and for
 * comparisons) */
static int convert_in_yuv(void)
{
    const char *e = getenv("CLIPREEL_CONVERT");
    return !e || strcmp(e, "rgb") != 0;
}

/* CLIPREEL_YUV_SCALER=swscale: swscale for every crop (for the benchmark) */
static int own_scaler(void)
{
    const char *e = getenv("CLIPREEL_YUV_SCALER");
    return !e || strcmp(e, "swscale") != 0;
}

/* YUV path: crop r of f, Lanczos-3 to the output frame, in YUV. clipreel's
 * own scaler (media/resize.h: 1.4-2.5x swscale's speed, the same bytes on every
 * CPU) takes 8-bit 4:2:0, 4:2:2 and 4:4:4 at ratios up to 4:3 smaller;
 * swscale's Lanczos the rest. A crop at an odd offset in subsampled chroma
 * starts half a chroma sample early: both scalers are told where that sample
 * sits (swscale: src_h/v_chr_pos, 1/256 luma pixels), so the geometry is
 * exact; the rest of the frame is not touched. */
static AVFrame *yuv_to_out(Export *ex, Transform *tr, const AVFrame *f, const ReelRect *r)
{
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(f->format);
    int xodd = d->log2_chroma_w ? r->x & 1 : 0, yodd = d->log2_chroma_h ? r->y & 1 : 0;
    const uint8_t *src[4] = {NULL};
    AVFrame *out = new_out_frame(ex);

    if (!out)
        return NULL;
    if (f->format == AV_PIX_FMT_YUV420P && r->x == 0 && r->y == 0 && r->width == ex->out_w &&
        r->height == ex->out_h) { /* the whole frame at the output size: a copy */
        for (int p = 0; p < 3; p++) {
            int h = p ? ex->out_h / 2 : ex->out_h, w = p ? ex->out_w / 2 : ex->out_w;
            for (int y = 0; y < h; y++)
                memcpy(out->data[p] + (size_t)y * out->linesize[p],
                       f->data[p] + (size_t)y * f->linesize[p], (size_t)w);
        }
        return out;
    }
    int ret = tr->own_scaler ? reel_resize_set(&tr->lanczos, f->format, r->x, r->y, r->width,
                                               r->height, ex->out_w, ex->out_h)
                             : AVERROR(ENOSYS);
    if (ret == 0) {
        reel_resize_run(&tr->lanczos, (const uint8_t *const *)f->data, f->linesize, out->data,
                        out->linesize);
        return out;
    }
    if (ret == AVERROR(ENOMEM))
        goto fail;
    if (!tr->yuv_scale || tr->ys_w != r->width || tr->ys_h != r->height ||
        tr->ys_fmt != f->format || tr->ys_xodd != xodd || tr->ys_yodd != yodd) {
        struct SwsContext *c;
        sws_freeContext(tr->yuv_scale);
        tr->yuv_scale = c = sws_alloc_context();
        if (!c)
            goto fail;
        av_opt_set_int(c, "srcw", r->width, 0);
        av_opt_set_int(c, "srch", r->height, 0);
        av_opt_set_int(c, "src_format", f->format, 0);
        av_opt_set_int(c, "dstw", ex->out_w, 0);
        av_opt_set_int(c, "dsth", ex->out_h, 0);
        av_opt_set_int(c, "dst_format", AV_PIX_FMT_YUV420P, 0);
        av_opt_set_int(c, "sws_flags", SWS_LANCZOS | SWS_ACCURATE_RND, 0);
        /* default chroma siting is centred (128); half a sample earlier: -128 */
        if (xodd)
            av_opt_set_int(c, "src_h_chr_pos", -128, 0);
        if (yodd)
            av_opt_set_int(c, "src_v_chr_pos", -128, 0);
        if (sws_init_context(c, NULL, NULL) < 0) {
            sws_freeContext(c);
            tr->yuv_scale = NULL;
            goto fail;
        }
        tr->ys_w = r->width, tr->ys_h = r->height, tr->ys_fmt = f->format;
        tr->ys_xodd = xodd, tr->ys_yodd = yodd;
    }
    region_planes(f, d, r->x, r->y, src);
    sws_scale(tr->yuv_scale, src, f->linesize, 0, r->height, out->data, out->linesize);
    return out;
fail:
    av_frame_free(&out);
    return NULL;
}

static int need_model(const Export *ex, const ReelRect *r)
{
    switch (ex->job->output.upscale_mode) {
    case REEL_UPSCALE_ALWAYS:
        return 1;
    case REEL_UPSCALE_OFF:
        return 0;
    default:
        return r->width < ex->out_w || r->height < ex->out_h;
    }
}

/* By default an export upscales frames side by side, one lane per thread: on
 * small crops that is 1.1x the frames per second of one lane with every thread
 * and it keeps the model going while encoder threads take a core
 * (docs/PERFORMANCE.md, Lanes). */
void reel_export_model_options(const ReelJob *job, const char *model_dir, int threads, int lanes,
                               ReelUpscaleOptions *uo)
{
    memset(uo, 0, sizeof(*uo));
    uo->model_dir = model_dir;
    uo->model = job->output.upscale_model;
    uo->tile = job->output.upscale_tile;
    uo->precision = job->output.upscale_bf16 ? REEL_UPSCALE_BF16 : REEL_UPSCALE_FP32;
    uo->threads = threads;
    uo->lanes = lanes > 0 ? lanes : -1;
}

static void model_options(const Export *ex, ReelUpscaleOptions *uo)
{
    reel_export_model_options(ex->job, ex->opt->model_dir, ex->opt->threads, ex->opt->lanes, uo);
}

/* Transform workers: one per model lane when the model may run, else one. */
static int workers_for(const Export *ex)
{
    ReelUpscaleOptions uo;

    if (ex->mode == MODE_ASSEMBLE || ex->job->output.upscale_mode == REEL_UPSCALE_OFF)
        return 1;
    if (ex->opt->upscaler)
        return reel_upscale_lanes(ex->opt->upscaler);
    model_options(ex, &uo);
    return reel_upscale_planned_lanes(&uo);
}

/* The model, once per export (model_lock held): the caller's, or loaded here.
 * Checked once that it has a lane for every worker. */
static int load_model(Export *ex)
{
    ReelUpscaleOptions uo;
    char err[REEL_ERRMSG_SIZE] = "";
    double t = now_s();

    if (ex->opt->upscaler) {
        ex->up = ex->opt->upscaler;
    } else {
        progress(ex, REEL_PHASE_LOADING_MODEL, 0, 1);
        model_options(ex, &uo);
        if (reel_upscale_open(&ex->up, &uo, err) < 0)
            return ex_fail(ex, REEL_ERROR_MODEL, "upscaler: %s", err);
        ex->own_up = 1;
        reel_log(REEL_LOG_INFO, "export", "model %s loaded in %.0f ms", uo.model,
                 (now_s() - t) * 1000);
        progress(ex, REEL_PHASE_PROCESSING, 0, 1);
    }
    if (reel_upscale_lanes(ex->up) < ex->nworkers)
        return ex_fail(ex, REEL_ERROR_INTERNAL, "upscaler: %d lanes for %d workers",
                       reel_upscale_lanes(ex->up), ex->nworkers);
    return 0;
}

static int open_model(Export *ex)
{
    int ret = 0;

    pthread_mutex_lock(&ex->model_lock);
    if (!ex->up)
        ret = load_model(ex);
    pthread_mutex_unlock(&ex->model_lock);
    return ret;
}

/* Multiply an RGB frame by w (fade towards black). */
/* Fade: every plane towards black (Y 16, Cb Cr 128), as RGB * w would. */
static void scale_frame(AVFrame *f, double w)
{
    int iw = (int)lrint(w * 65536.0);
    for (int p = 0; p < 3; p++) {
        int base = p ? 128 : 16, h = p ? f->height / 2 : f->height,
            wd = p ? f->width / 2 : f->width;
        int add = base * (65536 - iw) + 32768;
        for (int y = 0; y < h; y++) {
            uint8_t *q = f->data[p] + (size_t)y * f->linesize[p];
            for (int x = 0; x < wd; x++)
                q[x] = (uint8_t)((q[x] * iw + add) >> 16);
        }
    }
}

/* Dissolve: a = a * wa + b * wb about black (Y 16, Cb Cr 128), rounded. */
static void blend_into(AVFrame *a, double wa, const AVFrame *b, double wb)
{
    for (int p = 0; p < 3; p++) {
        int base = p ? 128 : 16, h = p ? a->height / 2 : a->height,
            wd = p ? a->width / 2 : a->width;
        for (int y = 0; y < h; y++) {
            uint8_t *q = a->data[p] + (size_t)y * a->linesize[p];
            const uint8_t *o = b->data[p] + (size_t)y * b->linesize[p];
            for (int x = 0; x < wd; x++) {
                double v = base + (q[x] - base) * wa + (o[x] - base) * wb + 0.5;
                q[x] = (uint8_t)(v < 0.0 ? 0.0 : v > 255.0 ? 255.0 : v);
            }
        }
    }
}

static int emit(Export *ex, AVFrame *f)
{
    f->pts = ex->emitted++;
    int ret = reel_queue_push(&ex->composed, f);
    if (ret < 0)
        av_frame_free(&f);
    return ret;
}

/* The compositor: clip frames arrive in order, reel frames leave in order.
 * Called by the worker holding the turn only; takes f. */
static int composite(Export *ex, int k, int64_t n, AVFrame *f)
{
    const ReelClipPlace *p = &ex->layout.clips[k];
    double w = reel_clip_weight(p, n);

    if (ex->job->transition == REEL_TRANSITION_DISSOLVE) {
        if (p->d_out > 0 && n >= p->nb_frames - p->d_out) {
            ex->held[n - (p->nb_frames - p->d_out)] = f; /* wait for the next clip */
            return 0;
        }
        if (p->d_in > 0 && n < p->d_in) {
            const ReelClipPlace *prev = &ex->layout.clips[k - 1];
            AVFrame *g = ex->held[n];
            ex->held[n] = NULL;
            blend_into(f, w, g, reel_clip_weight(prev, prev->nb_frames - p->d_in + n));
            av_frame_free(&g);
        }
    } else if (ex->job->transition == REEL_TRANSITION_FADE && w < 1.0) {
        scale_frame(f, w);
    }
    return emit(ex, f);
}

/* dst (w x h) = src plane turned q quarters counter-clockwise; src is h x w
 * for q odd, w x h for q = 2; samples of bps bytes (1 or 2). In 32x32 tiles,
 * so that both sides stay in cache. */
static void turn_plane(const uint8_t *src, ptrdiff_t ss, uint8_t *dst, ptrdiff_t ds, int w, int h,
                       int q, int bps)
{
    int sw = q == 2 ? w : h; /* the source plane's width */
    int sh = q == 2 ? h : w;

    for (int ty = 0; ty < h; ty += 32)
        for (int tx = 0; tx < w; tx += 32)
            for (int y = ty; y < h && y < ty + 32; y++) {
                uint8_t *d = dst + y * ds;
                for (int x = tx; x < w && x < tx + 32; x++) {
                    /* counter-clockwise: dst (x, y) shows src (sx, sy), as reel_rotate_rgb */
                    int sx = q == 1 ? sw - 1 - y : q == 2 ? sw - 1 - x : y;
                    int sy = q == 1 ? x : q == 2 ? sh - 1 - y : sh - 1 - x;
                    if (bps == 1)
                        d[x] = src[sy * ss + sx];
                    else
                        ((uint16_t *)d)[x] = ((const uint16_t *)(src + sy * ss))[sx];
                }
            }
}

/* f turned by deg (a multiple of 90) in its own planar YUV (8 to 16 bits),
 * into tr->turned: what a player shows, without leaving YUV (the RGB path
 * converts and rotates the whole frame). NULL when f's format cannot be (a
 * quarter turn of 4:2:2 would be 4:4:0; packed, RGB) or out of memory. */
static const AVFrame *turn_yuv(Transform *tr, const AVFrame *f, double deg)
{
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(f->format);
    int q = (int)lround(deg / 90.0) & 3;

    if (!d || !(d->flags & AV_PIX_FMT_FLAG_PLANAR) || (d->flags & AV_PIX_FMT_FLAG_RGB) ||
        d->comp[0].depth < 8 || d->comp[0].depth > 16 || d->nb_components != 3 ||
        (q != 2 && d->log2_chroma_w != d->log2_chroma_h))
        return NULL;
    int bps = d->comp[0].depth > 8 ? 2 : 1;
    int w = q == 2 ? f->width : f->height, h = q == 2 ? f->height : f->width;
    AVFrame *t = tr->turned;
    if (!t || t->width != w || t->height != h || t->format != f->format) {
        av_frame_free(&tr->turned);
        if (!(t = tr->turned = av_frame_alloc()))
            return NULL;
        t->format = f->format, t->width = w, t->height = h;
        if (av_frame_get_buffer(t, 64) < 0) {
            av_frame_free(&tr->turned);
            return NULL;
        }
    }
    if (av_frame_copy_props(t, f) < 0)
        return NULL;
    for (int p = 0; p < 3; p++) {
        int cw = p ? AV_CEIL_RSHIFT(w, q == 2 ? d->log2_chroma_w : d->log2_chroma_h) : w;
        int ch = p ? AV_CEIL_RSHIFT(h, q == 2 ? d->log2_chroma_h : d->log2_chroma_w) : h;
        turn_plane(f->data[p], f->linesize[p], t->data[p], t->linesize[p], cw, ch, q, bps);
    }
    return t;
}

/* One decoded frame to one output frame: in YUV when no model and no free
 * rotation is involved (quarter turns are made in YUV), straight when the
 * source is already BT.709 limited (the common case, and what the ffmpeg CLI
 * would do), else after convert_region; through RGB otherwise: rotate, crop,
 * upscale, resize. */
static int transform_item(Export *ex, Transform *tr, int lane, DecItem *it, AVFrame **pout)
{
    const ReelClip *clip = &ex->job->clips[it->clip];
    const AVFrame *f = it->frame;
    const uint8_t *crop;
    int W = f->width, H = f->height, stride, ret;
    double turn = ex->src[it->clip].rotation; /* the file's display turn, then the clip's */
    AVFrame *out;
    ReelRect r;

    tr->pq_peak = ex->src[it->clip].pq_peak;
    if (turn != 0.0 && fmod(turn, 90.0) == 0.0) { /* a quarter or half turn: in YUV if it can */
        const AVFrame *t = turn_yuv(tr, f, turn);
        if (t) {
            f = t;
            W = f->width, H = f->height, turn = 0.0;
        }
    }
    if (turn != 0.0) { /* rotate the whole frame, then crop */
        ReelRect whole = {0, 0, W, H};
        int rw, rh;
        if ((ret = to_rgb(ex, tr, f, &whole)) < 0)
            return ret;
        reel_rotated_size(W, H, turn, &rw, &rh);
        if (grow(&tr->rot, &tr->rot_size, (size_t)rw * rh * 3 + 64) < 0)
            return ex_fail(ex, REEL_ERR(ENOMEM), "out of memory");
        reel_rotate_rgb(tr->rgb, W, H, W * 3, tr->rot, rw, rh, rw * 3, turn);
        r = reel_crop_at(clip, it->t, rw, rh, ex->job->aspect_w, ex->job->aspect_h);
        crop = tr->rot + (size_t)r.y * rw * 3 + (size_t)r.x * 3;
        stride = rw * 3;
    } else {
        r = reel_crop_at(clip, it->t, W, H, ex->job->aspect_w, ex->job->aspect_h);
        int direct = yuv_direct(f);
        if (!need_model(ex, &r) && (direct || (tr->convert_in_yuv && yuv_convertible(f)))) {
            ReelRect in = r;
            if (!direct) { /* to BT.709 in YUV first: the region around the crop */
                ReelRect g = region_of(f, &r);
                if (!(f = convert_region(ex, tr, f, &g)))
                    return REEL_ERR(ENOMEM); /* failed already */
                in.x -= g.x, in.y -= g.y;
            }
            if (!(*pout = yuv_to_out(ex, tr, f, &in)))
                return ex_fail(ex, REEL_ERR(ENOMEM), "out of memory (resize)");
            return 0;
        }
        ReelRect g = region_of(f, &r); /* convert only the region around the crop */
        if ((ret = to_rgb(ex, tr, f, &g)) < 0)
            return ret;
        stride = g.width * 3;
        crop = tr->rgb + (size_t)(r.y - g.y) * stride + (size_t)(r.x - g.x) * 3;
    }
    if (need_model(ex, &r)) {
        if ((ret = open_model(ex)) < 0)
            return ret;
        pthread_mutex_lock(&ex->lock);
        ex->clip_upscaled[it->clip] = 1;
        pthread_mutex_unlock(&ex->lock);
        int s = reel_upscale_scale(ex->up);
        if (grow(&tr->up, &tr->up_size, (size_t)r.width * s * r.height * s * 3 + 64) < 0)
            return ex_fail(ex, REEL_ERR(ENOMEM), "out of memory");
        if ((ret = reel_upscale_run_lane(ex->up, lane, crop, r.width, r.height, stride, tr->up,
                                         (ptrdiff_t)r.width * s * 3)) < 0)
            return ex_fail(ex, ret, "upscaler: %s", reel_upscale_lane_errmsg(ex->up, lane));
        out = rgb_to_out(ex, tr, tr->up, r.width * s, r.height * s, r.width * s * 3);
    } else {
        out = rgb_to_out(ex, tr, crop, r.width, r.height, stride);
    }
    if (!out)
        return ex_fail(ex, REEL_ERR(ENOMEM), "out of memory (resize)");
    *pout = out;
    return 0;
}

/* The compositor's work for one frame in order: composite it, or end the reel. */
static int hand_on(Export *ex, Parked *p)
{
    AVFrame *end;

    if (p->frame)
        return composite(ex, p->clip, p->n, p->frame);
    if (!(end = av_frame_alloc())) /* an empty frame ends the reel */
        return ex_fail(ex, REEL_ERR(ENOMEM), "out of memory");
    if (reel_queue_push(&ex->composed, end) < 0) {
        av_frame_free(&end);
        return REEL_ERROR_CANCELLED; /* aborted: the failure is recorded */
    }
    return 0;
}

/*
 * Hand frame p over in decode order (taking p.frame; NULL: the end mark, one
 * per worker, all with the last seq). When p is next, this worker composites
 * it and then every parked frame that follows; else p is parked, once its seq
 * is within park_ahead of the next, and the worker goes on. The next frame is always
 * a worker's (the decoded queue hands frames out in order), so the wait ends.
 * 0, 1 when a frame would be lost, or the export's error.
 */
static int deliver(Export *ex, Parked p)
{
    int ret = 0;

    pthread_mutex_lock(&ex->lock);
    while (p.seq - ex->next_seq >= ex->park_ahead && !ex->err)
        pthread_cond_wait(&ex->turn, &ex->lock);
    if (ex->err || p.seq < ex->next_seq ||
        (p.seq > ex->next_seq && ex->park[p.seq % PARK_SLOTS].used)) {
        /* failed; or an end mark that another worker delivered or parked (a frame
         * there would be lost: 1) */
        ret = ex->err ? ex->err : p.frame ? 1 : 0;
        pthread_mutex_unlock(&ex->lock);
        av_frame_free(&p.frame);
        return ret;
    }
    if (p.seq > ex->next_seq) {
        p.used = 1;
        ex->park[p.seq % PARK_SLOTS] = p;
        pthread_mutex_unlock(&ex->lock);
        return 0;
    }
    for (;;) { /* p is next: this worker composites until a frame is missing */
        pthread_mutex_unlock(&ex->lock);
        ret = hand_on(ex, &p);
        pthread_mutex_lock(&ex->lock);
        if (ret != 0 || ex->err)
            break;
        ex->next_seq++;
        pthread_cond_broadcast(&ex->turn);
        Parked *q = &ex->park[ex->next_seq % PARK_SLOTS];
        if (!q->used || q->seq != ex->next_seq)
            break;
        p = *q;
        *q = (Parked){0};
    }
    ret = ret ? ret : ex->err;
    pthread_mutex_unlock(&ex->lock);
    return ret;
}

typedef struct Worker {
    Export *ex;
    int lane;
    pthread_t tid;
} Worker;

static void *transform_thread(void *arg)
{
    Worker *w = arg;
    Export *ex = w->ex;
    Transform tr;
    void *p;

    memset(&tr, 0, sizeof(tr));
    reel_resize_init(&tr.lanczos);
    tr.own_scaler = own_scaler();
    tr.convert_in_yuv = convert_in_yuv();
    while (reel_queue_pop(&ex->decoded, &p) == 0) {
        DecItem *it = p;
        AVFrame *out = NULL;
        int ret;

        if (!it->frame) { /* the end: the first mark whose turn it is ends the reel */
            deliver(ex, (Parked){.seq = it->seq});
            free(it);
            break;
        }
        ret = cancelled(ex) ? REEL_ERROR_CANCELLED : transform_item(ex, &tr, w->lane, it, &out);
        if (ret >= 0)
            ret = deliver(ex, (Parked){.frame = out, .seq = it->seq, .clip = it->clip, .n = it->n});
        else
            av_frame_free(&out);
        int clip = it->clip;
        free_dec_item(it);
        if (ret != 0) {
            ex_fail(ex, ret < 0 ? ret : REEL_ERROR_INTERNAL, "a frame was lost in transform");
            break;
        }
        pthread_mutex_lock(&ex->lock);
        ex->clip_frames_done++;
        pthread_mutex_unlock(&ex->lock);
        progress(ex, REEL_PHASE_PROCESSING, clip + 1, 0);
    }
    sws_freeContext(tr.to_rgb);
    sws_freeContext(tr.resize);
    sws_freeContext(tr.to_yuv);
    sws_freeContext(tr.yuv_scale);
    reel_resize_free(&tr.lanczos);
    av_free(tr.scaled);
    av_free(tr.rgb);
    av_free(tr.rot);
    av_frame_free(&tr.turned);
    reel_tonemap_free(&tr.hdr);
    av_frame_free(&tr.mapped);
    av_free(tr.rgb48);
    av_free(tr.up);
    return NULL;
}

/* ---- encode stage ------------------------------------------------------------- */

typedef struct Muxer {
    AVFormatContext *oc;
    AVCodecContext *venc, *aenc;
    AVStream *vst, *ast;
    AVPacket *pkt;
    AVFrame *aframe;
    ReelAudioReel *audio;
    float *left, *right; /* MODE_PART: planar samples before interleaving for PCM */
    int64_t audio_done;  /* samples encoded (the audio stage's) */
    AVPacket *apkt;      /* the audio stage's own (pkt is the encode thread's) */
    AVPacket *held;      /* the audio packet next in line, not yet due */
    int audio_ended;     /* the audio stage's end was seen */
    int header_written;
} Muxer;

/* Mux one packet of enc's stream (taking its data). */
static int mux_packet(Export *ex, Muxer *m, AVPacket *pkt, AVCodecContext *enc, AVStream *st)
{
    int ret;

    av_packet_rescale_ts(pkt, enc->time_base, st->time_base);
    pkt->stream_index = st->index;
    if ((ret = av_interleaved_write_frame(m->oc, pkt)) < 0) {
        char b[128];
        return ex_fail(ex, ret, "%s: writing failed: %s", ex->opt->output_path,
                       reel_strerror(ret, b, sizeof(b)));
    }
    return 0;
}

static int write_packets(Export *ex, Muxer *m, AVCodecContext *enc, AVStream *st)
{
    int ret;
    while ((ret = avcodec_receive_packet(enc, m->pkt)) == 0)
        if ((ret = mux_packet(ex, m, m->pkt, enc, st)) < 0)
            return ret;
    return ret == AVERROR(EAGAIN) || ret == AVERROR_EOF ? 0 : ret;
}

/*
 * The audio stage: the reel's audio timeline (audio.h) read and encoded in a
 * thread of its own, ahead of the video by at most the packet queue
 * (AUDIO_AHEAD packets, ~21 s), so its CPU time (the AAC encoder takes ~6 % of
 * a no-AI export) fills the moments the video stages wait (at the start, while
 * libx264's lookahead works alone, a core idles for ~0.2 s) instead of
 * stalling the video encoder's thread. The encode thread muxes the packets as
 * the video reaches them: the same packets in the same order, so the same
 * file as when it encoded them itself. (A queue of 96 packets, ~2 s, was full
 * before that idle moment came and left it idle.)
 */
typedef struct AudioStage {
    Export *ex;
    Muxer *m;
    pthread_t tid;
} AudioStage;

/* Move the encoder's ready packets to the queue. */
static int queue_audio_packets(Export *ex, Muxer *m)
{
    int ret;

    while ((ret = avcodec_receive_packet(m->aenc, m->apkt)) == 0) {
        AVPacket *p = av_packet_alloc();

        if (!p)
            return ex_fail(ex, REEL_ERR(ENOMEM), "out of memory");
        av_packet_move_ref(p, m->apkt);
        if ((ret = reel_queue_push(&ex->audio_pkts, p)) < 0) {
            av_packet_free(&p);
            return ret; /* aborted: the failure is recorded */
        }
    }
    return ret == AVERROR(EAGAIN) || ret == AVERROR_EOF ? 0
                                                        : ex_fail(ex, ret, "audio encoder failed");
}

static void *audio_thread(void *arg)
{
    AudioStage *as = arg;
    Export *ex = as->ex;
    Muxer *m = as->m;
    AVPacket *end;
    int ret = 0, got = AUDIO_FRAME;

    while (got == AUDIO_FRAME) {
        if (cancelled(ex))
            return NULL;
        if ((ret = av_frame_make_writable(m->aframe)) < 0) {
            ex_fail(ex, ret, "out of memory");
            return NULL;
        }
        float *l = m->left ? m->left : (float *)m->aframe->data[0];
        float *r = m->right ? m->right : (float *)m->aframe->data[1];
        if ((got = reel_audio_read(m->audio, l, r, AUDIO_FRAME)) < 0) {
            ex_fail(ex, got, "audio: %s", reel_audio_errmsg(m->audio));
            return NULL;
        }
        if (got == 0)
            break;
        if (m->left) { /* packed float PCM */
            float *d = (float *)m->aframe->data[0];
            for (int i = 0; i < got; i++) {
                d[2 * i] = l[i];
                d[2 * i + 1] = r[i];
            }
        }
        m->aframe->nb_samples = got;
        m->aframe->pts = m->audio_done;
        m->audio_done += got;
        if ((ret = avcodec_send_frame(m->aenc, m->aframe)) < 0) {
            ex_fail(ex, ret, "audio encoder failed");
            return NULL;
        }
        if (queue_audio_packets(ex, m) < 0)
            return NULL;
    }
    if ((ret = avcodec_send_frame(m->aenc, NULL)) < 0) {
        ex_fail(ex, ret, "audio encoder flush failed");
        return NULL;
    }
    if (queue_audio_packets(ex, m) < 0)
        return NULL;
    if (!(end = av_packet_alloc())) { /* an empty packet: the end */
        ex_fail(ex, REEL_ERR(ENOMEM), "out of memory");
        return NULL;
    }
    if (reel_queue_push(&ex->audio_pkts, end) < 0)
        av_packet_free(&end);
    return NULL;
}

/* Mux the audio packets that start before sample `until` (all of them when until < 0). */
static int mux_audio(Export *ex, Muxer *m, int64_t until)
{
    int ret;

    while (m->audio && !m->audio_ended) {
        if (!m->held) {
            void *p;

            if ((ret = reel_queue_pop(&ex->audio_pkts, &p)) < 0)
                return ret; /* aborted: the failure is recorded (export_job reads it) */
            m->held = p;
        }
        if (!m->held->data) {
            m->audio_ended = 1;
            av_packet_free(&m->held);
            break;
        }
        if (until >= 0 && m->held->pts >= until)
            break;
        ret = mux_packet(ex, m, m->held, m->aenc, m->ast);
        av_packet_free(&m->held);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int encode_video_frame(Export *ex, Muxer *m, AVFrame *f)
{
    int ret = avcodec_send_frame(m->venc, f);
    if (ret < 0)
        return ex_fail(ex, ret, "video encoder failed");
    return write_packets(ex, m, m->venc, m->vst);
}

/*
 * libx264 settings that make the same frames always give the same bytes, on
 * any machine with AVX2, which parallel mode, retries and our tests rely on
 * (docs/decisions.md):
 *  - libx264's kernels pinned to one set, AVX2, on every CPU that has it. With
 *    its AVX-512 kernels Debian's libx264 (core 164) encodes the same frames
 *    differently in a process that has encoded before (it reads memory it did
 *    not write: a fresh process sees zeroed pages, so the CLI looked
 *    reproducible, a server or worker running many exports is not); and its
 *    kernels for different instruction sets are not bit-exact with each other
 *    (C, AVX2 and AVX-512 each gave other bytes), so all workers must use the
 *    same set. The cap costs nothing measurable (1080p, 2 cores: 4.55-5.30 s
 *    with AVX-512, 4.40-4.62 s without). CPUs without AVX2 keep libx264's own
 *    choice, and their bytes differ from AVX2 machines'.
 *  - always REEL_ENCODE_THREADS frame threads, whatever the machine: the
 *    thread count shapes the bitstream (1 against 2 threads: PSNR 40.8 dB
 *    between the two encodes), and a part rendered on one worker must match a
 *    single export made on another. Frame threads, not slice threads: with the
 *    cap they are as reproducible (every run identical, in one process and
 *    across processes, with two busy loops beside them) and 12 % faster here
 *    (1080x1920 export: 5.4-6.0 s against 6.2-7.1 s).
 */
#define REEL_ENCODE_THREADS 4

static const char *x264_params(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("abm"))
        return "asm=SSE2Fast,AVX2";
#endif
    return "";
}

static int open_muxer(Export *ex, Muxer *m, const char *tmp_path, char *errmsg)
{
    const ReelOutputSettings *o = &ex->job->output;
    int part = ex->mode == MODE_PART;
    const char *vname = "libx264", *x264p;
    const AVCodec *vc = avcodec_find_encoder_by_name(vname);
    const AVCodec *ac = avcodec_find_encoder(part ? AV_CODEC_ID_PCM_F32LE : AV_CODEC_ID_AAC);
    AVDictionary *mopts = NULL;
    char buf[32], eb[128];
    int ret;

    if (!vc || !ac)
        return reel_fail(errmsg, REEL_ERROR_INTERNAL, "%s or %s encoder missing in FFmpeg", vname,
                         part ? "pcm_f32le" : "aac");
    if ((ret = avformat_alloc_output_context2(&m->oc, NULL, part ? "nut" : "mp4", tmp_path)) < 0)
        return reel_fail(errmsg, ret, "cannot create the %s muxer", part ? "nut" : "mp4");
    if (!(m->pkt = av_packet_alloc()))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "out of memory");

    m->venc = avcodec_alloc_context3(vc);
    if (!m->venc)
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "out of memory");
    m->venc->width = ex->out_w;
    m->venc->height = ex->out_h;
    m->venc->pix_fmt = AV_PIX_FMT_YUV420P;
    m->venc->time_base = (AVRational){o->fps_den, o->fps_num};
    m->venc->framerate = (AVRational){o->fps_num, o->fps_den};
    m->venc->sample_aspect_ratio = (AVRational){1, 1};
    m->venc->color_primaries = AVCOL_PRI_BT709;
    m->venc->color_trc = AVCOL_TRC_BT709;
    m->venc->colorspace = AVCOL_SPC_BT709;
    m->venc->color_range = AVCOL_RANGE_MPEG;
    m->venc->thread_count = REEL_ENCODE_THREADS;
    m->venc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if (part) {
        /* a part is an intermediate: lossless (qp 0) unless asked otherwise */
        av_opt_set(m->venc->priv_data, "preset", "veryfast", 0);
        snprintf(buf, sizeof(buf), "%d", ex->opt->part_crf);
        av_opt_set(m->venc->priv_data, ex->opt->part_crf > 0 ? "crf" : "qp", buf, 0);
    } else {
        av_opt_set(m->venc->priv_data, "preset", o->preset, 0);
        snprintf(buf, sizeof(buf), "%d", o->crf);
        av_opt_set(m->venc->priv_data, "crf", buf, 0);
    }
    if (*(x264p = x264_params()))
        av_opt_set(m->venc->priv_data, "x264-params", x264p, 0);
    if ((ret = avcodec_open2(m->venc, vc, NULL)) < 0)
        return reel_fail(errmsg, ret, "cannot open %s for %dx%d: %s", vname, ex->out_w, ex->out_h,
                         reel_strerror(ret, eb, sizeof(eb)));
    if (!(m->vst = avformat_new_stream(m->oc, NULL)))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "out of memory");
    avcodec_parameters_from_context(m->vst->codecpar, m->venc);
    m->vst->time_base = m->venc->time_base;
    m->vst->avg_frame_rate = m->venc->framerate;

    if (o->include_audio) {
        m->aenc = avcodec_alloc_context3(ac);
        if (!m->aenc)
            return reel_fail(errmsg, REEL_ERR(ENOMEM), "out of memory");
        m->aenc->sample_fmt = part ? AV_SAMPLE_FMT_FLT : AV_SAMPLE_FMT_FLTP;
        m->aenc->sample_rate = REEL_AUDIO_RATE;
        av_channel_layout_default(&m->aenc->ch_layout, 2);
        m->aenc->bit_rate = o->audio_bitrate;
        m->aenc->time_base = (AVRational){1, REEL_AUDIO_RATE};
        m->aenc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
        if ((ret = avcodec_open2(m->aenc, ac, NULL)) < 0)
            return reel_fail(errmsg, ret, "cannot open the %s encoder", ac->name);
        if (!(m->ast = avformat_new_stream(m->oc, NULL)))
            return reel_fail(errmsg, REEL_ERR(ENOMEM), "out of memory");
        avcodec_parameters_from_context(m->ast->codecpar, m->aenc);
        m->ast->time_base = m->aenc->time_base;
        if (!(m->aframe = av_frame_alloc()) || !(m->apkt = av_packet_alloc()))
            return reel_fail(errmsg, REEL_ERR(ENOMEM), "out of memory");
        m->aframe->format = m->aenc->sample_fmt;
        m->aframe->sample_rate = REEL_AUDIO_RATE;
        m->aframe->nb_samples = AUDIO_FRAME;
        av_channel_layout_default(&m->aframe->ch_layout, 2);
        if ((ret = av_frame_get_buffer(m->aframe, 0)) < 0)
            return reel_fail(errmsg, ret, "out of memory");
        if (part && (!(m->left = malloc(AUDIO_FRAME * sizeof(float))) ||
                     !(m->right = malloc(AUDIO_FRAME * sizeof(float)))))
            return reel_fail(errmsg, REEL_ERR(ENOMEM), "out of memory");
    }

    if (o->chapters) {
        for (int k = 0; k < ex->job->nb_clips; k++) {
            AVChapter *ch = av_mallocz(sizeof(*ch));
            AVChapter **arr =
                av_realloc_array(m->oc->chapters, m->oc->nb_chapters + 1, sizeof(*arr));
            if (!ch || !arr) {
                av_free(ch);
                return reel_fail(errmsg, REEL_ERR(ENOMEM), "out of memory");
            }
            m->oc->chapters = arr;
            ch->id = k;
            ch->time_base = (AVRational){o->fps_den, o->fps_num};
            ch->start = ex->layout.clips[k].start;
            ch->end =
                k + 1 < ex->job->nb_clips ? ex->layout.clips[k + 1].start : ex->layout.nb_frames;
            av_dict_set(&ch->metadata, "title", ex->job->clips[k].title, 0);
            m->oc->chapters[m->oc->nb_chapters++] = ch;
        }
    }

    if (part) {
        snprintf(buf, sizeof(buf), "%lld", (long long)ex->layout.nb_frames);
        av_dict_set(&m->oc->metadata, PART_FRAMES_KEY, buf, 0);
    }
    if ((ret = avio_open(&m->oc->pb, tmp_path, AVIO_FLAG_WRITE)) < 0) /* named as asked */
        return reel_fail(errmsg, ret, "%s: cannot write: %s", ex->opt->output_path,
                         reel_strerror(ret, eb, sizeof(eb)));
    if (!part)
        av_dict_set(&mopts, "movflags", "+faststart", 0);
    ret = avformat_write_header(m->oc, &mopts);
    av_dict_free(&mopts);
    if (ret < 0)
        return reel_fail(errmsg, ret, "cannot write the %s header", part ? "part" : "mp4");
    m->header_written = 1;
    return 0;
}

static void close_muxer(Muxer *m)
{
    if (m->oc && m->oc->pb)
        avio_closep(&m->oc->pb);
    avformat_free_context(m->oc);
    avcodec_free_context(&m->venc);
    avcodec_free_context(&m->aenc);
    av_packet_free(&m->pkt);
    av_packet_free(&m->held);
    av_packet_free(&m->apkt);
    av_frame_free(&m->aframe);
    free(m->left);
    free(m->right);
    reel_audio_close(&m->audio);
    memset(m, 0, sizeof(*m));
}

/* Pop composed frames, encode, interleave audio; flush. Returns 0 or error. */
static int encode_all(Export *ex, Muxer *m)
{
    void *p;
    int ret;

    while ((ret = reel_queue_pop(&ex->composed, &p)) == 0) {
        AVFrame *f = p;
        if (!f->data[0]) { /* end of the reel */
            av_frame_free(&f);
            break;
        }
        int64_t idx = f->pts, a0, a1;
        ret = encode_video_frame(ex, m, f);
        av_frame_free(&f);
        if (ret < 0)
            return ret;
        reel_frames_to_samples(ex->fps, 0, idx + 1, &a0, &a1);
        if ((ret = mux_audio(ex, m, a1)) < 0)
            return ret;
        pthread_mutex_lock(&ex->lock);
        ex->reel_frames_done = idx + 1;
        pthread_mutex_unlock(&ex->lock);
    }
    if (ret < 0)
        return ret;
    if (cancelled(ex))
        return REEL_ERROR_CANCELLED;
    if ((ret = avcodec_send_frame(m->venc, NULL)) < 0 ||
        (ret = write_packets(ex, m, m->venc, m->vst)) < 0)
        return ret < 0 ? ex_fail(ex, ret, "video encoder flush failed") : ret;
    return mux_audio(ex, m, -1);
}

/* ---- chapters file ---------------------------------------------------------- */

static void vtt_time(char *buf, size_t size, double s)
{
    int64_t ms = (int64_t)llround(s * 1000.0);
    snprintf(buf, size, "%02d:%02d:%02d.%03d", (int)(ms / 3600000), (int)(ms / 60000 % 60),
             (int)(ms / 1000 % 60), (int)(ms % 1000));
}

/* A title as one line of cue text: a cue's text must not contain "-->" nor a
 * blank line, and '&' and '<' start escapes and tags there, so line breaks
 * become spaces and & < > their character references (players show the title
 * as typed; the MP4's chapter titles stay as typed). */
static void vtt_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '\n':
        case '\r':
            fputc(' ', f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

/* The chapters into path (the temporary file); errors name the file the user
 * asked for (shown). */
static int write_vtt(Export *ex, const char *path, const char *shown, char *errmsg)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return reel_fail(errmsg, REEL_ERR(errno), "%s: cannot write: %s", shown, strerror(errno));
    fprintf(f, "WEBVTT\n");
    for (int k = 0; k < ex->job->nb_clips; k++) {
        char a[32], b[32];
        int64_t end =
            k + 1 < ex->job->nb_clips ? ex->layout.clips[k + 1].start : ex->layout.nb_frames;
        vtt_time(a, sizeof(a), ex->layout.clips[k].start / ex->fps);
        vtt_time(b, sizeof(b), end / ex->fps);
        fprintf(f, "\nchapter-%d\n%s --> %s\n", k + 1, a, b);
        vtt_text(f, ex->job->clips[k].title);
        fputc('\n', f);
    }
    /* a write that failed earlier, or the buffered rest going out now (a full disk) */
    int err = ferror(f) ? (errno ? errno : EIO) : 0;
    if (fclose(f) != 0 && !err)
        err = errno ? errno : EIO;
    if (err)
        return reel_fail(errmsg, REEL_ERR(err), "%s: cannot write: %s", shown, strerror(err));
    return 0;
}

/* ---- the export ------------------------------------------------------------- */

static int probe_all(Export *ex, char *errmsg)
{
    ReelJob *job = ex->job;
    int ret;

    if (!(ex->src = calloc((size_t)job->nb_clips, sizeof(*ex->src))))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "out of memory");
    if ((ret = reel_media_probe_clips(job, ex->src, errmsg)) < 0)
        return ret;
    for (int k = 0; k < job->nb_clips; k++) {
        const ReelClip *c = &job->clips[k];
        if (ex->mode == MODE_ASSEMBLE) { /* trims were set from the part */
            if (ex->src[k].rot_width != job->output.width ||
                ex->src[k].rot_height != job->output.height)
                return reel_fail(errmsg, REEL_ERROR_INVALID_JOB,
                                 "parts[%d]: %s is %dx%d, the reel is %dx%d", k, c->source,
                                 ex->src[k].rot_width, ex->src[k].rot_height, job->output.width,
                                 job->output.height);
            continue;
        }
        if ((ret = reel_job_apply_probe(job, k, ex->src[k].rot_width, ex->src[k].rot_height,
                                        ex->src[k].duration, errmsg)) < 0)
            return ret;
    }
    if (job->output_size_given) {
        ex->out_w = job->output.width;
        ex->out_h = job->output.height;
    } else {
        reel_job_default_size(job, &ex->out_w, &ex->out_h);
    }
    ex->fps = reel_job_fps(job);
    if ((ret = reel_layout_init(&ex->layout, job)) < 0)
        return reel_fail(errmsg, ret, "out of memory");
    for (int k = 0; k < ex->layout.nb_clips; k++) {
        ex->clip_frames_total += ex->layout.clips[k].nb_frames;
        if (ex->layout.clips[k].d_out > 1024)
            return reel_fail(errmsg, REEL_ERROR_LIMIT,
                             "transition.duration: %lld frames is more "
                             "than the 1024 the compositor holds",
                             (long long)ex->layout.clips[k].d_out);
    }
    return 0;
}

void reel_export_chapters_path(const ReelExportOptions *opt, char *buf, size_t size)
{
    const char *out = opt->output_path;
    size_t n = strlen(out);

    if (opt->chapters_path)
        snprintf(buf, size, "%s", opt->chapters_path);
    else if (n > 4 && !strcasecmp(out + n - 4, ".mp4"))
        snprintf(buf, size, "%.*s.chapters.vtt", (int)(n - 4), out);
    else
        snprintf(buf, size, "%s.chapters.vtt", out);
}

/* Whether a and b name one existing file (any spelling, links included). */
static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;

    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* Before any work: the outputs must be files that are not one of the inputs
 * (writing the reel there would destroy the input, published over it at the
 * end) nor each other, and not folders (found only at the end otherwise). */
static int check_outputs(const ReelJob *job, ExportMode mode, const ReelExportOptions *opt,
                         const char *vtt, char *errmsg)
{
    const char *what = mode == MODE_ASSEMBLE ? "part" : "source";
    const char *outs[2] = {opt->output_path,
                           mode != MODE_PART && job->output.chapters ? vtt : NULL};
    struct stat st;

    if (outs[1] && (!strcmp(outs[0], outs[1]) || same_file(outs[0], outs[1])))
        return reel_fail(errmsg, REEL_ERR(EINVAL), "%s: both the reel and its chapters", outs[0]);
    for (int i = 0; i < 2 && outs[i]; i++) {
        if (stat(outs[i], &st) == 0 && S_ISDIR(st.st_mode))
            return reel_fail(errmsg, REEL_ERR(EISDIR), "%s: is a folder, not a file to write",
                             outs[i]);
        if (opt->job_path && same_file(outs[i], opt->job_path))
            return reel_fail(errmsg, REEL_ERR(EINVAL),
                             "%s: is the job file; writing there would destroy it", outs[i]);
        for (int k = 0; k < job->nb_clips; k++)
            if (job->clips[k].source && same_file(outs[i], job->clips[k].source))
                return reel_fail(errmsg, REEL_ERR(EINVAL),
                                 "%s: is clips[clipIndex=%d]'s %s; writing there would destroy it",
                                 outs[i], job->clips[k].clip_index, what);
    }
    return 0;
}

int reel_export_check_outputs(const ReelJob *job, const ReelExportOptions *opt, char *errmsg)
{
    char vtt[4096];

    if (!opt || !opt->output_path)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "export: no output path");
    reel_export_chapters_path(opt, vtt, sizeof(vtt));
    return check_outputs(job, MODE_REEL, opt, vtt, errmsg);
}

static int export_job(ReelJob *job, ExportMode mode, const ReelExportOptions *opt,
                      ReelExportStats *stats, char *errmsg)
{
    static atomic_int seq;
    Export ex;
    Muxer mux;
    pthread_t dec_tid;
    Worker workers[REEL_UPSCALE_MAX_LANES];
    AudioStage audio = {.ex = &ex, .m = &mux};
    int dec_started = 0, tr_started = 0, audio_started = 0, upscaled_clips = 0, ret;
    char tmp_mp4[4200], tmp_vtt[4200], vtt[4096];
    char local_err[REEL_ERRMSG_SIZE];

    if (!errmsg)
        errmsg = local_err;
    errmsg[0] = '\0';
    memset(&ex, 0, sizeof(ex));
    memset(&mux, 0, sizeof(mux));
    if (stats)
        memset(stats, 0, sizeof(*stats));
    if (!opt || !opt->output_path)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "export: no output path");
    if (strlen(opt->output_path) > 4000 ||
        (opt->chapters_path && strlen(opt->chapters_path) > 4000))
        return reel_fail(errmsg, REEL_ERR(ENAMETOOLONG), "export: output path too long");
    reel_export_chapters_path(opt, vtt, sizeof(vtt));
    if ((ret = check_outputs(job, mode, opt, vtt, errmsg)) < 0)
        return ret;
    ex.job = job;
    ex.mode = mode;
    ex.opt = opt;
    ex.t_start = ex.phase_start = now_s();
    ex.phase = REEL_PHASE_QUEUED;
    pthread_mutex_init(&ex.lock, NULL);
    pthread_mutex_init(&ex.model_lock, NULL);
    pthread_cond_init(&ex.turn, NULL);
    int id = atomic_fetch_add(&seq, 1);
    snprintf(tmp_mp4, sizeof(tmp_mp4), "%s.%d-%d.part", opt->output_path, (int)getpid(), id);
    snprintf(tmp_vtt, sizeof(tmp_vtt), "%s.%d-%d.part", vtt, (int)getpid(), id);

    if ((ret = reel_queue_init(&ex.decoded, QUEUE_FRAMES, free_dec_item)) < 0 ||
        (ret = reel_queue_init(&ex.composed, QUEUE_FRAMES, free_av_frame)) < 0 ||
        (ret = reel_queue_init(&ex.audio_pkts, AUDIO_AHEAD, free_packet)) < 0) {
        reel_fail(errmsg, ret, "out of memory");
        goto end;
    }
    if ((ret = probe_all(&ex, errmsg)) < 0)
        goto end;
    ex.nworkers = workers_for(&ex);
    if (ex.nworkers < 1 || ex.nworkers > REEL_UPSCALE_MAX_LANES)
        ex.nworkers = 1;
    ex.park_ahead = 2 * ex.nworkers > PARK ? 2 * ex.nworkers : PARK;
    if (!(ex.clip_upscaled = calloc((size_t)job->nb_clips, 1))) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "out of memory");
        goto end;
    }
    ex.ls_y = FFALIGN(ex.out_w, 64);
    ex.ls_c = FFALIGN(ex.out_w / 2, 64);
    if (!(ex.out_pool =
              reel_framepool_new((size_t)ex.ls_y * ex.out_h + (size_t)ex.ls_c * ex.out_h + 64))) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "out of memory");
        goto end;
    }
    /* load the model up front when any clip certainly needs it: its time is
     * its own phase, not hidden in the first frame */
    if (job->output.upscale_mode == REEL_UPSCALE_ALWAYS && (ret = open_model(&ex)) < 0)
        goto fail_stages;

    progress(&ex, REEL_PHASE_PROCESSING, 1, 1);
    /* the video stages first: the decoder opens its source and decodes while
     * the audio timeline and the encoders open here (~35 ms of a 1080p
     * export's start) */
    if (pthread_create(&dec_tid, NULL, decode_thread, &ex) != 0) {
        ret = ex_fail(&ex, REEL_ERR(EAGAIN), "cannot start a thread");
        goto fail_stages;
    }
    dec_started = 1;
    for (; tr_started < ex.nworkers; tr_started++) {
        workers[tr_started] = (Worker){.ex = &ex, .lane = tr_started};
        if (pthread_create(&workers[tr_started].tid, NULL, transform_thread,
                           &workers[tr_started]) != 0) {
            ret = ex_fail(&ex, REEL_ERR(EAGAIN), "cannot start a thread");
            goto fail_stages;
        }
    }
    if (job->output.include_audio) {
        double *t0 = calloc((size_t)job->nb_clips, sizeof(*t0));
        if (!t0) {
            ret = ex_fail(&ex, REEL_ERR(ENOMEM), "out of memory");
            goto fail_stages;
        }
        for (int k = 0; k < job->nb_clips; k++)
            t0[k] = ex.src[k].t0;
        ret = reel_audio_open(&mux.audio, job, &ex.layout, t0, errmsg);
        free(t0);
        if (ret < 0) {
            record_failure(&ex, ret, errmsg, 1);
            goto fail_stages;
        }
    }
    if ((ret = open_muxer(&ex, &mux, tmp_mp4, errmsg)) < 0) {
        record_failure(&ex, ret, errmsg, 1);
        goto fail_stages;
    }
    if (mux.audio) {
        if (pthread_create(&audio.tid, NULL, audio_thread, &audio) != 0) {
            ret = ex_fail(&ex, REEL_ERR(EAGAIN), "cannot start a thread");
            goto fail_stages;
        }
        audio_started = 1;
    }
    ret = encode_all(&ex, &mux);
    if (ret < 0 && !ex.err)
        ex_fail(&ex, ret, "encoding failed");

fail_stages:
    if (ret < 0 || ex.err) {
        reel_queue_abort(&ex.decoded);
        reel_queue_abort(&ex.composed);
        reel_queue_abort(&ex.audio_pkts);
    }
    if (audio_started)
        pthread_join(audio.tid, NULL);
    if (dec_started)
        pthread_join(dec_tid, NULL);
    for (int i = 0; i < tr_started; i++)
        pthread_join(workers[i].tid, NULL);
    for (size_t i = 0; i < sizeof(ex.held) / sizeof(ex.held[0]); i++)
        av_frame_free(&ex.held[i]);
    for (int i = 0; i < PARK_SLOTS; i++) /* parked when the export failed */
        av_frame_free(&ex.park[i].frame);
    for (int k = 0; ex.clip_upscaled && k < job->nb_clips; k++)
        upscaled_clips += ex.clip_upscaled[k];
    if (ex.err) {
        ret = ex.err;
        snprintf(errmsg, REEL_ERRMSG_SIZE, "%s", ex.errmsg);
        goto end;
    }
    if (ret < 0)
        goto end;
    if (ex.reel_frames_done != ex.layout.nb_frames) {
        ret = reel_fail(errmsg, REEL_ERROR_INTERNAL, "export: %lld of %lld frames were encoded",
                        (long long)ex.reel_frames_done, (long long)ex.layout.nb_frames);
        goto end;
    }
    progress(&ex, REEL_PHASE_FINALIZING, job->nb_clips, 1);
    /* the trailer, then the last buffered bytes: either may meet a full disk */
    if ((ret = av_write_trailer(mux.oc)) < 0 || (ret = avio_closep(&mux.oc->pb)) < 0) {
        char eb[128];
        reel_fail(errmsg, ret, "%s: finishing the %s failed: %s", opt->output_path,
                  mode == MODE_PART ? "part" : "mp4", reel_strerror(ret, eb, sizeof(eb)));
        goto end;
    }
    if (job->output.chapters && (ret = write_vtt(&ex, tmp_vtt, vtt, errmsg)) < 0)
        goto end;
    if (rename(tmp_mp4, opt->output_path) < 0) {
        ret = reel_fail(errmsg, REEL_ERR(errno), "%s: cannot publish: %s", opt->output_path,
                        strerror(errno));
        goto end;
    }
    if (job->output.chapters && rename(tmp_vtt, vtt) < 0) {
        ret = reel_fail(errmsg, REEL_ERR(errno), "%s: cannot publish: %s", vtt, strerror(errno));
        unlink(opt->output_path);
        goto end;
    }
    progress(&ex, REEL_PHASE_COMPLETE, job->nb_clips, 1);
    if (stats) {
        FILE *f = fopen(opt->output_path, "rb");
        if (f) {
            fseek(f, 0, SEEK_END);
            stats->size_bytes = ftell(f);
            fclose(f);
        }
        stats->frames = ex.layout.nb_frames;
        stats->duration_s = ex.layout.nb_frames / ex.fps;
        stats->width = ex.out_w;
        stats->height = ex.out_h;
        stats->chapters = job->output.chapters ? job->nb_clips : 0;
        stats->upscaled_clips = upscaled_clips;
        snprintf(stats->upscale_precision, sizeof(stats->upscale_precision), "%s",
                 ex.up && upscaled_clips
                     ? reel_upscale_precision_name(reel_upscale_precision(ex.up))
                     : "");
        memcpy(stats->phase_s, ex.phase_s, sizeof(stats->phase_s));
        stats->total_s = now_s() - ex.t_start;
    }
    ret = 0;
end:
    close_muxer(&mux);
    if (ret < 0) {
        unlink(tmp_mp4);
        unlink(tmp_vtt);
    }
    if (ex.own_up)
        reel_upscale_close(&ex.up);
    reel_queue_uninit(&ex.decoded);
    reel_queue_uninit(&ex.composed);
    reel_queue_uninit(&ex.audio_pkts);
    av_buffer_pool_uninit(&ex.out_pool); /* freed when the last frame is */
    reel_layout_uninit(&ex.layout);
    for (int k = 0; ex.src && k < job->nb_clips; k++)
        reel_source_info_uninit(&ex.src[k]);
    free(ex.src);
    free(ex.clip_upscaled);
    pthread_cond_destroy(&ex.turn);
    pthread_mutex_destroy(&ex.model_lock);
    pthread_mutex_destroy(&ex.lock);
    return ret;
}

int reel_export_run(ReelJob *job, const ReelExportOptions *opt, ReelExportStats *stats,
                    char *errmsg)
{
    return export_job(job, MODE_REEL, opt, stats, errmsg);
}

/* ---- parallel mode: parts and their assembly ---------------------------------- */

/* The reel's output size as the whole-reel export would choose it. */
static void reel_size(const ReelJob *job, int *w, int *h)
{
    if (job->output_size_given) {
        *w = job->output.width;
        *h = job->output.height;
    } else {
        reel_job_default_size(job, w, h);
    }
}

int reel_export_part(ReelJob *job, int index, const ReelExportOptions *opt, ReelExportStats *stats,
                     char *errmsg)
{
    char local_err[REEL_ERRMSG_SIZE];
    ReelJob *part = NULL;
    int w, h, ret;

    if (!errmsg)
        errmsg = local_err;
    if (index < 0 || index >= job->nb_clips)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "export part: clip %d of %d does not exist",
                         index, job->nb_clips);
    if ((ret = reel_job_clone(&part, job, index)) < 0)
        return reel_fail(errmsg, ret, "out of memory");
    /* the clip alone, as the reel would make it before the compositor */
    reel_size(job, &w, &h);
    part->output_size_given = 1;
    part->output.width = w;
    part->output.height = h;
    part->output.chapters = 0;
    part->transition = REEL_TRANSITION_CUT;
    ret = export_job(part, MODE_PART, opt, stats, errmsg);
    reel_job_free(&part);
    return ret;
}

/* Frames recorded in a part by reel_export_part. */
static int part_frames(const char *path, int k, int64_t *frames, char *errmsg)
{
    AVFormatContext *fmt = NULL;
    const AVDictionaryEntry *e;
    char eb[128];
    int ret;

    if ((ret = avformat_open_input(&fmt, path, NULL, NULL)) < 0)
        return reel_fail(errmsg, REEL_ERROR_MEDIA, "parts[%d]: cannot read %s: %s", k, path,
                         reel_strerror(ret, eb, sizeof(eb)));
    e = av_dict_get(fmt->metadata, PART_FRAMES_KEY, NULL, 0);
    *frames = e ? strtoll(e->value, NULL, 10) : 0;
    avformat_close_input(&fmt);
    if (*frames <= 0)
        return reel_fail(errmsg, REEL_ERROR_MEDIA, "parts[%d]: %s is not a clipreel part", k, path);
    return 0;
}

int reel_export_assemble(ReelJob *job, const char *const *parts, const ReelExportOptions *opt,
                         ReelExportStats *stats, char *errmsg)
{
    char local_err[REEL_ERRMSG_SIZE];
    ReelJob *as = NULL;
    double fps = reel_job_fps(job);
    int w, h, ret;

    if (!errmsg)
        errmsg = local_err;
    /* the parts become the sources below: the job's own must be safe too */
    if ((ret = reel_export_check_outputs(job, opt, errmsg)) < 0)
        return ret;
    if ((ret = reel_job_clone(&as, job, -1)) < 0)
        return reel_fail(errmsg, ret, "out of memory");
    reel_size(job, &w, &h);
    as->output_size_given = 1;
    as->output.width = w;
    as->output.height = h;
    as->output.upscale_mode = REEL_UPSCALE_OFF;
    for (int k = 0; k < as->nb_clips; k++) {
        ReelClip *c = &as->clips[k];
        int64_t n = 0;
        if ((ret = part_frames(parts[k], k, &n, errmsg)) < 0)
            goto end;
        if (job->clips[k].trim_end >= 0) { /* resolved: the part must agree */
            ReelClipFrames cf;
            if ((ret = reel_clip_frames_init(&cf, &job->clips[k], fps)) < 0) {
                reel_fail(errmsg, ret, "out of memory");
                goto end;
            }
            int64_t want = cf.nb_frames;
            reel_clip_frames_uninit(&cf);
            if (want != n) {
                ret = reel_fail(errmsg, REEL_ERROR_INVALID_JOB,
                                "parts[%d]: %s has %lld frames, clips[clipIndex=%d] needs %lld", k,
                                parts[k], (long long)n, c->clip_index, (long long)want);
                goto end;
            }
        }
        /* the part, whole, at speed 1, full frame: every pixel and sample as rendered */
        free(c->source);
        free(c->segments);
        free(c->keyframes);
        c->segments = malloc(sizeof(*c->segments));
        c->keyframes = malloc(sizeof(*c->keyframes));
        c->source = strdup(parts[k]);
        if (!c->segments || !c->keyframes || !c->source) {
            ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "out of memory");
            goto end;
        }
        c->trim_start = 0.0;
        c->trim_end = (double)n / fps;
        c->duration = c->trim_end;
        c->segments[0] = (ReelSegment){0.0, c->trim_end, 1.0};
        c->nb_segments = 1;
        c->keyframes[0] = (ReelKeyframe){0.0, 0.0, 0.0, w, h};
        c->nb_keyframes = 1;
        c->interp = REEL_INTERP_LINEAR;
        c->rotation = 0.0;
        c->source_width = w;
        c->source_height = h;
    }
    ret = export_job(as, MODE_ASSEMBLE, opt, stats, errmsg);
end:
    reel_job_free(&as);
    return ret;
}
