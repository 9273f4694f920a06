/*
 * executor.c - worker pool and the life of one export (see executor.h).
 *
 * Shape (after Redis' bio.c): one mutex guards the FIFO of waiting tasks, the
 * table of running ones and the admission counters; workers sleep on one
 * condition variable. Everything slow (storage transfers, the engine, SQLite
 * writes) happens outside the mutex.
 *
 * Progress of one export, as the service reports it (percent):
 *
 *     0 queued | 0-5 downloading (S3 only) | 5-95 (or 0-95) engine | 95-99 uploading | 100
 *
 * The engine's own percent is mapped into its span and the result is kept
 * monotonic; events are throttled to one per 200 ms unless the phase or the
 * clip changes, and the row's phase/progress is written at most once a second.
 */
#include "jobs/executor.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "media/export.h"
#include "storage/storage.h"
#include "upscale/upscale.h"
#include "jobs/remote.h"

#define LOG_TAG "executor"

typedef struct Task {
    char user[REEL_ID_MAX + 1];
    char export_id[REEL_ID_MAX + 1];
    atomic_int cancel; /* polled by the engine */
    int shutdown;      /* the cancel came from reel_executor_free: requeue, don't cancel */
    struct Task *next;
} Task;

struct ReelExecutor {
    ReelExecutorConfig cfg;
    char *work_dir, *model_dir;

    pthread_mutex_t lock;
    pthread_cond_t wake;
    Task *head, *tail; /* waiting, FIFO */
    int nb_pending;
    int nb_reserved;
    Task **running; /* cfg.workers slots */
    int nb_running;
    pthread_t *threads;
    int nb_threads;
    int stop;

    ReelRemote *remote; /* the scale-out queue, when configured */
    char *redis_url;

    /* The shared models: loaded on first use, kept for the life of the process,
     * used by one export at a time (model_busy, guarded by lock). */
    int model_busy;
    pthread_cond_t model_free;
    struct {
        char name[64];
        int tile, bf16;
        ReelUpscaler *up;
    } models[2]; /* the app uses one model; room for a second (x4plus) */
};

/* ---- small helpers ---------------------------------------------------------------------- */

/* snprintf that reports truncation as an error (paths and keys must be whole). */
static int fmt(char *dst, size_t size, const char *f, ...) __attribute__((format(printf, 3, 4)));

