/*
 * media_int.h - private to src/media: source probing and the frame transforms
 * shared by the export pipeline's stages.
 */
#ifndef REEL_MEDIA_MEDIA_INT_H
#define REEL_MEDIA_MEDIA_INT_H

#include <stdint.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/frame.h>

#include "media/framepool.h"

typedef struct ReelSourceInfo {
    int width, height;         /**< decoded frame size */
    double rotation;           /**< degrees counter-clockwise the frame turns: the file's
                                    display matrix (a phone's portrait video), then the clip's */
    int rot_width, rot_height; /**< after the rotation (the crop's frame) */
    double t0;                 /**< first decoded video frame's time, seconds: source time 0 */
    double duration;           /**< seconds of source time from t0 to the stream's end */
    int video_stream;
    double pq_peak;         /**< the brightest light its metadata declares, cd/m2: MaxCLL, else
                                 the mastering display's peak (HDR10); 0 when it declares none */
    AVCodecParameters *par; /**< the video stream's, as avformat_find_stream_info left them
                                 (reel_media_open_video then need not run it again); owned */
} ReelSourceInfo;

/** Free what info owns (par); a zeroed info is fine. */
void reel_source_info_uninit(ReelSourceInfo *info);

/**
 * Open path, find its video stream, decode its first frame. errmsg names the
 * field `what` (e.g. "clips[1].source") and the file.
 * @return 0 or REEL_ERROR_MEDIA.
 */
int reel_media_probe(const char *path, const char *what, double rotation, ReelSourceInfo *info,
                     char *errmsg);

struct ReelJob;

/**
 * Probe every clip's source (reel_media_probe with the clip's rotation) into
 * info[nb_clips], several sources at once (one thread per CPU, at most 8) and
 * a source that several clips name with the same rotation once. A missing
 * source or a failed probe is reported for the first such clip in job order,
 * as probing one by one would.
 * @return 0, REEL_ERROR_INVALID_JOB, REEL_ERROR_MEDIA or an AVERROR.
 */
int reel_media_probe_clips(const struct ReelJob *job, ReelSourceInfo *info, char *errmsg);

/**
 * Open path's video decoder with `threads` threads (0: one per core, frame
 * threads), its frames from a pool of huge pages (media/framepool.h) when
 * pool is not NULL. known: what a probe of the same file found (NULL: find it
 * here). For a container with a header (MP4, MOV, Matroska...) its stream and
 * parameters are then taken as they are, without avformat_find_stream_info,
 * which decodes several frames of an H.264 stream (~23 ms of CPU at 1080p).
 * Caller frees all three, the pool after the decoder.
 */
int reel_media_open_video(const char *path, int threads, const ReelSourceInfo *known,
                          ReelDecoderPool **pool, AVFormatContext **fmt, AVCodecContext **dec,
                          int *stream);

/** Size of a W x H frame rotated by deg (counter-clockwise). */
void reel_rotated_size(int W, int H, double deg, int *rw, int *rh);

/**
 * Rotate a packed RGB24 image by deg counter-clockwise about its centre into dst
 * (size from reel_rotated_size). Multiples of 90 are exact; other angles use
 * bilinear sampling with black outside the source.
 */
void reel_rotate_rgb(const uint8_t *src, int W, int H, int src_stride, uint8_t *dst, int dw, int dh,
                     int dst_stride, double deg);

#endif
