/*
 * jobstore.c - export records in SQLite.
 *
 * One connection, one mutex: the service writes a few rows per export (claim,
 * pending, processing, a progress note per second, finish), so a single
 * serialised connection is far from a bottleneck and keeps SQLite's locking out
 * of the picture. Statuses are stored by name so that `sqlite3 jobs.db` is
 * readable by an operator. SQLite result codes are translated here, once:
 * SQLITE_CONSTRAINT -> EEXIST, SQLITE_BUSY/LOCKED -> EBUSY, SQLITE_NOMEM ->
 * ENOMEM, everything else -> EIO, with the text kept in js->errmsg.
 */
#include "jobs/jobstore.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "core/error.h"
#include "core/log.h"

struct ReelJobStore {
    sqlite3 *db;
    pthread_mutex_t lock;
    char errmsg[REEL_ERRMSG_SIZE];
};

static const char *const status_db_names[] = {
    "receiving", "pending", "processing", "complete", "error", "cancelled",
};

#define NB_STATUS ((int)(sizeof(status_db_names) / sizeof(status_db_names[0])))

static const char schema[] = "CREATE TABLE IF NOT EXISTS exports ("
                             " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                             " user_id TEXT NOT NULL,"
                             " export_id TEXT NOT NULL,"
                             " project_id TEXT NOT NULL DEFAULT '',"
                             " project_name TEXT NOT NULL DEFAULT '',"
                             " type TEXT NOT NULL DEFAULT 'multi_clip',"
                             " status TEXT NOT NULL,"
                             " error TEXT NOT NULL DEFAULT '',"
                             " phase TEXT NOT NULL DEFAULT '',"
                             " progress REAL NOT NULL DEFAULT 0,"
                             " output_key TEXT NOT NULL DEFAULT '',"
                             " chapters_key TEXT NOT NULL DEFAULT '',"
                             " created_ms INTEGER NOT NULL,"
                             " started_ms INTEGER NOT NULL DEFAULT 0,"
                             " completed_ms INTEGER NOT NULL DEFAULT 0,"
                             " attempts INTEGER NOT NULL DEFAULT 0,"
                             " sources_deleted INTEGER NOT NULL DEFAULT 0,"
                             " job_json TEXT,"
                             " sources_json TEXT,"
                             " runner TEXT NOT NULL DEFAULT '',"
                             " UNIQUE(user_id, export_id));"
                             "CREATE INDEX IF NOT EXISTS exports_status ON exports(status, seq);"
                             "CREATE INDEX IF NOT EXISTS exports_user ON exports(user_id, seq);";

#define COLUMNS                                                                                    \
    "user_id, export_id, project_id, project_name, type, status, error, phase, progress,"          \
    " output_key, chapters_key, created_ms, started_ms, completed_ms, attempts,"                   \
    " sources_deleted, runner"

const char *reel_export_status_name(ReelExportStatus status)
{
    if (status == REEL_EXPORT_RECEIVING)
        return "pending";
    if ((int)status < 0 || (int)status >= NB_STATUS)
        return "unknown";
    return status_db_names[status];
}

int reel_export_status_terminal(ReelExportStatus status)
{
    return status == REEL_EXPORT_COMPLETE || status == REEL_EXPORT_ERROR ||
           status == REEL_EXPORT_CANCELLED;
}

static ReelExportStatus status_from_db(const char *name)
{
    for (int i = 0; name && i < NB_STATUS; i++)
        if (!strcmp(name, status_db_names[i]))
            return (ReelExportStatus)i;
    return REEL_EXPORT_ERROR; /* defensive: an unknown name reads as failed */
}

