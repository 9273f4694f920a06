/*
 * redisq.h - the scale-out queue: exports on Redis Streams (DESIGN section 7).
 *
 * The protocol (stream and key names, entry fields, states, retention, claim
 * refresh and reclaim, exactly-one result) is written down in docs/scaleout.md;
 * this is its C side over hiredis 0.14. In short: one stream per GPU class,
 * `clipreel:jobs:{class}`, consumer group `workers`; one hash per export,
 * `clipreel:export:{user}:{export_id}`, holding state, owner, attempts and a
 * result field written once with HSETNX; progress frames PUBLISHed on
 * `clipreel:progress:{user}:{export_id}` with the newest one kept in
 * `...:latest`.
 *
 * Parallel mode (an export enqueued with parts = N): N `part` entries (one per
 * clip, any worker of the class) and, added exactly once by the atomic script
 * behind reel_redisq_record_part when the last part is recorded, one
 * `assemble` entry. Each task has its own owner and attempt count in the
 * export hash (`owner:part3`, `attempts:assemble`, ...); the export's result
 * is still written once. Part progress is combined in Redis into one
 * monotonic percent (reel_redisq_publish_task_progress).
 *
 * Errors: hiredis failures are translated here. A broken connection (Redis
 * restarted, network) is REEL_ERR(ECONNRESET); the next call on the same
 * ReelRedisq reconnects first (AUTH, SELECT, groups are re-created as needed),
 * so a caller only has to retry. An error reply or an unexpected reply shape is
 * REEL_ERR(EPROTO). The sentence is in reel_redisq_errmsg().
 *
 * Thread-safety: a ReelRedisq is one connection and is bound to one thread at
 * a time (hiredis contexts are not thread-safe); open one per thread.
 */
#ifndef REEL_JOBS_REDISQ_H
#define REEL_JOBS_REDISQ_H

#include <stdint.h>

typedef struct ReelRedisq ReelRedisq;

#define REEL_REDISQ_GROUP "workers"
#define REEL_REDISQ_NAME_MAX 128   /**< user, export id, class, consumer (bytes, without NUL) */
#define REEL_REDISQ_MAX_PARTS 1000 /**< parts of one parallel export */

/** A parsed redis:// URL. */
typedef struct ReelRedisUrl {
    char host[256];
    int port;           /**< default 6379 */
    int db;             /**< default 0 */
    char user[128];     /**< ACL user, "" = default */
    char password[256]; /**< "" = no AUTH */
} ReelRedisUrl;

/**
 * Parse redis://[[user]:password@]host[:port][/db]. errmsg (REEL_ERRMSG_SIZE,
 * may be NULL) names the problem. @return 0 or REEL_ERR(EINVAL).
 */
int reel_redisq_url_parse(ReelRedisUrl *url, const char *text, char *errmsg);

/**
 * Connect. timeout_ms bounds the connect and every reply; keep it longer than
 * any BLOCK passed to reel_redisq_read (it is raised to block_ms + 5 s there).
 * @return 0 and a new connection in *out (free with reel_redisq_close), or a
 *         negative error with errmsg set and *out NULL.
 */
int reel_redisq_open(ReelRedisq **out, const char *url, int timeout_ms, char *errmsg);
void reel_redisq_close(ReelRedisq **q);
const char *reel_redisq_errmsg(const ReelRedisq *q);

/** What to enqueue (all borrowed). */
typedef struct ReelRedisqExport {
    const char *gpu_class; /**< routes the stream: clipreel:jobs:{gpu_class} */
    const char *user;
    const char *export_id;
    const char *project_id;   /**< may be NULL */
    const char *project_name; /**< may be NULL */
    const char *job_json;     /**< the normalised job */
    const char *sources_json; /**< [{"clip":N,"key":"..."}] */
    int parts;                /**< 0: one single task; N > 0: parallel, N part tasks (one per
                                   clip, N = the job's clip count) then one assemble task */
} ReelRedisqExport;

/**
 * Create the export's hash (state queued) and add its stream entry, atomically.
 * stream_id (64 bytes, may be NULL) receives the entry id.
 * @return 0, REEL_ERR(EEXIST) when the export is known already, REEL_ERR(EINVAL)
 *         for a bad name, or a connection/protocol error.
 */
int reel_redisq_enqueue(ReelRedisq *q, const ReelRedisqExport *e, char *stream_id);

