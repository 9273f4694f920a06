/*
 * jobstore.h - durable export records in SQLite (DESIGN sections 6 and 9).
 *
 * One row per export, keyed by (user, export_id): the export id is made by the
 * client, so two users may pick the same id and still never meet. A row is
 * written (and committed, synchronous=FULL in WAL mode) before the service
 * answers 202, and it is the only durable state of an export: the WebSocket
 * progress is lossy by design, a restarted server rebuilds everything from
 * these rows (reel_jobstore_list_status at start-up).
 *
 * Life of a row:
 *
 *     claim -> RECEIVING --set_pending--> PENDING --mark_processing--> PROCESSING
 *                  |                        |  ^                         |
 *                  | (request failed:       |  +---- requeue (restart) --+
 *                  |  delete)               v                            v
 *                  +-------------> CANCELLED / ERROR / COMPLETE  <--finish--+
 *
 * RECEIVING is internal (the upload of that request is still running) and is
 * shown to clients as "pending". `sources_deleted` records whether the temporary
 * source objects are gone, so a crash between finishing a row and deleting
 * them is repaired at the next start.
 *
 * Thread-safety: a ReelJobStore may be used from any number of threads; calls
 * are serialised on one connection by an internal mutex. Every call is short
 * (one statement or one small transaction).
 */
#ifndef REEL_JOBS_JOBSTORE_H
#define REEL_JOBS_JOBSTORE_H

#include <stdint.h>

typedef struct ReelJobStore ReelJobStore;

typedef enum ReelExportStatus {
    REEL_EXPORT_RECEIVING = 0, /**< upload in progress (internal; API shows "pending") */
    REEL_EXPORT_PENDING,
    REEL_EXPORT_PROCESSING,
    REEL_EXPORT_COMPLETE,
    REEL_EXPORT_ERROR,
    REEL_EXPORT_CANCELLED,
} ReelExportStatus;

#define REEL_ID_MAX 128  /**< longest export id / user id / project id, in bytes */
#define REEL_KEY_MAX 512 /**< longest storage key */

typedef struct ReelExportRecord {
    char user[REEL_ID_MAX + 1];
    char export_id[REEL_ID_MAX + 1];
    char project_id[REEL_ID_MAX + 1]; /**< "" when the request had none */
    char project_name[256];
    char type[24]; /**< "multi_clip" */
    ReelExportStatus status;
    char error[512];
    char phase[24];                               /**< last phase name, "" before any */
    double progress;                              /**< 0..100, last recorded */
    char output_key[REEL_KEY_MAX];                /**< "" until complete */
    char chapters_key[REEL_KEY_MAX];              /**< "" when none */
    char output_filename[REEL_KEY_MAX];           /**< basename of output_key */
    int64_t created_ms, started_ms, completed_ms; /**< Unix ms, 0 = not yet */
    int attempts;                                 /**< times the export was started (here) */
    char runner[16];                              /**< "" in this process, "redis" on the workers */
    int sources_deleted;
    char *job_json;     /**< normalised job (only with REEL_JOBSTORE_WITH_JSON); caller frees */
    char *sources_json; /**< [{"clip":N,"key":"..."}] (same) */
} ReelExportRecord;

#define REEL_JOBSTORE_WITH_JSON 1

/** Name of a status as the API spells it ("pending" for RECEIVING). */
const char *reel_export_status_name(ReelExportStatus status);

/** 1 for COMPLETE, ERROR and CANCELLED. */
int reel_export_status_terminal(ReelExportStatus status);

/**
 * Open (creating if needed) the database at path: WAL, synchronous=FULL,
 * busy timeout 5 s, schema created or checked.
 * @return 0, or a negative error with errmsg (REEL_ERRMSG_SIZE, may be NULL) set.
 */
int reel_jobstore_open(ReelJobStore **out, const char *path, char *errmsg);
void reel_jobstore_close(ReelJobStore **js);

/** Current time in Unix milliseconds (the clock rows use). */
int64_t reel_jobstore_now_ms(void);

