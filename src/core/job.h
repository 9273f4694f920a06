/*
 * job.h - the export job: parsed, validated and normalised (DESIGN section 2).
 *
 * Both job shapes (the editor's multi_clip_data_json and the engine's own CLI
 * shape with `source` and `output`) become one ReelJob. Everything a later stage
 * needs is resolved here: clips sorted by clipIndex, the trim, the segments
 * clipped to the trim with their speeds, keyframes sorted by time, chapter
 * titles, the transition and the output settings. Parsing reports the FIRST
 * invalid field with its path (`clips[1].segments.segmentSpeeds.2: ...`) and
 * returns REEL_ERROR_INVALID_JOB; nothing else happens before a job is valid.
 *
 * A ReelJob is immutable after parsing, apart from the fields documented as
 * "resolved later" which the export fills in once it has probed the sources.
 * Thread-safety: none needed; share it read-only.
 */
#ifndef REEL_CORE_JOB_H
#define REEL_CORE_JOB_H

#include <stdint.h>

typedef enum ReelTransitionType {
    REEL_TRANSITION_CUT = 0,
    REEL_TRANSITION_FADE,
    REEL_TRANSITION_DISSOLVE,
} ReelTransitionType;

typedef enum ReelInterp {
    REEL_INTERP_CATMULL_ROM = 0, /**< default, as the editor's preview */
    REEL_INTERP_LINEAR,
} ReelInterp;

typedef enum ReelUpscaleMode {
    REEL_UPSCALE_AUTO = 0, /**< model only when the crop is smaller than the output */
    REEL_UPSCALE_ALWAYS,
    REEL_UPSCALE_OFF,
} ReelUpscaleMode;

typedef struct ReelKeyframe {
    double time; /**< seconds on the untrimmed source */
    double x, y; /**< top-left, source pixels */
    double width, height;
} ReelKeyframe;

typedef struct ReelSegment {
    double start, end; /**< source seconds, already clipped to the trim; end > start */
    double speed;      /**< 0.25 .. 4 */
} ReelSegment;

typedef struct ReelClip {
    int clip_index;      /**< clipIndex from the job (order key, may have gaps) */
    char *source;        /**< path or storage key; NULL in the app shape until set */
    char *file_name;     /**< fileName, may be NULL */
    char *title;         /**< chapter title: clipName || fileName sans ext || "Clip N" */
    double duration;     /**< declared duration, 0 if unknown */
    int source_width;    /**< declared; 0 if unknown (probed later) */
    int source_height;
    double trim_start, trim_end; /**< trim_end < 0: to the end (resolved later) */
    ReelSegment *segments;       /**< within the trim, in order, contiguous */
    int nb_segments;
    ReelKeyframe *keyframes;     /**< sorted by time; may be empty */
    int nb_keyframes;
    ReelInterp interp;
    double rotation;             /**< degrees counter-clockwise, 0 = none */
} ReelClip;

typedef struct ReelOutputSettings {
    int width, height;     /**< even; computed by reel_job_default_size() when not given */
    int fps_num, fps_den;  /**< output frame rate (default 30/1) */
    int include_audio;     /**< default 1 */
    int crf;               /**< default 18 */
    char preset[32];       /**< libx264 preset, default "fast" */
    int audio_bitrate;     /**< bits/s, default 192000 */
    char video_codec[32];  /**< "libx264" (default) */
    int chapters;          /**< default 1 */
    char upscale_model[64];/**< default "realesr-general-x4v3" */
    ReelUpscaleMode upscale_mode;
    int upscale_tile;      /**< 0 = backend default */
    int upscale_bf16;      /**< output.upscale.precision "bf16": 1; "fp32" (default): 0 */
} ReelOutputSettings;

typedef struct ReelJob {
    ReelClip *clips; /**< sorted by clip_index */
    int nb_clips;
    ReelTransitionType transition;
    double transition_duration; /**< seconds, default 0.5 */
    int aspect_w, aspect_h;     /**< globalAspectRatio, default 9:16 */
    ReelOutputSettings output;
    int output_size_given;      /**< 1 when the job set output.width/height */
} ReelJob;

/** Limits checked while parsing; reel_job_limits_default() fills sane values. */
typedef struct ReelJobLimits {
    int max_clips;           /**< default 100 */
    double max_clip_seconds; /**< longest source span one clip may use, default 3600 */
    int max_width, max_height; /**< output, default 7680 x 4320 */
    int max_keyframes;       /**< per clip, default 100000 */
} ReelJobLimits;

void reel_job_limits_default(ReelJobLimits *limits);

/**
 * Parse and validate a job from JSON text.
 * @param base_dir  relative `source` paths are resolved against it (NULL: as given)
 * @param limits    NULL for the defaults
 * @param errmsg    REEL_ERRMSG_SIZE bytes, receives "field.path: problem"
 * @return 0 and a new job in *out (free with reel_job_free), or a negative
 *         error (REEL_ERROR_INVALID_JOB, ENOMEM) with *out NULL.
 */
int reel_job_parse(ReelJob **out, const char *json, const char *base_dir,
                   const ReelJobLimits *limits, char *errmsg);

/** Same as reel_job_parse on the contents of a file (errors name the file). */
int reel_job_load(ReelJob **out, const char *path, const ReelJobLimits *limits, char *errmsg);

void reel_job_free(ReelJob **job);

/**
 * Deep copy of a job (with what probing resolved so far), or of only its clip
 * `only_clip` (0-based; -1 = all clips). The copy is independent: free it with
 * reel_job_free. @return 0, or ENOMEM / EINVAL (only_clip out of range).
 */
int reel_job_clone(ReelJob **out, const ReelJob *job, int only_clip);

/**
 * Complete clip i with what probing its source found: the (post-rotation) frame
 * size and the real duration in seconds. Resolves an open trim end, clips the
 * trim and segments to the real duration, and checks what needs the source:
 * trim start inside the source, keyframe boxes intersecting the frame. Errors
 * name the field (`clips[2].trimRange.start: 14 is beyond the source (12.5 s)`).
 * @return 0, or REEL_ERROR_INVALID_JOB / ENOMEM with errmsg set.
 */
int reel_job_apply_probe(ReelJob *job, int i, int width, int height, double duration,
                         char *errmsg);

/** Output frame rate as a double. */
double reel_job_fps(const ReelJob *job);

#endif
