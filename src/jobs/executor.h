/*
 * executor.h - the in-process export runner of `clipreel serve` (DESIGN 1, 6, 9).
 *
 * A fixed pool of worker threads takes exports from a bounded FIFO. For each
 * one a worker: reads the row (jobstore.h), turns the stored job into a
 * ReelJob, points every clip at its uploaded source (the local store's own
 * file, or a download into the export's work folder for S3), runs the engine
 * (reel_export_run) into the work folder, publishes the result to the store
 * under {user}/working_videos/working_{project}_{id8}.mp4 (+ .chapters.vtt),
 * commits the row, announces the outcome, and deletes the temporary sources and
 * the work folder on every path: success, failure and cancel.
 *
 * DESIGN (guarantees):
 *  - Durable first, announce second: a complete/error event is emitted only
 *    after its row is committed; a client that sees "complete" can always fetch
 *    the output.
 *  - Bounded: at most workers + queue exports are admitted; admission is a
 *    reservation taken before the upload starts (reel_executor_reserve), so a
 *    full server refuses a request before reading its body.
 *  - Restart: reel_executor_start() first repairs the database: uploads that
 *    never got their 202 are dropped with their objects, exports that were
 *    processing are re-run or failed (policy, and never more than max_attempts
 *    times), pending ones are queued again in their original order, and
 *    temporary sources that outlived their export are deleted.
 *  - Cancel: a pending export is cancelled at once; a running one gets its
 *    atomic flag set, which the engine polls (it stops within a second).
 *  - Stop: running exports are interrupted and put back to pending, so the next
 *    start runs them again whatever the restart policy.
 *
 * The model: one upscaler per process, loaded on first use and shared; exports
 * that may run the model take turns on it (one ReelUpscaler serves one export
 * at a time), exports with upscale off never wait for it.
 *
 * Events are delivered through the on_event callback, from worker threads (and
 * from the caller's thread inside reel_executor_cancel / _start); the callback
 * must not block.
 *
 * Thread-safety: all functions may be called from any thread once created.
 */
#ifndef REEL_JOBS_EXECUTOR_H
#define REEL_JOBS_EXECUTOR_H

#include <stdint.h>

#include "core/job.h"
#include "jobs/jobstore.h"

struct ReelStore;

typedef struct ReelExecutor ReelExecutor;

typedef enum ReelRestartPolicy {
    REEL_RESTART_RERUN = 0, /**< exports interrupted while processing run again */
    REEL_RESTART_FAIL,      /**< ... are marked error with the reason */
} ReelRestartPolicy;

typedef enum ReelExecEventKind {
    REEL_EXEC_PROGRESS = 0, /**< queued or running */
    REEL_EXEC_COMPLETE,
    REEL_EXEC_ERROR,
    REEL_EXEC_CANCELLED,
} ReelExecEventKind;

typedef struct ReelExecEvent {
    ReelExecEventKind kind;
    const ReelExportRecord *rec; /**< user, ids, project, output key/filename (when complete) */
    const char *phase;     /**< "queued", "downloading", ..., "complete", "error", "cancelled" */
    double percent;        /**< 0..100 over the whole export, monotonic */
    int clip, total_clips; /**< 1-based clip in work, 0 when none */
    int64_t frames_done, frames_total;
    double eta_s;        /**< < 0: unknown */
    const char *message; /**< human text */
    const char *error;   /**< ERROR / CANCELLED: the reason */
} ReelExecEvent;

typedef void (*ReelExecEventFn)(void *opaque, const ReelExecEvent *event);

typedef struct ReelExecutorConfig {
    int workers; /**< >= 1 */
    int queue;   /**< waiting exports beyond the workers, >= 0 */
    ReelRestartPolicy on_restart;
    int max_attempts;      /**< >= 1 */
    const char *work_dir;  /**< per-export scratch folders (wiped at start) */
    const char *model_dir; /**< NULL: engine default */
    int upscale;           /**< -1: as the job says; else a forced ReelUpscaleMode */
    int engine_threads;    /**< 0: all cores */
    int engine_lanes;      /**< model lanes per export; 0: one per thread, at most 4 */
    ReelJobLimits limits;
    struct ReelStore *store; /**< borrowed, outlives the executor */
    ReelJobStore *jobs;      /**< borrowed, outlives the executor */
    ReelExecEventFn on_event;
    void *opaque;
    /* scale-out (docs/scaleout.md): with a Redis URL, exports are handed to
     * `clipreel worker` processes and followed back (remote.h) */
    const char *redis_url; /**< NULL: everything runs in this process */
    int redis_fallback;    /**< 1: run here when Redis is unreachable; 0: fail the export */
    const char *plan_config; /**< planner table (JSON file) for Redis exports; NULL = defaults */
    /** Frames made by the workers (already in the service's shape); terminal ones
     *  come after the row is final. Called from the remote threads. */
    void (*on_frame)(void *opaque, const char *user, const char *export_id, const char *frame,
                     int terminal);
} ReelExecutorConfig;

/** Create a stopped executor (cfg is copied). */
int reel_executor_create(ReelExecutor **out, const ReelExecutorConfig *cfg, char *errmsg);

/** Repair the database (see DESIGN above) and start the workers. */
int reel_executor_start(ReelExecutor *ex, char *errmsg);

/** Stop (interrupting and requeueing running exports) and free. NULL-safe. */
void reel_executor_free(ReelExecutor **ex);

/**
 * Reserve room for one export. @return 0, or REEL_ERR(EAGAIN) when workers +
 * queue exports are admitted already (the service answers 503).
 */
int reel_executor_reserve(ReelExecutor *ex);

/** Give back a reservation that will not be submitted. */
void reel_executor_unreserve(ReelExecutor *ex);

/**
 * Queue a PENDING export, using a reservation, and announce it as queued.
 * @return 0 or REEL_ERR(ESHUTDOWN) when stopping (the row stays pending and
 *         runs at the next start).
 */
int reel_executor_submit(ReelExecutor *ex, const char *user, const char *export_id);

/** reel_executor_cancel results (>= 0). */
#define REEL_EXEC_CANCELLED_NOW 0 /**< was waiting; now cancelled and cleaned up */
#define REEL_EXEC_CANCELLING 1    /**< running; the engine is stopping */

/**
 * Cancel an export of this executor.
 * @return REEL_EXEC_CANCELLED_NOW, REEL_EXEC_CANCELLING, or REEL_ERR(ENOENT)
 *         when the executor does not hold it (finished, unknown, or uploading).
 */
int reel_executor_cancel(ReelExecutor *ex, const char *user, const char *export_id);

/**
 * Delete the temporary source objects of an export: the keys of sources_json,
 * or, when it is NULL (an upload that never completed), every key under
 * {user}/temp/multi_clip_{export_id}/.
 */
int reel_executor_delete_sources(struct ReelStore *store, const char *user, const char *export_id,
                                 const char *sources_json);

/** The newest frame of an export running on the workers (caller frees), or NULL. */
char *reel_executor_latest_frame(ReelExecutor *ex, const char *user, const char *export_id);

void reel_executor_stats(ReelExecutor *ex, int *pending, int *running, int *capacity);

#endif
