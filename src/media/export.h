/*
 * export.h - the engine's C API: one job in, one finished reel out.
 *
 * reel_export_run() probes every source (any problem is reported before a frame
 * is processed), then runs decode -> transform (rotate, crop, upscale, resize)
 * -> composite (transitions) -> encode as stages joined by bounded queues, with
 * the audio timeline rendered alongside, and muxes ONE H.264/AAC MP4 with
 * chapters, plus a WebVTT chapters file. The output is written under a
 * temporary name and renamed into place only when complete; on any error or
 * cancel nothing is left at the output paths.
 *
 * Threads: reel_export_run blocks its caller; it starts and joins its own
 * worker threads. The progress callback is called from those threads, one call
 * at a time. Several exports may run at once in one process; a ReelUpscaler
 * passed in is used by one export at a time (the caller serialises).
 */
#ifndef REEL_MEDIA_EXPORT_H
#define REEL_MEDIA_EXPORT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/job.h"

struct ReelUpscaler;

/** Phases, in the order an export goes through them (DESIGN section 3, Progress). */
typedef enum ReelPhase {
    REEL_PHASE_QUEUED = 0,
    REEL_PHASE_DOWNLOADING,
    REEL_PHASE_LOADING_MODEL,
    REEL_PHASE_PROCESSING,
    REEL_PHASE_ENCODING,
    REEL_PHASE_FINALIZING,
    REEL_PHASE_UPLOADING,
    REEL_PHASE_COMPLETE,
    REEL_PHASE_ERROR,
    REEL_PHASE_CANCELLED,
} ReelPhase;

/** "queued", "downloading", ... as the service and --progress json spell them. */
const char *reel_phase_name(ReelPhase phase);

/**
 * The sentence the editor shows for a phase ("Processing clip 2/5...", as the
 * replaced backend worded it); clip and total may be 0. Uses buf when it needs
 * to format. Thread-safe.
 */
const char *reel_phase_message(ReelPhase phase, int clip, int total, char *buf, size_t size);

typedef struct ReelProgress {
    ReelPhase phase;
    int clip;              /**< 1-based clip being processed, 0 when none */
    int total_clips;
    int64_t frames_done;   /**< output frames of the reel completed */
    int64_t frames_total;
    double percent;        /**< 0..100, monotonic over one export */
    double fps;            /**< output frames per second, recent average */
    double eta_s;          /**< seconds left, < 0 unknown */
    const char *message;   /**< human text, may be NULL */
} ReelProgress;

/**
 * An engine report seen from a service that runs the export as one step of a
 * larger job (the executor, the worker): the engine's end states become
 * REEL_PHASE_FINALIZING (the upload is still to come) in *phase, and the
 * returned percent is p->percent clamped to 0-100 (0 when not a number).
 */
double reel_progress_as_step(const ReelProgress *p, ReelPhase *phase);

typedef void (*ReelProgressFn)(void *opaque, const ReelProgress *progress);

typedef struct ReelExportOptions {
    const char *output_path;   /**< the .mp4 */
    const char *chapters_path; /**< .vtt; NULL = output path with .mp4 -> .chapters.vtt */
    const char *job_path;      /**< the job's file, which no output may overwrite; may be NULL */
    const char *model_dir;     /**< NULL: $CLIPREEL_MODELS or "models" */
    struct ReelUpscaler *upscaler; /**< borrowed, already loaded; NULL: loaded on demand */
    ReelProgressFn progress;   /**< may be NULL */
    void *progress_opaque;
    atomic_int *cancel;        /**< set non-zero to stop; may be NULL */
    int threads;               /**< upscaler threads, 0 = one per physical core; the
                                *   encoder always runs 4 frame threads (the same
                                *   bytes on every machine, docs/decisions.md) */
    int lanes;                 /**< frames upscaled at once when the export opens its
                                *   model (ReelUpscaleOptions.lanes): 0 = auto (one per
                                *   thread, at most 4), 1 = one frame at a time */
    int part_crf;              /**< reel_export_part only: 0 = lossless (default), else
                                    libx264rgb CRF for smaller parts */
} ReelExportOptions;