/** One stream entry taken by a consumer. */
typedef struct ReelRedisqMsg {
    char stream_id[64];
    char gpu_class[REEL_REDISQ_NAME_MAX + 1];
    char user[REEL_REDISQ_NAME_MAX + 1];
    char export_id[REEL_REDISQ_NAME_MAX + 1];
    char project_id[REEL_REDISQ_NAME_MAX + 1];
    char project_name[256];
    char mode[16];      /**< "single", "part" or "assemble" */
    int part;           /**< part task: the clip's 0-based index in clip order; else -1 */
    int parts;          /**< part/assemble: the export's part count; single: 0 */
    char task[24];      /**< "" (single), "part{K}" or "assemble": suffix of the hash's
                             per-task fields (owner:{task}, attempts:{task}) */
    char *job_json;     /**< owned; free with reel_redisq_msg_uninit */
    char *sources_json; /**< owned */
    int reclaimed;      /**< 1 when taken over from a silent consumer */
} ReelRedisqMsg;

void reel_redisq_msg_uninit(ReelRedisqMsg *msg);

/**
 * Read one NEW entry of gpu_class's stream for consumer, waiting up to block_ms
 * (0: do not wait). Creates the stream and group when missing.
 * @return 1 with *msg filled, 0 when none came, or a negative error.
 */
int reel_redisq_read(ReelRedisq *q, const char *gpu_class, const char *consumer, int block_ms,
                     ReelRedisqMsg *msg);

/**
 * Take over one entry that has been idle (not refreshed) for at least
 * min_idle_ms (XAUTOCLAIM). Entries whose data was trimmed away are acked.
 * @return 1 with *msg filled (msg->reclaimed = 1), 0 when none, or an error.
 */
int reel_redisq_autoclaim(ReelRedisq *q, const char *gpu_class, const char *consumer,
                          int min_idle_ms, ReelRedisqMsg *msg);

/** reel_redisq_begin outcomes (>= 0). */
#define REEL_REDISQ_RUN 0 /**< run it: state running, owner set, attempt counted */
#define REEL_REDISQ_DONE                                                                           \
    1                           /**< the export has a result already (or no hash): ack; its        \
                                     temporary objects are garbage */
#define REEL_REDISQ_PART_DONE 4 /**< part task whose part is recorded already: just ack */
#define REEL_REDISQ_GAVE_UP 2   /**< attempts exhausted: the error result is published */
#define REEL_REDISQ_CANCELLED 3 /**< cancel was requested: the cancelled result is published */

/**
 * Start an attempt on a taken entry: count it (the task's attempts + 1, written
 * to *attempt; the export's `attempts` counts every task's), record the task's
 * owner (`{consumer}#{attempt}` is written to owner_out, REEL_REDISQ_NAME_MAX +
 * 16 bytes) and state running. A task that exhausted max_attempts fails the
 * whole export (GAVE_UP).
 * @return one of the outcomes above, or a negative error.
 */
int reel_redisq_begin(ReelRedisq *q, const ReelRedisqMsg *msg, const char *consumer,
                      int max_attempts, int *attempt, char *owner_out);

/** reel_redisq_refresh outcomes (>= 0). */
#define REEL_REDISQ_HELD 0   /**< still ours; idle time reset */
#define REEL_REDISQ_LOST 1   /**< another consumer owns it now, or it has a result */
#define REEL_REDISQ_CANCEL 2 /**< still ours, but cancel was requested */

/**
 * Refresh the claim (XCLAIM ... JUSTID under WATCH of the owner field), so the
 * entry stays non-idle. Never takes the entry from another owner.
 */
int reel_redisq_refresh(ReelRedisq *q, const ReelRedisqMsg *msg, const char *consumer,
                        const char *owner);

/** Acknowledge the entry (it leaves the group's pending list). */
int reel_redisq_ack(ReelRedisq *q, const ReelRedisqMsg *msg);

/** reel_redisq_record_part outcomes (>= 0). */
#define REEL_REDISQ_PART_DUPLICATE 0 /**< another attempt recorded this part first: drop ours */
#define REEL_REDISQ_PART_RECORDED 1  /**< recorded; other parts are still to come */
#define REEL_REDISQ_PART_LAST 2      /**< recorded, the last one: the assemble task was added */
#define REEL_REDISQ_PART_SETTLED 3   /**< the export has a result already: drop ours */
#define REEL_REDISQ_PART_CANCEL                                                                    \
    4 /**< cancel was requested: not recorded; publish the                                         \
           cancelled result */

/**
 * Record a finished part (its object is at part_key) in one atomic script:
 * HSETNX `part:{K}`; when that made parts_done reach parts, XADD the assemble
 * entry (same fields as the parts, mode assemble) to the same stream. So the
 * assemble task is added exactly once, by whichever part finished last, and
 * never without its parts.
 * @return one of the outcomes above, or a negative error (nothing recorded).
 */
int reel_redisq_record_part(ReelRedisq *q, const ReelRedisqMsg *msg, const char *part_key);