static int fmt(char *dst, size_t size, const char *f, ...)
{
    va_list ap;
    int n;

    va_start(ap, f);
    n = vsnprintf(dst, size, f, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= size ? REEL_ERR(ENAMETOOLONG) : 0;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void emit(ReelExecutor *ex, ReelExecEventKind kind, const ReelExportRecord *rec,
                 const char *phase, double percent, const char *message, const char *error)
{
    ReelExecEvent ev = {
        .kind = kind,
        .rec = rec,
        .phase = phase,
        .percent = percent,
        .eta_s = -1,
        .message = message,
        .error = error,
    };
    if (ex->cfg.on_event)
        ex->cfg.on_event(ex->cfg.opaque, &ev);
}

static int delete_listed(void *opaque, const char *key, const ReelStoreInfo *info)
{
    (void)info;
    reel_store_delete((ReelStore *)opaque, key);
    return 0;
}

int reel_executor_delete_sources(ReelStore *store, const char *user, const char *export_id,
                                 const char *sources_json)
{
    json_t *root = sources_json ? json_loads(sources_json, 0, NULL) : NULL;
    char prefix[REEL_KEY_MAX];
    size_t i;
    json_t *item;
    int ret = 0, r;

    if (json_is_array(root)) {
        /* The row lists every key its request put (it is written after the last put). */
        json_array_foreach(root, i, item)
        {
            const char *key = json_string_value(json_object_get(item, "key"));
            if (key && (r = reel_store_delete(store, key)) < 0) {
                reel_log(REEL_LOG_WARNING, LOG_TAG, "cannot delete %s: %s", key,
                         reel_store_errmsg(store));
                ret = r;
            }
        }
    } else {
        /* No list: an upload interrupted half way. Whatever it put is under the
         * export's temp prefix. */
        snprintf(prefix, sizeof(prefix), "%s/temp/multi_clip_%s/", user, export_id);
        r = reel_store_list(store, prefix, delete_listed, store);
        if (r < 0 && r != REEL_ERR(ENOENT))
            ret = r;
    }
    json_decref(root);
    return ret;
}

/* ---- one export ------------------------------------------------------------------------- */

typedef struct RunCtx {
    ReelExecutor *ex;
    Task *task;
    ReelExportRecord *rec;
    double base, span; /* where the engine's 0..100 lands */
    double last_pct;
    int64_t last_emit_ms, last_db_ms;
    ReelPhase last_phase;
    int last_clip;
    char message[160];
} RunCtx;

/* A progress event of the running export; pct is service-level. */
static void report(RunCtx *r, ReelPhase phase, double pct, const ReelProgress *p, int force)
{
    int64_t now = mono_ms();
    int clip = p ? p->clip : 0;
    int changed = phase != r->last_phase || clip != r->last_clip;
    ReelExecEvent ev = {0};

    if (pct < r->last_pct)
        pct = r->last_pct;
    if (pct > 99.9)
        pct = 99.9; /* 100 is the complete frame's */
    if (!force && !changed && now - r->last_emit_ms < 200)
        return;
    r->last_pct = pct;
    r->last_emit_ms = now;
    r->last_phase = phase;
    r->last_clip = clip;

    ev.kind = REEL_EXEC_PROGRESS;
    ev.rec = r->rec;
    ev.phase = reel_phase_name(phase);
    ev.percent = pct;
    ev.eta_s = -1;
    if (p) {
        ev.clip = p->clip;
        ev.total_clips = p->total_clips;
        ev.frames_done = p->frames_done;
        ev.frames_total = p->frames_total;
        ev.eta_s = p->eta_s;
    }
    /* The engine's text when it says more than the phase's name; else ours. */
    ev.message =
        p && p->message && *p->message && strcmp(p->message, reel_phase_name(p->phase))
            ? p->message
            : reel_phase_message(phase, ev.clip, ev.total_clips, r->message, sizeof(r->message));
    if (r->ex->cfg.on_event)
        r->ex->cfg.on_event(r->ex->cfg.opaque, &ev);
    if (changed || now - r->last_db_ms >= 1000) {
        r->last_db_ms = now;
        reel_jobstore_update_progress(r->ex->cfg.jobs, r->rec->user, r->rec->export_id, ev.phase,
                                      pct);
    }
}

/* The engine's callback (its threads, one call at a time). */
static void on_engine_progress(void *opaque, const ReelProgress *p)
{
    RunCtx *r = opaque;
    ReelPhase phase;
    double pct = reel_progress_as_step(p, &phase); /* the upload is still to come */

    report(r, phase, r->base + r->span * pct / 100.0, p, 0);
}

/* Random 8 hex digits, as the app's uuid4().hex[:8]. */
static void make_id8(char out[9])
{
    unsigned char b[4];

    if (RAND_bytes(b, sizeof(b)) != 1) {
        unsigned v = (unsigned)mono_ms() ^ (unsigned)getpid() * 2654435761u;
        memcpy(b, &v, sizeof(b));
    }
    snprintf(out, 9, "%02x%02x%02x%02x", b[0], b[1], b[2], b[3]);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/*
 * Point every clip of job at a local copy of its source: the local store's own
 * file, or a download into dir. Downloads report progress 0..5 %.
 */
static int resolve_sources(RunCtx *r, ReelJob *job, const char *sources_json, const char *dir,
                           char *errmsg)
{
    ReelExecutor *ex = r->ex;
    json_t *root = json_loads(sources_json ? sources_json : "null", 0, NULL);
    int ret = 0, downloads = 0;

    if (!json_is_array(root)) {
        ret = reel_fail(errmsg, REEL_ERROR_INTERNAL, "the export has no source list");
        goto end;
    }
    for (int i = 0; i < job->nb_clips; i++) {
        ReelClip *clip = &job->clips[i];
        const char *key = NULL;
        char path[PATH_MAX];
        size_t k;
        json_t *item;

        json_array_foreach(root, k, item)
        {
            if (json_integer_value(json_object_get(item, "clip")) == clip->clip_index)
                key = json_string_value(json_object_get(item, "key"));
        }
        if (!key) {
            ret = reel_fail(errmsg, REEL_ERROR_INVALID_JOB, "Missing video file for clip %d",
                            clip->clip_index);
            goto end;
        }
        ret = reel_store_local_path(ex->cfg.store, key, path, sizeof(path));
        if (ret == REEL_ERR(ENOTSUP)) {
            ReelProgress p = {.phase = REEL_PHASE_DOWNLOADING,
                              .clip = i + 1,
                              .total_clips = job->nb_clips,
                              .eta_s = -1};
            report(r, REEL_PHASE_DOWNLOADING, 5.0 * i / job->nb_clips, &p, 1);
            ret = fmt(path, sizeof(path), "%s/source_%d.mp4", dir, clip->clip_index);
            if (ret >= 0)
                ret = reel_store_get_file(ex->cfg.store, key, path);
            downloads++;
        }
        if (ret < 0) {
            ret = reel_fail(errmsg, ret == REEL_ERR(ENOENT) ? REEL_ERROR_MEDIA : ret,
                            "clips[%d]: the uploaded source is no longer available (%s)", i,
                            reel_store_errmsg(ex->cfg.store));
            goto end;
        }
        if (atomic_load(&r->task->cancel)) {
            ret = REEL_ERROR_CANCELLED;
            goto end;
        }
        free(clip->source);
        if (!(clip->source = strdup(path))) {
            ret = REEL_ERR(ENOMEM);
            goto end;
        }
    }
    if (downloads) {
        r->base = 5;
        r->span = 90;
    }
end:
    json_decref(root);
    return ret;
}

/*
 * Publish the finished files: chapters first, so that whenever the MP4 is
 * visible its chapters are too. Each put is atomic in the store.
 */
static int publish_result(RunCtx *r, const char *mp4, const char *vtt, char *out_key, char *vtt_key,
                          char *errmsg)
{
    ReelExecutor *ex = r->ex;
    const char *project = r->rec->project_id[0] ? r->rec->project_id : "none";
    char id8[9];
    int ret;

    make_id8(id8);
    snprintf(out_key, REEL_KEY_MAX, "%s/working_videos/working_%s_%s.mp4", r->rec->user, project,
             id8);
    vtt_key[0] = 0;
    report(r, REEL_PHASE_UPLOADING, 95, NULL, 1);
    if (file_exists(vtt)) {
        snprintf(vtt_key, REEL_KEY_MAX, "%s/working_videos/working_%s_%s.chapters.vtt",
                 r->rec->user, project, id8);
        if ((ret = reel_store_put_file(ex->cfg.store, vtt_key, vtt)) < 0)
            return reel_fail(errmsg, ret, "Upload of the chapters failed: %s",
                             reel_store_errmsg(ex->cfg.store));
    }
    if ((ret = reel_store_put_file(ex->cfg.store, out_key, mp4)) < 0) {
        if (vtt_key[0])
            reel_store_delete(ex->cfg.store, vtt_key);
        vtt_key[0] = 0;
        return reel_fail(errmsg, ret, "Upload of the result failed: %s",
                         reel_store_errmsg(ex->cfg.store));
    }
    return 0;
}

/*
 * The engine names sources by their path; to the user they are uploads. Replace
 * each clip's local path in the message by the form field it came from.
 */
static void hide_paths(char *msg, const ReelJob *job)
{
    for (int i = 0; i < job->nb_clips; i++) {
        const char *src = job->clips[i].source;
        char field[32], *at;
        size_t n = src ? strlen(src) : 0, m;

        if (!n)
            continue;
        m = (size_t)snprintf(field, sizeof(field), "video_%d", job->clips[i].clip_index);
        if (m > n)
            continue; /* defensive: paths are longer than this in practice */
        while ((at = strstr(msg, src))) {
            memmove(at + m, at + n, strlen(at + n) + 1);
            memcpy(at, field, m);
        }
    }
}

static void release_model(ReelExecutor *ex)
{
    pthread_mutex_lock(&ex->lock);
    ex->model_busy = 0;
    pthread_cond_signal(&ex->model_free);
    pthread_mutex_unlock(&ex->lock);
}

/*
 * Take the shared model, waiting (cancellably) while another export uses it.
 * Exports with upscale off never come here.
 */
static int acquire_model(RunCtx *r, const ReelJob *job, ReelUpscaler **up, char *errmsg)
{
    ReelExecutor *ex = r->ex;
    ReelUpscaleOptions uo = {0};
    int waited = 0, slot = -1, ret;

    pthread_mutex_lock(&ex->lock);
    while (ex->model_busy && !atomic_load(&r->task->cancel)) {
        struct timespec ts;
        if (!waited++) {
            pthread_mutex_unlock(&ex->lock);
            ReelProgress p = {
                .phase = REEL_PHASE_QUEUED, .eta_s = -1, .message = "Waiting for the AI model..."};
            report(r, REEL_PHASE_QUEUED, r->base, &p, 1);
            pthread_mutex_lock(&ex->lock);
            continue;
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ex->model_free, &ex->lock, &ts);
    }
    if (atomic_load(&r->task->cancel)) {
        pthread_mutex_unlock(&ex->lock);
        return REEL_ERROR_CANCELLED;
    }
    ex->model_busy = 1;
    pthread_mutex_unlock(&ex->lock);

    /* Only the holder of model_busy touches the cache below. */
    for (int i = 0; i < 2; i++)
        if (ex->models[i].up && !strcmp(ex->models[i].name, job->output.upscale_model) &&
            ex->models[i].tile == job->output.upscale_tile &&
            ex->models[i].bf16 == job->output.upscale_bf16)
            slot = i;
    if (slot < 0) {
        ReelProgress p = {.phase = REEL_PHASE_LOADING_MODEL, .eta_s = -1};
        slot = ex->models[0].up ? 1 : 0;
        reel_upscale_close(&ex->models[slot].up); /* a third kind evicts the second */
        report(r, REEL_PHASE_LOADING_MODEL, r->base, &p, 1);
        reel_export_model_options(job, ex->model_dir, ex->cfg.engine_threads,
                                  ex->cfg.engine_lanes, &uo);
        if ((ret = reel_upscale_open(&ex->models[slot].up, &uo, errmsg)) < 0) {
            release_model(ex);
            return ret;
        }
        snprintf(ex->models[slot].name, sizeof(ex->models[slot].name), "%s",
                 job->output.upscale_model);
        ex->models[slot].tile = job->output.upscale_tile;
        ex->models[slot].bf16 = job->output.upscale_bf16;
        reel_log(REEL_LOG_INFO, LOG_TAG, "model %s loaded (kept for the life of the server)",
                 job->output.upscale_model);
    }
    *up = ex->models[slot].up;
    return 0;
}

static void run_task(ReelExecutor *ex, Task *task)
{
    ReelExportRecord rec;
    RunCtx r = {.ex = ex,
                .task = task,
                .rec = &rec,
                .base = 0,
                .span = 95,
                .last_phase = REEL_PHASE_QUEUED};
    ReelJob *job = NULL;
    char dir[PATH_MAX], mp4[PATH_MAX + 16], vtt[PATH_MAX + 32];
    char out_key[REEL_KEY_MAX], vtt_key[REEL_KEY_MAX];
    char errmsg[REEL_ERRMSG_SIZE] = "", reason[REEL_ERRMSG_SIZE + 32] = "";
    ReelExportOptions opt = {0};
    ReelExportStats stats = {0};
    int ret, model_locked = 0, kind = -1;

    if (reel_jobstore_get(ex->cfg.jobs, task->user, task->export_id, &rec,
                          REEL_JOBSTORE_WITH_JSON) < 0)
        return;
    if (rec.status != REEL_EXPORT_PENDING) {
        reel_jobstore_record_uninit(&rec);
        return; /* cancelled or finished while it waited */
    }
    if (ex->remote) {
        ret = reel_remote_dispatch(ex->remote, &rec, errmsg);
        if (ret >= 0 || ret == REEL_ERR(EEXIST)) {
            reel_jobstore_record_uninit(&rec);
            return; /* the workers have it; remote.c follows it */
        }
        if (!ex->cfg.redis_fallback) {
            snprintf(reason, sizeof(reason), "Export failed: %s", errmsg);
            reel_jobstore_finish(ex->cfg.jobs, rec.user, rec.export_id, REEL_EXPORT_ERROR, reason,
                                 NULL, NULL);
            if (reel_executor_delete_sources(ex->cfg.store, rec.user, rec.export_id,
                                             rec.sources_json) >= 0)
                reel_jobstore_set_sources_deleted(ex->cfg.jobs, rec.user, rec.export_id);
            emit(ex, REEL_EXEC_ERROR, &rec, "error", 0, reason, reason);
            reel_jobstore_record_uninit(&rec);
            return;
        }
        reel_log(REEL_LOG_WARNING, LOG_TAG, "%s/%s: %s; running it here", rec.user, rec.export_id,
                 errmsg);
        errmsg[0] = 0;
    }
    if (reel_jobstore_mark_processing(ex->cfg.jobs, task->user, task->export_id) < 0) {
        reel_jobstore_record_uninit(&rec);
        return;
    }
    rec.status = REEL_EXPORT_PROCESSING;
    rec.attempts++;
    reel_log(REEL_LOG_INFO, LOG_TAG, "%s/%s: start (attempt %d)", rec.user, rec.export_id,
             rec.attempts);
    report(&r, REEL_PHASE_QUEUED, 0, NULL, 1);

    snprintf(dir, sizeof(dir), "%s/%s/%s", ex->work_dir, rec.user, rec.export_id);
    snprintf(mp4, sizeof(mp4), "%s/reel.mp4", dir);
    snprintf(vtt, sizeof(vtt), "%s/reel.chapters.vtt", dir);
    reel_rm_tree(dir, LOG_TAG);
    if ((ret = reel_mkdir_p(dir)) < 0) {
        reel_fail(errmsg, ret, "Export failed: cannot create the work folder");
        goto done;
    }

    if ((ret = reel_job_parse(&job, rec.job_json ? rec.job_json : "", NULL, &ex->cfg.limits,
                              errmsg)) < 0)
        goto done;
    if (ex->cfg.upscale >= 0)
        job->output.upscale_mode = (ReelUpscaleMode)ex->cfg.upscale;
    if ((ret = resolve_sources(&r, job, rec.sources_json, dir, errmsg)) < 0)
        goto done;

    opt.output_path = mp4;
    opt.chapters_path = vtt;
    opt.model_dir = ex->model_dir;
    opt.upscaler = NULL;
    opt.progress = on_engine_progress;
    opt.progress_opaque = &r;
    opt.cancel = &task->cancel;
    opt.threads = ex->cfg.engine_threads;
    if (job->output.upscale_mode != REEL_UPSCALE_OFF) {
        if ((ret = acquire_model(&r, job, &opt.upscaler, errmsg)) < 0)
            goto done;
        model_locked = 1;
    }
    if (atomic_load(&task->cancel)) {
        ret = REEL_ERROR_CANCELLED;
        goto done;
    }
    ret = reel_export_run(job, &opt, &stats, errmsg);
    if (model_locked) {
        release_model(ex);
        model_locked = 0;
    }
    if (ret >= 0 && atomic_load(&task->cancel))
        ret = REEL_ERROR_CANCELLED;
    if (ret < 0)
        goto done;
    ret = publish_result(&r, mp4, vtt, out_key, vtt_key, errmsg);

done:
    if (model_locked)
        release_model(ex);
    if (ret < 0 && job)
        hide_paths(errmsg, job);
    reel_job_free(&job);
    reel_rm_tree(dir, LOG_TAG);

    if (ret == REEL_ERROR_CANCELLED && task->shutdown) {
        /* Interrupted by a stop: run again at the next start; the sources stay. */
        reel_jobstore_requeue(ex->cfg.jobs, rec.user, rec.export_id);
        reel_log(REEL_LOG_INFO, LOG_TAG, "%s/%s: interrupted by shutdown, requeued", rec.user,
                 rec.export_id);
        reel_jobstore_record_uninit(&rec);
        return;
    }
    /* The row first (durable), then the clean-up, then the announcement: a client
     * that sees the terminal frame finds the record final and the temp keys gone. */
    if (ret >= 0) {
        if (reel_jobstore_finish(ex->cfg.jobs, rec.user, rec.export_id, REEL_EXPORT_COMPLETE, NULL,
                                 out_key, vtt_key) < 0) {
            /* Cancelled by the API at the last moment, or the database failed:
             * do not announce what is not durable; drop the orphan objects. */
            reel_store_delete(ex->cfg.store, out_key);
            if (vtt_key[0])
                reel_store_delete(ex->cfg.store, vtt_key);
            kind = -1;
        } else {
            const char *base = strrchr(out_key, '/');
            snprintf(rec.output_key, sizeof(rec.output_key), "%s", out_key);
            snprintf(rec.chapters_key, sizeof(rec.chapters_key), "%s", vtt_key);
            snprintf(rec.output_filename, sizeof(rec.output_filename), "%s",
                     base ? base + 1 : out_key);
            rec.status = REEL_EXPORT_COMPLETE;
            reel_log(REEL_LOG_INFO, LOG_TAG, "%s/%s: complete, %s (%.1f s, %lld bytes)", rec.user,
                     rec.export_id, out_key, stats.total_s, (long long)stats.size_bytes);
            kind = REEL_EXEC_COMPLETE;
        }
    } else if (ret == REEL_ERROR_CANCELLED) {
        reel_jobstore_finish(ex->cfg.jobs, rec.user, rec.export_id, REEL_EXPORT_CANCELLED,
                             "Cancelled by user", NULL, NULL);
        rec.status = REEL_EXPORT_CANCELLED;
        reel_log(REEL_LOG_INFO, LOG_TAG, "%s/%s: cancelled", rec.user, rec.export_id);
        kind = REEL_EXEC_CANCELLED;
    } else {
        if (!errmsg[0])
            reel_strerror(ret, errmsg, sizeof(errmsg));
        snprintf(reason, sizeof(reason), "Export failed: %s", errmsg);
        reel_jobstore_finish(ex->cfg.jobs, rec.user, rec.export_id, REEL_EXPORT_ERROR, reason, NULL,
                             NULL);
        rec.status = REEL_EXPORT_ERROR;
        reel_log(REEL_LOG_WARNING, LOG_TAG, "%s/%s: %s", rec.user, rec.export_id, reason);
        kind = REEL_EXEC_ERROR;
    }
    if (reel_executor_delete_sources(ex->cfg.store, rec.user, rec.export_id, rec.sources_json) >= 0)
        reel_jobstore_set_sources_deleted(ex->cfg.jobs, rec.user, rec.export_id);
    if (kind == REEL_EXEC_COMPLETE)
        emit(ex, REEL_EXEC_COMPLETE, &rec, "complete", 100, "Multi-clip export complete!", NULL);
    else if (kind == REEL_EXEC_CANCELLED)
        emit(ex, REEL_EXEC_CANCELLED, &rec, "cancelled", r.last_pct, "Export cancelled",
             "Cancelled by user");
    else if (kind == REEL_EXEC_ERROR)
        emit(ex, REEL_EXEC_ERROR, &rec, "error", 0, reason, reason);
    reel_jobstore_record_uninit(&rec);
}

/* ---- the pool --------------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    ReelExecutor *ex = arg;
    int slot = -1;

    pthread_mutex_lock(&ex->lock);
    for (;;) {
        Task *t;
        while (!ex->head && !ex->stop)
            pthread_cond_wait(&ex->wake, &ex->lock);
        if (ex->stop)
            break;
        t = ex->head;
        ex->head = t->next;
        if (!ex->head)
            ex->tail = NULL;
        ex->nb_pending--;
        for (slot = 0; slot < ex->cfg.workers && ex->running[slot]; slot++)
            ;
        ex->running[slot] = t; /* there is always a free slot: one per worker */
        ex->nb_running++;
        pthread_mutex_unlock(&ex->lock);

        run_task(ex, t);

        pthread_mutex_lock(&ex->lock);
        ex->running[slot] = NULL;
        ex->nb_running--;
        free(t);
    }
    pthread_mutex_unlock(&ex->lock);
    return NULL;
}

int reel_executor_create(ReelExecutor **out, const ReelExecutorConfig *cfg, char *errmsg)
{
    ReelExecutor *ex;

    *out = NULL;
    if (cfg->workers < 1 || cfg->queue < 0 || !cfg->store || !cfg->jobs || !cfg->work_dir)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "executor: bad configuration");
    if (!(ex = calloc(1, sizeof(*ex))))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "executor: out of memory");
    ex->cfg = *cfg;
    if (ex->cfg.max_attempts < 1)
        ex->cfg.max_attempts = 1;
    ex->work_dir = strdup(cfg->work_dir);
    ex->model_dir = cfg->model_dir && *cfg->model_dir ? strdup(cfg->model_dir) : NULL;
    ex->redis_url = cfg->redis_url && *cfg->redis_url ? strdup(cfg->redis_url) : NULL;
    ex->running = calloc((size_t)cfg->workers, sizeof(*ex->running));
    ex->threads = calloc((size_t)cfg->workers, sizeof(*ex->threads));
    if (!ex->work_dir || !ex->running || !ex->threads ||
        (cfg->model_dir && *cfg->model_dir && !ex->model_dir) ||
        (cfg->redis_url && *cfg->redis_url && !ex->redis_url)) {
        free(ex->work_dir);
        free(ex->model_dir);
        free(ex->redis_url);
        free(ex->running);
        free(ex->threads);
        free(ex);
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "executor: out of memory");
    }
    ex->cfg.work_dir = ex->work_dir;
    ex->cfg.model_dir = ex->model_dir;
    ex->cfg.redis_url = ex->redis_url;
    pthread_mutex_init(&ex->lock, NULL);
    pthread_cond_init(&ex->wake, NULL);
    pthread_cond_init(&ex->model_free, NULL);
    *out = ex;
    return 0;
}