struct ReelUpscaleOptions;

/**
 * The options an export opens its model with: model, tile and precision from
 * job->output, threads in all, lanes as ReelExportOptions.lanes (0 = auto).
 * Services that keep a model between exports open it with these too, so an
 * export given that model (ReelExportOptions.upscaler) runs as one that opens
 * its own. Strings are borrowed from job and model_dir.
 */
void reel_export_model_options(const ReelJob *job, const char *model_dir, int threads, int lanes,
                               struct ReelUpscaleOptions *uo);

/** What an export did, for the CLI summary and the service records. */
typedef struct ReelExportStats {
    int64_t frames;
    double duration_s;        /**< reel duration */
    int64_t size_bytes;       /**< of the .mp4 */
    int width, height;
    int chapters;
    int upscaled_clips;       /**< clips that went through the model */
    char upscale_precision[8];/**< "fp32" or "bf16" as the model ran; "" when no model ran */
    double phase_s[REEL_PHASE_CANCELLED + 1]; /**< wall seconds spent per phase */
    double total_s;
} ReelExportStats;

/**
 * The chapters file an export with these options writes (opt->chapters_path, or
 * the output path with .mp4, any case, replaced by .chapters.vtt) into buf.
 */
void reel_export_chapters_path(const ReelExportOptions *opt, char *buf, size_t size);

/**
 * Whether the reel's outputs (opt's output and chapters paths) may be written:
 * neither is a folder, nor one of the job's sources or its file
 * (opt->job_path), nor the other. Every export checks this before any work;
 * callers that work before exporting (parts first) check it first.
 * @return 0, or REEL_ERR(EINVAL / EISDIR) with errmsg naming the path
 */
int reel_export_check_outputs(const ReelJob *job, const ReelExportOptions *opt, char *errmsg);

/**
 * Run one export. job must be valid (reel_job_parse); the export may complete
 * it with probe results (reel_job_apply_probe), hence non-const.
 * @param stats   may be NULL
 * @param errmsg  REEL_ERRMSG_SIZE bytes, the user-facing reason on failure
 * @return 0, or a negative error: REEL_ERROR_INVALID_JOB (a clip's source does
 *         not fit the job), REEL_ERROR_MEDIA (a source can't be read),
 *         REEL_ERROR_CANCELLED, REEL_ERROR_MODEL, AVERROR/errno codes.
 */
int reel_export_run(ReelJob *job, const ReelExportOptions *opt, ReelExportStats *stats,
                    char *errmsg);

/*
 * Parallel mode (DESIGN section 7, docs/parallel.md): the same reel made in
 * pieces. reel_export_part() renders one clip on its own, exactly the frames
 * and samples the whole-reel export would make for it before transitions (crop,
 * upscale, resize at the reel's output size and fps; audio time-stretched, no
 * fades), into an intermediate "part" file: NUT with RGB H.264 (lossless by
 * default) and 48 kHz float PCM. reel_export_assemble() joins the parts, one per
 * clip in clip order, with the job's transitions, audio fades and crossfades and
 * chapters, in one encode pass, into the same MP4 + .vtt reel_export_run()
 * makes: same frame count, duration, chapters and audio length; with lossless
 * parts, the same frames.
 */

/**
 * Render clip `index` (0-based, in clip order) of job into opt->output_path
 * (a part; ".nut" by convention). Only that clip's source must be readable; the
 * other clips' sources are not opened. opt->chapters_path is ignored. The part
 * records its frame count; it is written under a temporary name and renamed.
 * @return as reel_export_run
 */
int reel_export_part(ReelJob *job, int index, const ReelExportOptions *opt,
                     ReelExportStats *stats, char *errmsg);

/**
 * Join parts[0..job->nb_clips-1] (made by reel_export_part from the same job)
 * into the finished reel at opt->output_path (+ chapters file). The clips'
 * sources are not opened; no model is needed. A part whose frame count or size
 * does not match the job is an error naming it.
 * @return as reel_export_run
 */
int reel_export_assemble(ReelJob *job, const char *const *parts, const ReelExportOptions *opt,
                         ReelExportStats *stats, char *errmsg);

#endif