/** reel_redisq_rerender_part outcomes (>= 0). */
#define REEL_REDISQ_RERENDER_STALE 0   /**< part:{K} changed (re-queued or re-recorded already) */
#define REEL_REDISQ_RERENDER_QUEUED 1  /**< the part task is queued again; ack the assembly */
#define REEL_REDISQ_RERENDER_SETTLED 3 /**< the export has a result already */
#define REEL_REDISQ_RERENDER_CANCEL 4  /**< cancel was requested */
#define REEL_REDISQ_RERENDER_LIMIT 5   /**< this part was re-rendered max_rerenders times */

/**
 * An assemble task found part `part` recorded at gone_key but gone from the
 * store: in one atomic script, while part:{K} still names gone_key, forget it
 * (parts_done - 1, the part's attempts and the assembly's reset) and add a
 * part entry for it again, at most max_rerenders times per part. When that
 * part is recorded again, record_part adds a new assemble entry as it did the
 * first time.
 * @return one of the outcomes above, or a negative error (nothing changed).
 */
int reel_redisq_rerender_part(ReelRedisq *q, const ReelRedisqMsg *msg, int part,
                              const char *gone_key, int max_rerenders);

/**
 * The recorded part keys of a parallel export, in part order: *keys is a new
 * array of msg->parts strings (caller frees each and the array).
 * @return 0, REEL_ERR(ENOENT) when a part is missing, or an error.
 */
int reel_redisq_get_parts(ReelRedisq *q, const ReelRedisqMsg *msg, char ***keys);

/**
 * Publish a frame of a parallel export's task (one script, so frames of all
 * its workers are ordered): store the task's own percent (task_pct, 0-100,
 * kept monotonic per part), combine them into the export's percent (parts
 * weighted by `weights`, nb_weights == parts, else equally, share 0-90;
 * assemble 90-100), never below the last published one, set it as the frame's
 * `progress`, and for part tasks set `message`, `clip` and `total_clips` to
 * the clips rendering now; then SET ...:latest and PUBLISH. Nothing is
 * published once the export has a result.
 * @return 1 published, 0 not (settled), or a negative error.
 */
int reel_redisq_publish_task_progress(ReelRedisq *q, const ReelRedisqMsg *msg, double task_pct,
                                      const double *weights, int nb_weights, const char *frame);

/** Record the last attempt's failure in the hash's `error` (no state change). */
int reel_redisq_note_error(ReelRedisq *q, const char *user, const char *export_id,
                           const char *error);

/** A terminal result. */
typedef struct ReelRedisqResult {
    const char *status;       /**< "complete", "error" or "cancelled" */
    const char *output_key;   /**< complete: the MP4's key */
    const char *chapters_key; /**< complete: may be NULL or "" */
    const char *error;        /**< error/cancelled: the reason */
    const char *worker;       /**< who produced it */
} ReelRedisqResult;

/**
 * Publish the export's result exactly once (HSETNX of `result`); the winner
 * also sets state, keys, completed_ms and the 7-day expiry of the hash.
 * @return 1 when this call published it, 0 when a result existed already, or
 *         a negative error (then nothing was published).
 */
int reel_redisq_publish_result(ReelRedisq *q, const char *user, const char *export_id,
                               const ReelRedisqResult *res);

/**
 * PUBLISH a progress frame on clipreel:progress:{user}:{id} and keep it as
 * ...:latest (1 day), in one round trip.
 */
int reel_redisq_publish_progress(ReelRedisq *q, const char *user, const char *export_id,
                                 const char *frame);

/** Read the newest frame (caller frees *frame); *frame NULL when there is none. */
int reel_redisq_get_latest(ReelRedisq *q, const char *user, const char *export_id, char **frame);

/** The export hash, as read back. */
typedef struct ReelRedisqState {
    char state[16]; /**< "" when the export is unknown */
    char owner[REEL_REDISQ_NAME_MAX + 16];
    char gpu_class[REEL_REDISQ_NAME_MAX + 1];
    int attempts;
    int cancel;
    char error[512];
    char output_key[512];
    char chapters_key[512];
    char *result; /**< owned JSON or NULL; free with reel_redisq_state_uninit */
} ReelRedisqState;

void reel_redisq_state_uninit(ReelRedisqState *st);

/** Read the export hash. @return 1 found, 0 unknown, or an error. */
int reel_redisq_get_state(ReelRedisq *q, const char *user, const char *export_id,
                          ReelRedisqState *st);

/** Ask for a cancel (the owner sees it at its next refresh). @return 1 known, 0 unknown. */
int reel_redisq_cancel(ReelRedisq *q, const char *user, const char *export_id);

/** Entries of gpu_class's stream that are taken and not acked (XPENDING count). */
int64_t reel_redisq_pending(ReelRedisq *q, const char *gpu_class);

/** A consumer name unique to this process and n: {host}-{pid}-{n}. */
void reel_redisq_consumer_name(char *out, int size, int n);

#endif