static int push_task(ReelExecutor *ex, const char *user, const char *export_id)
{
    Task *t = calloc(1, sizeof(*t));

    if (!t)
        return REEL_ERR(ENOMEM);
    snprintf(t->user, sizeof(t->user), "%s", user);
    snprintf(t->export_id, sizeof(t->export_id), "%s", export_id);
    atomic_init(&t->cancel, 0);
    if (ex->tail)
        ex->tail->next = t;
    else
        ex->head = t;
    ex->tail = t;
    ex->nb_pending++;
    pthread_cond_signal(&ex->wake);
    return 0;
}

static void announce_queued(ReelExecutor *ex, const char *user, const char *export_id)
{
    ReelExportRecord rec;

    if (reel_jobstore_get(ex->cfg.jobs, user, export_id, &rec, 0) == 0) {
        emit(ex, REEL_EXEC_PROGRESS, &rec, "queued", 0, "Queued", NULL);
        reel_jobstore_record_uninit(&rec);
    }
}

/* ---- start-up repair -------------------------------------------------------------------- */

static int recover_receiving(void *opaque, const ReelExportRecord *rec)
{
    ReelExecutor *ex = opaque;

    reel_log(REEL_LOG_WARNING, LOG_TAG, "%s/%s: upload interrupted by a restart, dropped",
             rec->user, rec->export_id);
    reel_executor_delete_sources(ex->cfg.store, rec->user, rec->export_id, NULL);
    reel_jobstore_delete(ex->cfg.jobs, rec->user, rec->export_id);
    return 0;
}