/**
 * Create a RECEIVING row for (user, export_id). Atomic: of two concurrent claims
 * of one id exactly one succeeds.
 * @return 0, REEL_ERR(EEXIST) when the row exists already, or another error.
 */
int reel_jobstore_claim(ReelJobStore *js, const char *user, const char *export_id,
                        const char *project_id, const char *project_name, const char *type);

/** RECEIVING -> PENDING with the normalised job and its source keys. -ENOENT if not RECEIVING. */
int reel_jobstore_set_pending(ReelJobStore *js, const char *user, const char *export_id,
                              const char *job_json, const char *sources_json);

/** Delete a row (a request that failed before its 202). Absent rows succeed. */
int reel_jobstore_delete(ReelJobStore *js, const char *user, const char *export_id);

/**
 * Read one row into rec (flags: REEL_JOBSTORE_WITH_JSON also loads job_json and
 * sources_json, which the caller frees with reel_jobstore_record_uninit).
 * @return 0, or REEL_ERR(ENOENT).
 */
int reel_jobstore_get(ReelJobStore *js, const char *user, const char *export_id,
                      ReelExportRecord *rec, int flags);

/** Free what reel_jobstore_get allocated in rec (safe on a zeroed record). */
void reel_jobstore_record_uninit(ReelExportRecord *rec);

/**
 * Call cb for every row of user (NULL: all users) whose status is in the
 * mask (1 << ReelExportStatus), oldest first. cb's non-zero return stops the
 * walk and is returned. Rows are read without their JSON.
 */
int reel_jobstore_list(ReelJobStore *js, const char *user, unsigned status_mask,
                       int (*cb)(void *opaque, const ReelExportRecord *rec), void *opaque);

/**
 * Call cb for the rows of user created at or after since_ms, newest first, at
 * most limit rows (the app's GET /api/exports/recent). Same contract as
 * reel_jobstore_list.
 */
int reel_jobstore_list_recent(ReelJobStore *js, const char *user, int64_t since_ms, int limit,
                              int (*cb)(void *opaque, const ReelExportRecord *rec), void *opaque);

/** PENDING -> PROCESSING: started_at = now, attempts + 1. -ENOENT if not PENDING. */
int reel_jobstore_mark_processing(ReelJobStore *js, const char *user, const char *export_id);

/** PENDING -> PROCESSING on the scale-out workers (runner "redis"). -ENOENT if not PENDING. */
int reel_jobstore_mark_remote(ReelJobStore *js, const char *user, const char *export_id);

/** PROCESSING -> PENDING (restart with on_restart=rerun, or a clean shutdown). */
int reel_jobstore_requeue(ReelJobStore *js, const char *user, const char *export_id);

/** Record the phase and percent of a running export (best effort, no status change). */
int reel_jobstore_update_progress(ReelJobStore *js, const char *user, const char *export_id,
                                  const char *phase, double progress);

/**
 * Move a row to a terminal status (COMPLETE, ERROR or CANCELLED) from any
 * non-terminal one; completed_at = now. error, output_key, chapters_key may be
 * NULL. @return 0, -ENOENT when absent or already terminal.
 */
int reel_jobstore_finish(ReelJobStore *js, const char *user, const char *export_id,
                         ReelExportStatus status, const char *error, const char *output_key,
                         const char *chapters_key);

/** Note that the temporary source objects of a row have been deleted. */
int reel_jobstore_set_sources_deleted(ReelJobStore *js, const char *user, const char *export_id);

/**
 * Call cb for every terminal row whose sources are not yet deleted (the repair
 * pass at start-up); same contract as reel_jobstore_list but rows carry
 * sources_json.
 */
int reel_jobstore_list_undeleted(ReelJobStore *js,
                                 int (*cb)(void *opaque, const ReelExportRecord *rec),
                                 void *opaque);

/** The database's last error text (for logs). */
const char *reel_jobstore_errmsg(ReelJobStore *js);

#endif
