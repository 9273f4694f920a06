/*
 * worker.h - `clipreel worker`: run exports taken from Redis Streams (DESIGN
 * section 7, protocol in docs/scaleout.md).
 *
 * A worker process serves one GPU class. Each of its `concurrency` loop
 * threads, with its own Redis connection: takes an entry (first a reclaim of
 * an entry whose owner went silent, else a new one), counts the attempt,
 * downloads the sources from the object store into a per-export temp folder,
 * runs the engine with the process's model (loaded once per process, on first
 * use, kept for every later export), uploads the result under
 * {user}/working_videos/working_{project}_{id8}.mp4 (+ .chapters.vtt),
 * publishes the result exactly once, deletes the temporary source objects,
 * acks, and removes its temp folder on every path.
 *
 * DESIGN (threads): while an export runs, a side thread with its own
 * connection refreshes the claim every claim_idle_ms / 4 and publishes the
 * newest progress frame at most every 200 ms; the engine's callback only
 * swaps a string under a mutex, so it never waits on Redis. A refresh that
 * finds another owner (we were reclaimed) or a cancel request sets the
 * engine's cancel flag; a reclaimed-from worker then neither publishes nor
 * acks. Transient failures (storage, Redis, model load) leave the entry
 * un-acked, so it is reclaimed and retried, at most max_attempts times.
 *
 * Thread-safety: reel_worker_stop may be called from any thread or a signal
 * handler; the rest from the thread that created the worker.
 */
#ifndef REEL_JOBS_WORKER_H
#define REEL_JOBS_WORKER_H

#include <stdint.h>

#include "core/job.h"

struct ReelStore;

typedef struct ReelWorker ReelWorker;

typedef struct ReelWorkerConfig {
    const char *redis_url;     /**< redis://... */
    const char *gpu_class;     /**< the stream to serve, e.g. "t4" */
    struct ReelStore *store;   /**< borrowed; shared with the service */
    const char *model_dir;     /**< NULL: engine default */
    const char *work_dir;      /**< NULL: $TMPDIR or /tmp, + /clipreel-worker */
    int claim_idle_ms;         /**< reclaim after this idle time (default 30000) */
    int max_attempts;          /**< default 3 */
    int concurrency;           /**< loop threads, default 1 */
    int block_ms;              /**< XREADGROUP BLOCK (default 1000) */
    int engine_threads;        /**< 0: all cores */
    int engine_lanes;          /**< model lanes per export; 0: one per thread, at most 4 */
    int upscale;               /**< -1: as the job says; else a forced ReelUpscaleMode */
    ReelJobLimits limits;      /**< zeroed: defaults */
} ReelWorkerConfig;

typedef struct ReelWorkerStats {
    int64_t completed;     /**< results this worker published */
    int64_t failed;        /**< error/cancelled results it published */
    int64_t retried;       /**< attempts left for a retry (transient failures) */
    int64_t lost;          /**< attempts abandoned because another worker took over */
    int64_t duplicates;    /**< finished, but another worker's result won */
    int64_t models_loaded; /**< model loads in this process */
} ReelWorkerStats;

/** Create a worker (cfg copied; the store is borrowed). */
int reel_worker_create(ReelWorker **out, const ReelWorkerConfig *cfg, char *errmsg);

/**
 * Serve until reel_worker_stop: running exports are interrupted and left
 * un-acked (another worker reclaims them). @return 0, or a negative error when
 * the worker could not start (errmsg set).
 */
int reel_worker_run(ReelWorker *w, char *errmsg);

/** Ask reel_worker_run to return (async-signal-safe). */
void reel_worker_stop(ReelWorker *w);

void reel_worker_stats(ReelWorker *w, ReelWorkerStats *stats);

/** Free a stopped worker (closes the model). NULL-safe. */
void reel_worker_free(ReelWorker **w);

#endif