static int recover_processing(void *opaque, const ReelExportRecord *rec)
{
    ReelExecutor *ex = opaque;
    char reason[256];

    if (!strcmp(rec->runner, "redis")) {
        if (ex->cfg.redis_url)
            return 0; /* still on the workers: remote.c's poller follows it */
        reel_jobstore_finish(ex->cfg.jobs, rec->user, rec->export_id, REEL_EXPORT_ERROR,
                             "Export failed: it was on the scale-out workers, and this server"
                             " no longer follows them (no --redis)",
                             NULL, NULL);
        return 0;
    }

    if (ex->cfg.on_restart == REEL_RESTART_RERUN && rec->attempts < ex->cfg.max_attempts) {
        reel_log(REEL_LOG_WARNING, LOG_TAG, "%s/%s: interrupted while processing, runs again",
                 rec->user, rec->export_id);
        reel_jobstore_requeue(ex->cfg.jobs, rec->user, rec->export_id);
        return 0;
    }
    if (ex->cfg.on_restart == REEL_RESTART_RERUN)
        snprintf(reason, sizeof(reason),
                 "Export failed: interrupted by server restarts %d times; not retried again",
                 rec->attempts);
    else
        snprintf(reason, sizeof(reason),
                 "Export failed: the server restarted while this export was processing");
    reel_log(REEL_LOG_WARNING, LOG_TAG, "%s/%s: %s", rec->user, rec->export_id, reason);
    reel_jobstore_finish(ex->cfg.jobs, rec->user, rec->export_id, REEL_EXPORT_ERROR, reason, NULL,
                         NULL);
    return 0;
}

