/*
 * remote.h - the service's side of the scale-out queue (DESIGN section 7,
 * docs/scaleout.md "Service side"): `clipreel serve --redis URL` hands exports
 * to `clipreel worker` processes through Redis Streams instead of running them
 * in process, and follows them back.
 *
 *   dispatch   plan the job (GPU class), reel_redisq_enqueue it with the row's
 *              job and source keys; the row becomes processing, runner "redis"
 *   frames     one thread PSUBSCRIBEs clipreel:progress:* and hands every frame
 *              to the service (the workers build frames in the service's shape)
 *   outcome    a terminal frame, or a poll of the export hash every few seconds
 *              (frames are lossy; a restarted server polls what it missed),
 *              settles the row from the hash's exactly-once `result`; the row
 *              is committed before the terminal frame is passed on
 *   cancel     reel_redisq_cancel; an export no worker has taken yet is settled
 *              as cancelled here (the result is written once, whoever wins)
 *   late join  the newest frame of an export from ...:latest
 *
 * DESIGN (connections): hiredis contexts are bound to one thread. The
 * subscriber owns its own raw connection (blocking read; stopped by shutting
 * its socket down). Everything else shares one command connection under a
 * mutex, reopened on demand after an error, with short timeouts, so an
 * unreachable Redis costs a caller at most that timeout.
 *
 * Thread-safety: all functions may be called from any thread.
 */
#ifndef REEL_JOBS_REMOTE_H
#define REEL_JOBS_REMOTE_H

#include "jobs/jobstore.h"

typedef struct ReelRemote ReelRemote;

/** A frame for WebSocket clients; terminal frames come after the row is final. */
typedef void (*ReelRemoteFrameFn)(void *opaque, const char *user, const char *export_id,
                                  const char *frame, int terminal);

typedef struct ReelRemoteConfig {
    const char *url;    /**< redis://[[user]:password@]host[:port][/db] */
    ReelJobStore *jobs; /**< borrowed */
    ReelRemoteFrameFn on_frame;
    void *opaque;
    int poll_ms; /**< outcome poll period (default 2000) */
    const char *plan_config; /**< planner table, JSON file (docs/planner.md); NULL = defaults */
} ReelRemoteConfig;

/**
 * Start the subscriber and the poller. Redis need not be up: connections are
 * (re)made when needed. @return 0, or REEL_ERR(EINVAL) for a bad URL (errmsg).
 */
int reel_remote_start(ReelRemote **out, const ReelRemoteConfig *cfg, char *errmsg);

/** Stop the threads and close the connections. NULL-safe. */
void reel_remote_stop(ReelRemote **r);

/**
 * Hand a PENDING row (read with its JSON) to the workers of its GPU class and
 * mark it processing remotely. @return 0; REEL_ERR(ECONNREFUSED/ECONNRESET)
 * when Redis cannot be reached (the row is untouched: run it here, or fail it);
 * REEL_ERR(EEXIST) when Redis knew the export already (it is followed as is).
 */
int reel_remote_dispatch(ReelRemote *r, const ReelExportRecord *rec, char *errmsg);

/** Ask the workers to cancel. @return 1 asked (or settled), 0 unknown to Redis, or an error. */
int reel_remote_cancel(ReelRemote *r, const char *user, const char *export_id);

/** The newest frame of an export (caller frees); NULL when none or unreachable. */
char *reel_remote_latest(ReelRemote *r, const char *user, const char *export_id);

#endif
