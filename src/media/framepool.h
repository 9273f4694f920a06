/*
 * framepool.h - frame buffers that are cheap to fault in.
 *
 * A 4 KiB page faulted in for the first time costs 11-14 us on the VMs this
 * project runs on (docs/PERFORMANCE.md, Machine), so the first write of a
 * 1080p frame costs ~10 ms of CPU; on huge pages it costs 0.3-7 us per 4 KiB.
 * An export's frames (the decoder's, those queued, the output pool's) are
 * written for the first time in its first second and then reused, so these
 * pools take their buffers from core/pages (huge pages where the system allows
 * them, faulted in by one call) instead of malloc's 4 KiB pages.
 */
#ifndef REEL_MEDIA_FRAMEPOOL_H
#define REEL_MEDIA_FRAMEPOOL_H

#include <stddef.h>

#include <libavcodec/avcodec.h>
#include <libavutil/buffer.h>

/** A pool of zeroed buffers of `size` bytes from core/pages. NULL when out of memory. */
AVBufferPool *reel_framepool_new(size_t size);

/** A video decoder's frame buffers (reel_framepool_attach). */
typedef struct ReelDecoderPool ReelDecoderPool;

/**
 * Give the video decoder dec, not yet opened, its frame buffers from such
 * pools (its get_buffer2). Formats they do not serve (palettes, hardware
 * frames) and decoders that cannot take buffers from outside keep libavcodec's
 * own. NULL when out of memory.
 */
ReelDecoderPool *reel_framepool_attach(AVCodecContext *dec);

/** How many frames dp has served from its pools (the rest came from libavcodec). */
long reel_framepool_served(ReelDecoderPool *dp);

/** Free *dp after its decoder (avcodec_free_context); frames still out stay
 * valid. NULL is fine. */
void reel_framepool_detach(ReelDecoderPool **dp);

#endif