static int recover_pending(void *opaque, const ReelExportRecord *rec)
{
    ReelExecutor *ex = opaque;
    int ret;

    pthread_mutex_lock(&ex->lock);
    ret = push_task(ex, rec->user, rec->export_id);
    pthread_mutex_unlock(&ex->lock);
    if (ret == 0)
        emit(ex, REEL_EXEC_PROGRESS, rec, "queued", 0, "Queued", NULL);
    return ret;
}

static int recover_sources(void *opaque, const ReelExportRecord *rec)
{
    ReelExecutor *ex = opaque;

    if (reel_executor_delete_sources(ex->cfg.store, rec->user, rec->export_id, rec->sources_json) >=
        0)
        reel_jobstore_set_sources_deleted(ex->cfg.jobs, rec->user, rec->export_id);
    return 0;
}

int reel_executor_start(ReelExecutor *ex, char *errmsg)
{
    int ret;

    reel_rm_tree(ex->work_dir, LOG_TAG); /* no export runs yet: everything there is a leftover */
    if ((ret = reel_mkdir_p(ex->work_dir)) < 0)
        return reel_fail(errmsg, ret, "executor: cannot create %s", ex->work_dir);
    if ((ret = reel_jobstore_list(ex->cfg.jobs, NULL, 1u << REEL_EXPORT_RECEIVING,
                                  recover_receiving, ex)) < 0 ||
        (ret = reel_jobstore_list(ex->cfg.jobs, NULL, 1u << REEL_EXPORT_PROCESSING,
                                  recover_processing, ex)) < 0 ||
        (ret = reel_jobstore_list_undeleted(ex->cfg.jobs, recover_sources, ex)) < 0 ||
        (ret = reel_jobstore_list(ex->cfg.jobs, NULL, 1u << REEL_EXPORT_PENDING, recover_pending,
                                  ex)) < 0)
        return reel_fail(errmsg, ret, "executor: start-up repair failed: %s",
                         reel_jobstore_errmsg(ex->cfg.jobs));
    if (ex->redis_url) {
        ReelRemoteConfig rc = {.url = ex->redis_url,
                               .plan_config = ex->cfg.plan_config,
                               .jobs = ex->cfg.jobs,
                               .on_frame = ex->cfg.on_frame,
                               .opaque = ex->cfg.opaque};
        if ((ret = reel_remote_start(&ex->remote, &rc, errmsg)) < 0)
            return ret;
    }
    pthread_mutex_lock(&ex->lock);
    for (int i = 0; i < ex->cfg.workers; i++) {
        if (pthread_create(&ex->threads[i], NULL, worker_main, ex))
            break;
        ex->nb_threads++;
    }
    pthread_mutex_unlock(&ex->lock);
    if (ex->nb_threads == 0)
        return reel_fail(errmsg, REEL_ERR(EAGAIN), "executor: cannot start worker threads");
    return 0;
}

