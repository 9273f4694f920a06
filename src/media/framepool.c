/*
 * framepool.c - frame buffers that are cheap to fault in (see framepool.h).
 */
#include "media/framepool.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>

#include "core/pages.h"

#define ALIGN 64 /* every plane and line: what AVX-512 code wants */
#define SLACK 80 /* after each plane: decoders' SIMD may read a little past */

static void free_block(void *opaque, uint8_t *data)
{
    reel_pages_free(data, (size_t)(uintptr_t)opaque);
}

static AVBufferRef *alloc_block(void *opaque, size_t size)
{
    (void)opaque;
    uint8_t *p = reel_pages_zeroed(size);
    AVBufferRef *b = p ? av_buffer_create(p, size, free_block, (void *)(uintptr_t)size, 0) : NULL;
    if (p && !b)
        reel_pages_free(p, size);
    return b;
}

AVBufferPool *reel_framepool_new(size_t size)
{
    return av_buffer_pool_init2(size, NULL, alloc_block, NULL);
}

struct ReelDecoderPool {
    pthread_mutex_t lock; /* frame threads ask for buffers at once */
    AVBufferPool *pool;   /* frames of format, width x height */
    int format, width, height;
    int linesize[4];
    size_t offset[4];
    int planes;
    long served;
};

/* Lines and planes for a w x h frame of fmt as the decoder dec writes it: its
 * coded size (avcodec_align_dimensions2), every line a multiple of ALIGN and
 * of what the decoder asks. Returns the buffer's size, or a negative AVERROR. */
static int64_t plan_layout(ReelDecoderPool *dp, AVCodecContext *dec, int fmt, int w, int h)
{
    int align[AV_NUM_DATA_POINTERS], ret;
    ptrdiff_t ls[4];
    size_t sizes[4];
    int64_t at = 0;

    avcodec_align_dimensions2(dec, &w, &h, align);
    for (w = FFALIGN(w, ALIGN);; w += ALIGN) {
        int ok = 1;
        if ((ret = av_image_fill_linesizes(dp->linesize, fmt, w)) < 0)
            return ret;
        for (int i = 0; i < 4; i++)
            if (dp->linesize[i] % ALIGN || (align[i] > 0 && dp->linesize[i] % align[i]))
                ok = 0;
        if (ok)
            break;
    }
    for (int i = 0; i < 4; i++)
        ls[i] = dp->linesize[i];
    if ((ret = av_image_fill_plane_sizes(sizes, fmt, h, ls)) < 0)
        return ret;
    dp->planes = 0;
    for (int i = 0; i < 4 && sizes[i]; i++) {
        dp->offset[i] = (size_t)at;
        at = FFALIGN(at + (int64_t)sizes[i] + SLACK, ALIGN);
        dp->planes = i + 1;
    }
    return at;
}

static int get_buffer(AVCodecContext *dec, AVFrame *f, int flags)
{
    ReelDecoderPool *dp = dec->opaque;
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(f->format);
    AVBufferRef *b = NULL;
    int64_t size;

    if (!d ||
        (d->flags & (AV_PIX_FMT_FLAG_HWACCEL | AV_PIX_FMT_FLAG_PAL | AV_PIX_FMT_FLAG_BITSTREAM)) ||
        !(dec->codec->capabilities & AV_CODEC_CAP_DR1) || f->width <= 0 || f->height <= 0)
        return avcodec_default_get_buffer2(dec, f, flags);
    pthread_mutex_lock(&dp->lock);
    if (!dp->pool || f->format != dp->format || f->width != dp->width || f->height != dp->height) {
        av_buffer_pool_uninit(&dp->pool); /* gone when its last frame is */
        if ((size = plan_layout(dp, dec, f->format, f->width, f->height)) < 0) {
            pthread_mutex_unlock(&dp->lock);
            return (int)size;
        }
        dp->pool = reel_framepool_new((size_t)size);
        dp->format = f->format, dp->width = f->width, dp->height = f->height;
    }
    if (dp->pool && (b = av_buffer_pool_get(dp->pool))) {
        for (int i = 0; i < dp->planes; i++) {
            f->data[i] = b->data + dp->offset[i];
            f->linesize[i] = dp->linesize[i];
        }
        dp->served++;
    }
    pthread_mutex_unlock(&dp->lock);
    if (!b)
        return AVERROR(ENOMEM);
    f->buf[0] = b;
    f->extended_data = f->data;
    return 0;
}

ReelDecoderPool *reel_framepool_attach(AVCodecContext *dec)
{
    ReelDecoderPool *dp = calloc(1, sizeof(*dp));
    if (!dp)
        return NULL;
    if (pthread_mutex_init(&dp->lock, NULL)) {
        free(dp);
        return NULL;
    }
    dec->opaque = dp;
    dec->get_buffer2 = get_buffer;
#if LIBAVCODEC_VERSION_MAJOR < 60
    /* get_buffer is thread-safe: without this, FFmpeg 5 makes each frame
     * thread wait for the caller's thread to run it (from 6 on, always so) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    dec->thread_safe_callbacks = 1;
#pragma GCC diagnostic pop
#endif
    return dp;
}

long reel_framepool_served(ReelDecoderPool *dp)
{
    pthread_mutex_lock(&dp->lock);
    long n = dp->served;
    pthread_mutex_unlock(&dp->lock);
    return n;
}

void reel_framepool_detach(ReelDecoderPool **dp)
{
    if (!*dp)
        return;
    av_buffer_pool_uninit(&(*dp)->pool);
    pthread_mutex_destroy(&(*dp)->lock);
    free(*dp);
    *dp = NULL;
}
