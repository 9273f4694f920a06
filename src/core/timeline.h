/*
 * timeline.h - the exact frame, sample and crop arithmetic of DESIGN section 3.
 *
 * Pure functions over a parsed ReelJob: how many output frames each segment and
 * clip gets, which source time each output frame shows, where each clip starts
 * in the reel once transitions overlap or not, the audio sample ranges, the
 * chapter starts, and the crop box at a source time. The media pipeline, the
 * planner and the tests all use these, so video, audio and chapters can never
 * disagree. Thread-safety: pure, or on caller storage.
 */
#ifndef REEL_CORE_TIMELINE_H
#define REEL_CORE_TIMELINE_H

#include <stdint.h>

#include "core/job.h"

/** round(x) with halves going up, as the contract says (floor(x + 0.5)). */
int64_t reel_round_half_up(double x);

/** Frames of one clip: per-segment end frames (cumulative) and the total. */
typedef struct ReelClipFrames {
    int64_t *seg_end; /**< seg_end[i] = first frame after segment i (cumulative) */
    int nb_segments;
    int64_t nb_frames; /**< = seg_end[nb_segments - 1] */
} ReelClipFrames;

/** Placement of one clip in the reel. */
typedef struct ReelClipPlace {
    int64_t start;    /**< first output frame of the clip in the reel (S) */
    int64_t nb_frames;/**< N */
    int64_t d_in;     /**< transition frames at its head (0 for the first clip / cut) */
    int64_t d_out;    /**< transition frames at its tail (0 for the last clip / cut) */
    int64_t audio_start, audio_end; /**< samples [round(S*r), round((S+N)*r)) at 48 kHz */
} ReelClipPlace;

typedef struct ReelLayout {
    ReelClipPlace *clips;
    int nb_clips;
    int64_t nb_frames;   /**< frames of the whole reel */
    int64_t nb_samples;  /**< audio samples (48 kHz) of the whole reel */
    double fps;
} ReelLayout;

#define REEL_AUDIO_RATE 48000

/** Segment frame counts of a clip. Returns 0 or ENOMEM; free with reel_clip_frames_uninit. */
int reel_clip_frames_init(ReelClipFrames *cf, const ReelClip *clip, double fps);
void reel_clip_frames_uninit(ReelClipFrames *cf);

/**
 * Source time (seconds on the untrimmed source) shown by clip-local output
 * frame n, and the index of the segment it lies in (may be NULL).
 * n is clamped to [0, nb_frames - 1].
 */
double reel_clip_source_time(const ReelClip *clip, const ReelClipFrames *cf, double fps,
                             int64_t n, int *segment);

/** Lay out all clips with the job's transition. Returns 0 or ENOMEM. */
int reel_layout_init(ReelLayout *layout, const ReelJob *job);
void reel_layout_uninit(ReelLayout *layout);

/**
 * Weight of clip-local frame n of a clip (0..1) for the transition compositor:
 * min(1, n / d_in, (N - n) / d_out), terms with d == 0 omitted. For fade, the
 * same weight multiplies the frame towards black.
 */
double reel_clip_weight(const ReelClipPlace *place, int64_t n);

/** Audio sample range [*first, *end) of output frames [f0, f1) (reel frames), 48 kHz. */
void reel_frames_to_samples(double fps, int64_t f0, int64_t f1, int64_t *first, int64_t *end);

/** An integer crop box in source pixels. */
typedef struct ReelRect {
    int x, y, width, height;
} ReelRect;

/**
 * Crop box of a clip at source time t for a W x H (post-rotation) frame: keyframes
 * interpolated (Catmull-Rom or linear), held outside their range, shrunk to the
 * frame, moved inside, rounded half up and clamped again. A clip with no
 * keyframes gets the largest centred crop of aspect aw:ah.
 */
ReelRect reel_crop_at(const ReelClip *clip, double t, int W, int H, int aw, int ah);

/**
 * Default output size (DESIGN section 2): min crop width and height over all
 * keyframes of all clips, times 4, scaled down to fit 2560x1440 (never up),
 * truncated, made even; no keyframes: 1080x1920 for 9:16 else 1920x1080.
 */
void reel_job_default_size(const ReelJob *job, int *width, int *height);

#endif