void reel_executor_free(ReelExecutor **pex)
{
    ReelExecutor *ex = *pex;

    if (!ex)
        return;
    reel_remote_stop(&ex->remote);
    pthread_mutex_lock(&ex->lock);
    ex->stop = 1;
    for (int i = 0; i < ex->cfg.workers; i++) {
        if (ex->running[i]) {
            ex->running[i]->shutdown = 1;
            atomic_store(&ex->running[i]->cancel, 1);
        }
    }
    pthread_cond_broadcast(&ex->wake);
    pthread_mutex_unlock(&ex->lock);
    for (int i = 0; i < ex->nb_threads; i++)
        pthread_join(ex->threads[i], NULL);
    /* Waiting tasks stay PENDING in the database and run at the next start. */
    while (ex->head) {
        Task *t = ex->head;
        ex->head = t->next;
        free(t);
    }
    for (int i = 0; i < 2; i++)
        reel_upscale_close(&ex->models[i].up);
    pthread_cond_destroy(&ex->model_free);
    pthread_cond_destroy(&ex->wake);
    pthread_mutex_destroy(&ex->lock);
    free(ex->work_dir);
    free(ex->model_dir);
    free(ex->redis_url);
    free(ex->running);
    free(ex->threads);
    free(ex);
    *pex = NULL;
}