int64_t reel_jobstore_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Translate a SQLite result code, keeping the text. Called with the lock held. */
static int db_error(ReelJobStore *js, int rc, const char *what)
{
    int err;

    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        err = REEL_ERR(EEXIST);
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        err = REEL_ERR(EBUSY);
        break;
    case SQLITE_NOMEM:
        err = REEL_ERR(ENOMEM);
        break;
    default:
        err = REEL_ERR(EIO);
    }
    snprintf(js->errmsg, sizeof(js->errmsg), "%s: %s", what, sqlite3_errmsg(js->db));
    if (err != REEL_ERR(EEXIST))
        reel_log(REEL_LOG_ERROR, "jobstore", "%s", js->errmsg);
    return err;
}

int reel_jobstore_open(ReelJobStore **out, const char *path, char *errmsg)
{
    ReelJobStore *js;
    char *sqlerr = NULL;
    int rc, ret;

    *out = NULL;
    if (!(js = calloc(1, sizeof(*js))))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "job store: out of memory");
    pthread_mutex_init(&js->lock, NULL);
    rc = sqlite3_open_v2(path, &js->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK) {
        ret = reel_fail(errmsg, REEL_ERR(EIO), "job store %s: %s", path,
                        js->db ? sqlite3_errmsg(js->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(js->db, 5000);
    /* WAL: readers never block the writer; FULL: a row is on disk before the 202. */
    rc = sqlite3_exec(js->db,
                      "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
                      NULL, NULL, &sqlerr);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(js->db, schema, NULL, NULL, &sqlerr);
    if (rc == SQLITE_OK) {
        /* Databases made before the runner column: add it (an error means it exists). */
        sqlite3_exec(js->db, "ALTER TABLE exports ADD COLUMN runner TEXT NOT NULL DEFAULT ''", NULL,
                     NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        ret = reel_fail(errmsg, REEL_ERR(EIO), "job store %s: %s", path,
                        sqlerr ? sqlerr : sqlite3_errstr(rc));
        sqlite3_free(sqlerr);
        goto fail;
    }
    *out = js;
    return 0;

fail:
    sqlite3_close(js->db);
    pthread_mutex_destroy(&js->lock);
    free(js);
    return ret;
}

void reel_jobstore_close(ReelJobStore **pjs)
{
    ReelJobStore *js = *pjs;

    if (!js)
        return;
    sqlite3_close(js->db);
    pthread_mutex_destroy(&js->lock);
    free(js);
    *pjs = NULL;
}

const char *reel_jobstore_errmsg(ReelJobStore *js)
{
    return js->errmsg;
}

/*
 * Run one modifying statement with text/int64 parameters given as a format
 * string: 's' text (NULL binds NULL), 'i' int64, 'd' double. Returns the number
 * of rows changed (>= 0) or a negative error.
 */
static int exec_locked(ReelJobStore *js, const char *sql, const char *types, va_list ap)
{
    sqlite3_stmt *st = NULL;
    int rc = SQLITE_OK, ret;

    rc = sqlite3_prepare_v2(js->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_error(js, rc, "prepare");
    for (int i = 0; types[i]; i++) {
        if (types[i] == 's') {
            const char *s = va_arg(ap, const char *);
            rc = s ? sqlite3_bind_text(st, i + 1, s, -1, SQLITE_TRANSIENT)
                   : sqlite3_bind_null(st, i + 1);
        } else if (types[i] == 'i') {
            rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
        } else {
            rc = sqlite3_bind_double(st, i + 1, va_arg(ap, double));
        }
        if (rc != SQLITE_OK)
            break;
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        ret = db_error(js, rc, "write");
    else
        ret = sqlite3_changes(js->db);
    sqlite3_finalize(st);
    return ret;
}

/* exec_locked under the store's lock. */
static int exec(ReelJobStore *js, const char *sql, const char *types, ...)
{
    va_list ap;
    int ret;

    va_start(ap, types);
    pthread_mutex_lock(&js->lock);
    ret = exec_locked(js, sql, types, ap);
    pthread_mutex_unlock(&js->lock);
    va_end(ap);
    return ret;
}

int reel_jobstore_claim(ReelJobStore *js, const char *user, const char *export_id,
                        const char *project_id, const char *project_name, const char *type)
{
    int ret =
        exec(js,
             "INSERT INTO exports (user_id, export_id, project_id, project_name, type,"
             " status, created_ms) VALUES (?, ?, ?, ?, ?, 'receiving', ?)",
             "sssssi", user, export_id, project_id ? project_id : "",
             project_name ? project_name : "", type ? type : "multi_clip", reel_jobstore_now_ms());
    return ret < 0 ? ret : 0;
}

int reel_jobstore_set_pending(ReelJobStore *js, const char *user, const char *export_id,
                              const char *job_json, const char *sources_json)
{
    int ret = exec(js,
                   "UPDATE exports SET status = 'pending', phase = 'queued', job_json = ?,"
                   " sources_json = ? WHERE user_id = ? AND export_id = ?"
                   " AND status = 'receiving'",
                   "ssss", job_json, sources_json, user, export_id);
    return ret < 0 ? ret : ret == 0 ? REEL_ERR(ENOENT) : 0;
}

int reel_jobstore_delete(ReelJobStore *js, const char *user, const char *export_id)
{
    int ret =
        exec(js, "DELETE FROM exports WHERE user_id = ? AND export_id = ?", "ss", user, export_id);
    return ret < 0 ? ret : 0;
}

static void copy_col(char *dst, size_t size, sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    snprintf(dst, size, "%s", s ? (const char *)s : "");
}

static char *dup_col(sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    return s ? strdup((const char *)s) : NULL;
}

static void read_row(sqlite3_stmt *st, ReelExportRecord *rec)
{
    const char *base;

    memset(rec, 0, sizeof(*rec));
    copy_col(rec->user, sizeof(rec->user), st, 0);
    copy_col(rec->export_id, sizeof(rec->export_id), st, 1);
    copy_col(rec->project_id, sizeof(rec->project_id), st, 2);
    copy_col(rec->project_name, sizeof(rec->project_name), st, 3);
    copy_col(rec->type, sizeof(rec->type), st, 4);
    rec->status = status_from_db((const char *)sqlite3_column_text(st, 5));
    copy_col(rec->error, sizeof(rec->error), st, 6);
    copy_col(rec->phase, sizeof(rec->phase), st, 7);
    rec->progress = sqlite3_column_double(st, 8);
    copy_col(rec->output_key, sizeof(rec->output_key), st, 9);
    copy_col(rec->chapters_key, sizeof(rec->chapters_key), st, 10);
    rec->created_ms = sqlite3_column_int64(st, 11);
    rec->started_ms = sqlite3_column_int64(st, 12);
    rec->completed_ms = sqlite3_column_int64(st, 13);
    rec->attempts = sqlite3_column_int(st, 14);
    rec->sources_deleted = sqlite3_column_int(st, 15);
    copy_col(rec->runner, sizeof(rec->runner), st, 16);
    base = strrchr(rec->output_key, '/');
    snprintf(rec->output_filename, sizeof(rec->output_filename), "%s",
             base ? base + 1 : rec->output_key);
}

int reel_jobstore_get(ReelJobStore *js, const char *user, const char *export_id,
                      ReelExportRecord *rec, int flags)
{
    sqlite3_stmt *st = NULL;
    int rc, ret;

    memset(rec, 0, sizeof(*rec));
    pthread_mutex_lock(&js->lock);
    rc = sqlite3_prepare_v2(js->db,
                            "SELECT " COLUMNS ", job_json, sources_json FROM exports"
                            " WHERE user_id = ? AND export_id = ?",
                            -1, &st, NULL);
    if (rc != SQLITE_OK) {
        ret = db_error(js, rc, "prepare");
        goto end;
    }
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, export_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        ret = REEL_ERR(ENOENT);
    } else if (rc != SQLITE_ROW) {
        ret = db_error(js, rc, "read");
    } else {
        read_row(st, rec);
        ret = 0;
        if (flags & REEL_JOBSTORE_WITH_JSON) {
            rec->job_json = dup_col(st, 17);
            rec->sources_json = dup_col(st, 18);
            if ((sqlite3_column_type(st, 17) != SQLITE_NULL && !rec->job_json) ||
                (sqlite3_column_type(st, 18) != SQLITE_NULL && !rec->sources_json)) {
                reel_jobstore_record_uninit(rec);
                ret = REEL_ERR(ENOMEM);
            }
        }
    }
end:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&js->lock);
    return ret;
}

void reel_jobstore_record_uninit(ReelExportRecord *rec)
{
    free(rec->job_json);
    free(rec->sources_json);
    rec->job_json = rec->sources_json = NULL;
}

/*
 * Rows are collected under the lock and handed to cb without it, so that a
 * callback may call back into the store (the start-up pass requeues rows).
 */
typedef struct RowList {
    ReelExportRecord *rows;
    int nb, cap;
} RowList;

static int collect(ReelJobStore *js, sqlite3_stmt *st, RowList *list, int with_sources)
{
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (list->nb == list->cap) {
            int cap = list->cap ? list->cap * 2 : 16;
            ReelExportRecord *rows = realloc(list->rows, (size_t)cap * sizeof(*rows));
            if (!rows)
                return REEL_ERR(ENOMEM);
            list->rows = rows;
            list->cap = cap;
        }
        read_row(st, &list->rows[list->nb]);
        if (with_sources)
            list->rows[list->nb].sources_json = dup_col(st, 17);
        list->nb++;
    }
    return rc == SQLITE_DONE ? 0 : db_error(js, rc, "read");
}

static int walk2(ReelJobStore *js, const char *sql, const char *user, int64_t since_ms, int limit,
                 int with_sources, int (*cb)(void *, const ReelExportRecord *), void *opaque);

static int walk(ReelJobStore *js, const char *sql, const char *user, int with_sources,
                int (*cb)(void *, const ReelExportRecord *), void *opaque)
{
    return walk2(js, sql, user, -1, -1, with_sources, cb, opaque);
}

/* Parameters: user (if not NULL), then since_ms and limit (if >= 0). */
static int walk2(ReelJobStore *js, const char *sql, const char *user, int64_t since_ms, int limit,
                 int with_sources, int (*cb)(void *, const ReelExportRecord *), void *opaque)
{
    sqlite3_stmt *st = NULL;
    RowList list = {0};
    int rc, ret = 0;

    pthread_mutex_lock(&js->lock);
    rc = sqlite3_prepare_v2(js->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        ret = db_error(js, rc, "prepare");
    } else {
        int n = 1;
        if (user)
            sqlite3_bind_text(st, n++, user, -1, SQLITE_STATIC);
        if (since_ms >= 0)
            sqlite3_bind_int64(st, n++, since_ms);
        if (limit >= 0)
            sqlite3_bind_int(st, n++, limit);
        ret = collect(js, st, &list, with_sources);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&js->lock);

    for (int i = 0; ret == 0 && i < list.nb; i++)
        ret = cb(opaque, &list.rows[i]);
    for (int i = 0; i < list.nb; i++)
        reel_jobstore_record_uninit(&list.rows[i]);
    free(list.rows);
    return ret;
}

int reel_jobstore_list(ReelJobStore *js, const char *user, unsigned status_mask,
                       int (*cb)(void *opaque, const ReelExportRecord *rec), void *opaque)
{
    char sql[512];
    size_t n;
    int first = 1;

    n = (size_t)snprintf(sql, sizeof(sql), "SELECT " COLUMNS " FROM exports WHERE %s status IN (",
                         user ? "user_id = ? AND" : "");
    for (int i = 0; i < NB_STATUS; i++) {
        if (!(status_mask & (1u << i)))
            continue;
        n += (size_t)snprintf(sql + n, sizeof(sql) - n, "%s'%s'", first ? "" : ", ",
                              status_db_names[i]);
        first = 0;
    }
    if (first)
        return 0;
    snprintf(sql + n, sizeof(sql) - n, ") ORDER BY seq");
    return walk(js, sql, user, 0, cb, opaque);
}

int reel_jobstore_list_recent(ReelJobStore *js, const char *user, int64_t since_ms, int limit,
                              int (*cb)(void *opaque, const ReelExportRecord *rec), void *opaque)
{
    return walk2(js,
                 "SELECT " COLUMNS " FROM exports WHERE user_id = ? AND created_ms >= ?"
                 " AND status != 'receiving' ORDER BY seq DESC LIMIT ?",
                 user, since_ms < 0 ? 0 : since_ms, limit < 0 ? 0 : limit, 0, cb, opaque);
}

int reel_jobstore_list_undeleted(ReelJobStore *js,
                                 int (*cb)(void *opaque, const ReelExportRecord *rec), void *opaque)
{
    return walk(js,
                "SELECT " COLUMNS ", sources_json FROM exports WHERE sources_deleted = 0"
                " AND status IN ('complete', 'error', 'cancelled') ORDER BY seq",
                NULL, 1, cb, opaque);
}

static int changed(int ret)
{
    return ret < 0 ? ret : ret == 0 ? REEL_ERR(ENOENT) : 0;
}

int reel_jobstore_mark_processing(ReelJobStore *js, const char *user, const char *export_id)
{
    return changed(exec(js,
                        "UPDATE exports SET status = 'processing', started_ms = ?,"
                        " attempts = attempts + 1, error = '' WHERE user_id = ?"
                        " AND export_id = ? AND status = 'pending'",
                        "iss", reel_jobstore_now_ms(), user, export_id));
}

int reel_jobstore_mark_remote(ReelJobStore *js, const char *user, const char *export_id)
{
    return changed(
        exec(js,
             "UPDATE exports SET status = 'processing', runner = 'redis', started_ms = ?,"
             " attempts = attempts + 1, error = '', phase = 'queued'"
             " WHERE user_id = ? AND export_id = ? AND status = 'pending'",
             "iss", reel_jobstore_now_ms(), user, export_id));
}

int reel_jobstore_requeue(ReelJobStore *js, const char *user, const char *export_id)
{
    return changed(
        exec(js,
             "UPDATE exports SET status = 'pending', phase = 'queued', progress = 0,"
             " runner = '' WHERE user_id = ? AND export_id = ? AND status = 'processing'",
             "ss", user, export_id));
}

int reel_jobstore_update_progress(ReelJobStore *js, const char *user, const char *export_id,
                                  const char *phase, double progress)
{
    return changed(exec(js,
                        "UPDATE exports SET phase = ?, progress = ? WHERE user_id = ?"
                        " AND export_id = ? AND status = 'processing'",
                        "sdss", phase, progress, user, export_id));
}

int reel_jobstore_finish(ReelJobStore *js, const char *user, const char *export_id,
                         ReelExportStatus status, const char *error, const char *output_key,
                         const char *chapters_key)
{
    const char *phase = status == REEL_EXPORT_COMPLETE    ? "complete"
                        : status == REEL_EXPORT_CANCELLED ? "cancelled"
                                                          : "error";

    if (!reel_export_status_terminal(status))
        return REEL_ERR(EINVAL);
    return changed(exec(js,
                        "UPDATE exports SET status = ?, phase = ?, error = ?, output_key = ?,"
                        " chapters_key = ?, completed_ms = ?,"
                        " progress = CASE WHEN ? = 'complete' THEN 100 ELSE progress END"
                        " WHERE user_id = ? AND export_id = ?"
                        " AND status IN ('receiving', 'pending', 'processing')",
                        "sssssisss", status_db_names[status], phase, error ? error : "",
                        output_key ? output_key : "", chapters_key ? chapters_key : "",
                        reel_jobstore_now_ms(), status_db_names[status], user, export_id));
}

int reel_jobstore_set_sources_deleted(ReelJobStore *js, const char *user, const char *export_id)
{
    return changed(exec(js,
                        "UPDATE exports SET sources_deleted = 1 WHERE user_id = ?"
                        " AND export_id = ?",
                        "ss", user, export_id));
}