int reel_executor_reserve(ReelExecutor *ex)
{
    int ret = 0;

    pthread_mutex_lock(&ex->lock);
    if (ex->stop)
        ret = REEL_ERR(ESHUTDOWN);
    else if (ex->nb_pending + ex->nb_running + ex->nb_reserved >= ex->cfg.workers + ex->cfg.queue)
        ret = REEL_ERR(EAGAIN);
    else
        ex->nb_reserved++;
    pthread_mutex_unlock(&ex->lock);
    return ret;
}

void reel_executor_unreserve(ReelExecutor *ex)
{
    pthread_mutex_lock(&ex->lock);
    if (ex->nb_reserved > 0)
        ex->nb_reserved--;
    pthread_mutex_unlock(&ex->lock);
}

int reel_executor_submit(ReelExecutor *ex, const char *user, const char *export_id)
{
    int ret;

    pthread_mutex_lock(&ex->lock);
    if (ex->nb_reserved > 0)
        ex->nb_reserved--;
    ret = ex->stop ? REEL_ERR(ESHUTDOWN) : push_task(ex, user, export_id);
    pthread_mutex_unlock(&ex->lock);
    if (ret == 0)
        announce_queued(ex, user, export_id);
    return ret;
}

int reel_executor_cancel(ReelExecutor *ex, const char *user, const char *export_id)
{
    Task **pp, *t = NULL;
    ReelExportRecord rec;

    pthread_mutex_lock(&ex->lock);
    for (int i = 0; i < ex->cfg.workers; i++) {
        t = ex->running[i];
        if (t && !strcmp(t->user, user) && !strcmp(t->export_id, export_id)) {
            atomic_store(&t->cancel, 1);
            pthread_mutex_unlock(&ex->lock);
            return REEL_EXEC_CANCELLING;
        }
    }
    t = NULL;
    for (pp = &ex->head; *pp; pp = &(*pp)->next) {
        if (!strcmp((*pp)->user, user) && !strcmp((*pp)->export_id, export_id)) {
            t = *pp;
            *pp = t->next;
            if (ex->tail == t) {
                ex->tail = NULL;
                for (Task *q = ex->head; q; q = q->next)
                    ex->tail = q;
            }
            ex->nb_pending--;
            break;
        }
    }
    pthread_mutex_unlock(&ex->lock);
    if (!t) {
        if (ex->remote && reel_jobstore_get(ex->cfg.jobs, user, export_id, &rec, 0) == 0) {
            int remote = rec.status == REEL_EXPORT_PROCESSING && !strcmp(rec.runner, "redis");
            reel_jobstore_record_uninit(&rec);
            if (remote && reel_remote_cancel(ex->remote, user, export_id) >= 0)
                return REEL_EXEC_CANCELLING;
        }
        return REEL_ERR(ENOENT);
    }
    free(t);

    if (reel_jobstore_finish(ex->cfg.jobs, user, export_id, REEL_EXPORT_CANCELLED,
                             "Cancelled by user", NULL, NULL) == 0 &&
        reel_jobstore_get(ex->cfg.jobs, user, export_id, &rec, REEL_JOBSTORE_WITH_JSON) == 0) {
        if (reel_executor_delete_sources(ex->cfg.store, user, export_id, rec.sources_json) >= 0)
            reel_jobstore_set_sources_deleted(ex->cfg.jobs, user, export_id);
        emit(ex, REEL_EXEC_CANCELLED, &rec, "cancelled", 0, "Export cancelled",
             "Cancelled by user");
        reel_jobstore_record_uninit(&rec);
    }
    return REEL_EXEC_CANCELLED_NOW;
}

char *reel_executor_latest_frame(ReelExecutor *ex, const char *user, const char *export_id)
{
    return ex->remote ? reel_remote_latest(ex->remote, user, export_id) : NULL;
}

void reel_executor_stats(ReelExecutor *ex, int *pending, int *running, int *capacity)
{
    pthread_mutex_lock(&ex->lock);
    if (pending)
        *pending = ex->nb_pending;
    if (running)
        *running = ex->nb_running;
    if (capacity)
        *capacity = ex->cfg.workers + ex->cfg.queue;
    pthread_mutex_unlock(&ex->lock);
}
