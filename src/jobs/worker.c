/*
 * worker.c - the `clipreel worker` loop (see worker.h for the contract and
 * docs/scaleout.md for the protocol).
 *
 * Shape: N loop threads, each with its own Redis connection, plus one side
 * thread per running export (claim refresh + progress publishing, its own
 * connection). The only state shared between loop threads is the model cache
 * (model_lock) and the counters (atomics).
 */
#include "jobs/worker.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
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
#include "core/timeline.h"
#include "jobs/redisq.h"
#include "media/export.h"
#include "storage/storage.h"
#include "upscale/upscale.h"

#define LOG_TAG "worker"
#define FRAME_INTERVAL_MS 200

struct ReelWorker {
    ReelWorkerConfig cfg;
    char work_dir[2048]; /* this process's folder */
    atomic_int stop;
    /* The model: one per process, loaded on first use. model_lock is held by
     * the export using it (one ReelUpscaler serves one export at a time). */
    pthread_mutex_t model_lock;
    ReelUpscaler *model;
    char model_name[64];
    int model_tile, model_bf16;
    atomic_llong completed, failed, retried, lost, duplicates, models_loaded;
};

/* ---- small helpers ---------------------------------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Folders of worker processes that died (kill -9) are removed at start. */
static int sweep_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    const char *base = path + ftw->base;
    char *end;
    long pid;

    (void)st;
    if (ftw->level != 1 || flag != FTW_D)
        return 0;
    pid = strtol(base, &end, 10);
    if (*end || pid <= 0 || pid == (long)getpid())
        return 0;
    if (kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
        reel_log(REEL_LOG_INFO, LOG_TAG, "removing %s (its worker is gone)", path);
        reel_rm_tree(path, LOG_TAG);
    }
    return 0;
}

static void make_id8(char out[9])
{
    unsigned char b[4];
    if (RAND_bytes(b, sizeof(b)) != 1) {
        unsigned v = (unsigned)mono_ms() ^ (unsigned)getpid() * 2654435761u;
        memcpy(b, &v, sizeof(b));
    }
    snprintf(out, 9, "%02x%02x%02x%02x", b[0], b[1], b[2], b[3]);
}

/* ---- progress frames (the service's WebSocket shape, DESIGN section 6) ------------------- */

typedef struct Frame {
    const char *status; /* processing | complete | error */
    const char *phase;
    double percent;
    const char *message;
    int clip, total_clips;
    int64_t frames_done, frames_total;
    double eta_s;
    const char *output_key, *chapters_key; /* complete */
    const char *error;                     /* error */
} Frame;

static json_t *num_or_null(double v, int valid)
{
    return valid && isfinite(v) ? json_real(round(v * 10.0) / 10.0) : json_null();
}

static char *make_frame(const ReelRedisqMsg *m, const Frame *f)
{
    json_t *o = json_object();
    char *text;
    int complete = !strcmp(f->status, "complete"), error = !strcmp(f->status, "error");

    if (!o)
        return NULL;
    json_object_set_new(o, "progress",
                        complete ? json_integer(100)
                        : error  ? json_integer(0)
                                 : num_or_null(f->percent, 1));
    json_object_set_new(o, "message", json_string(f->message ? f->message : ""));
    json_object_set_new(o, "status", json_string(f->status));
    json_object_set_new(o, "phase", json_string(f->phase ? f->phase : ""));
    json_object_set_new(o, "projectId",
                        m->project_id[0] ? json_string(m->project_id) : json_null());
    json_object_set_new(o, "projectName",
                        m->project_name[0] ? json_string(m->project_name) : json_null());
    json_object_set_new(o, "clip", f->clip > 0 ? json_integer(f->clip) : json_null());
    json_object_set_new(o, "total_clips",
                        f->total_clips > 0 ? json_integer(f->total_clips) : json_null());
    json_object_set_new(o, "current_frame",
                        f->frames_total > 0 ? json_integer(f->frames_done) : json_null());
    json_object_set_new(o, "total_frames",
                        f->frames_total > 0 ? json_integer(f->frames_total) : json_null());
    json_object_set_new(o, "eta_s", num_or_null(f->eta_s, f->eta_s >= 0));
    json_object_set_new(o, "export_id", json_string(m->export_id));
    json_object_set_new(o, "type", json_string("multi_clip"));
    if (complete) {
        char url[REEL_REDISQ_NAME_MAX + 64];
        const char *base = f->output_key ? strrchr(f->output_key, '/') : NULL;
        const char *name = base ? base + 1 : f->output_key ? f->output_key : "";
        snprintf(url, sizeof(url), "/api/exports/%s/output", m->export_id);
        json_object_set_new(o, "output_url", json_string(url));
        if (f->chapters_key && f->chapters_key[0]) {
            snprintf(url, sizeof(url), "/api/exports/%s/chapters.vtt", m->export_id);
            json_object_set_new(o, "chapters_url", json_string(url));
        }
        json_object_set_new(o, "output_filename", json_string(name));
        json_object_set_new(o, "outputFilename", json_string(name));
    }
    if (!complete && !error && f->error)
        error = 1;
    if (error)
        json_object_set_new(o, "error", json_string(f->error ? f->error : "failed"));
    text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(o);
    return text;
}

/* ---- the side thread: claim refresh and progress ---------------------------------------- */

typedef struct Side {
    ReelWorker *w;
    const ReelRedisqMsg *msg;
    const char *consumer, *owner;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    char *frame;           /* newest unpublished frame (lock) */
    double frame_pct;      /* its task percent (lock) */
    const double *weights; /* parallel: the parts' shares of the export (set before start) */
    int nb_weights;
    int quit;          /* (lock) */
    atomic_int cancel; /* the engine's flag */
    atomic_int lost;   /* another worker owns the entry now */
    atomic_int cancel_requested;
    /* engine progress -> frame, under the engine's one-call-at-a-time rule */
    double base, span, last_pct;
    int64_t last_emit_ms;
    ReelPhase last_phase;
    int last_clip;
} Side;

static void side_post(Side *s, char *frame, double pct)
{
    if (!frame)
        return;
    pthread_mutex_lock(&s->lock);
    free(s->frame);
    s->frame = frame;
    s->frame_pct = pct;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
}

static void *side_main(void *arg)
{
    Side *s = arg;
    ReelWorker *w = s->w;
    ReelRedisq *q = NULL;
    char err[REEL_ERRMSG_SIZE];
    int interval = w->cfg.claim_idle_ms / 4 > 50 ? w->cfg.claim_idle_ms / 4 : 50;
    int64_t last_refresh = mono_ms();

    for (;;) {
        char *frame;
        double pct;
        int quit;
        struct timespec ts;

        pthread_mutex_lock(&s->lock);
        if (!s->quit && !s->frame) {
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += FRAME_INTERVAL_MS * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&s->wake, &s->lock, &ts);
        }
        frame = s->frame;
        pct = s->frame_pct;
        s->frame = NULL;
        quit = s->quit;
        pthread_mutex_unlock(&s->lock);

        if (!q && reel_redisq_open(&q, w->cfg.redis_url, 5000, err) < 0)
            q = NULL; /* retried at the next tick; the claim may lapse meanwhile */
        if (q && frame && s->msg->parts > 0)
            reel_redisq_publish_task_progress(q, s->msg, pct, s->weights, s->nb_weights, frame);
        else if (q && frame)
            reel_redisq_publish_progress(q, s->msg->user, s->msg->export_id, frame);
        free(frame);
        if (quit)
            break;
        if (atomic_load(&w->stop))
            atomic_store(&s->cancel, 1); /* interrupted: left pending for another worker */
        if (q && mono_ms() - last_refresh >= interval) {
            int r = reel_redisq_refresh(q, s->msg, s->consumer, s->owner);
            if (r >= 0)
                last_refresh = mono_ms();
            if (r == REEL_REDISQ_LOST && !atomic_load(&s->lost)) {
                reel_log(REEL_LOG_WARNING, LOG_TAG, "%s/%s: claim lost to another worker",
                         s->msg->user, s->msg->export_id);
                atomic_store(&s->lost, 1);
                atomic_store(&s->cancel, 1);
            } else if (r == REEL_REDISQ_CANCEL) {
                atomic_store(&s->cancel_requested, 1);
                atomic_store(&s->cancel, 1);
            }
        }
        /* A slow frame wait must not starve the refresh: the loop ticks every 200 ms. */
        if (frame)
            sleep_ms(FRAME_INTERVAL_MS / 4);
    }
    reel_redisq_close(&q);
    return NULL;
}

static int side_start(Side *s)
{
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    if (pthread_create(&s->thread, NULL, side_main, s) != 0) {
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->wake);
        return REEL_ERR(EAGAIN);
    }
    return 0;
}

/* Flush the last frame and stop. */
static void side_stop(Side *s)
{
    pthread_mutex_lock(&s->lock);
    s->quit = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    free(s->frame);
    s->frame = NULL;
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
}

static void report(Side *s, ReelPhase phase, double pct, const ReelProgress *p, int force)
{
    int64_t now = mono_ms();
    int clip = p ? p->clip : 0;
    int changed = phase != s->last_phase || clip != s->last_clip;
    char msg[96];
    Frame f = {.status = "processing", .eta_s = -1};

    if (pct < s->last_pct)
        pct = s->last_pct;
    if (pct > 99.9)
        pct = 99.9;
    if (!force && !changed && now - s->last_emit_ms < FRAME_INTERVAL_MS)
        return;
    s->last_pct = pct;
    s->last_emit_ms = now;
    s->last_phase = phase;
    s->last_clip = clip;
    f.phase = reel_phase_name(phase);
    f.percent = pct;
    if (p) {
        f.clip = p->clip;
        f.total_clips = p->total_clips;
        f.frames_done = p->frames_done;
        f.frames_total = p->frames_total;
        f.eta_s = p->eta_s;
    }
    f.message = p && p->message && *p->message
                    ? p->message
                    : reel_phase_message(phase, f.clip, f.total_clips, msg, sizeof(msg));
    if (s->msg->part >= 0) {
        /* A part's own frame counts mean nothing to the app: the export's percent and
         * the clips rendering now are filled in by Redis (combined progress). */
        f.clip = s->msg->part + 1;
        f.total_clips = s->msg->parts;
        f.frames_done = f.frames_total = 0;
        f.eta_s = -1;
    } else if (s->msg->parts > 0 &&
               (phase == REEL_PHASE_PROCESSING || phase == REEL_PHASE_ENCODING)) {
        f.message = "Joining the clips (transitions, audio, chapters)...";
    }
    side_post(s, make_frame(s->msg, &f), pct);
}

static void on_engine_progress(void *opaque, const ReelProgress *p)
{
    Side *s = opaque;
    ReelPhase phase;
    double pct = reel_progress_as_step(p, &phase);

    report(s, phase, s->base + s->span * pct / 100.0, p, 0);
}

/* ---- one export ------------------------------------------------------------------------- */

/* Download every clip's source key into dir and point the clip at it. */
static int fetch_sources(ReelWorker *w, Side *s, ReelJob *job, const char *sources_json,
                         const char *dir, int only, char *errmsg)
{
    json_t *root = json_loads(sources_json ? sources_json : "null", 0, NULL);
    int ret = 0;

    if (!json_is_array(root)) {
        ret = reel_fail(errmsg, REEL_ERROR_INVALID_JOB, "the export has no source list");
        goto end;
    }
    for (int i = 0; i < job->nb_clips; i++) {
        ReelClip *clip = &job->clips[i];
        const char *key = NULL;
        char path[PATH_MAX + 32];
        size_t k;
        json_t *item;
        ReelProgress p = {.phase = REEL_PHASE_DOWNLOADING,
                          .clip = i + 1,
                          .total_clips = job->nb_clips,
                          .eta_s = -1};

        if (only >= 0 && i != only)
            continue; /* a part task needs its own clip's source only */
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
        report(s, REEL_PHASE_DOWNLOADING, 5.0 * i / job->nb_clips, &p, 1);
        snprintf(path, sizeof(path), "%s/source_%d.mp4", dir, clip->clip_index);
        if ((ret = reel_store_get_file(w->cfg.store, key, path)) < 0) {
            /* An absent source is the export's problem; anything else is retried. */
            ret = reel_fail(errmsg, ret == REEL_ERR(ENOENT) ? REEL_ERROR_MEDIA : ret,
                            "clips[%d]: cannot fetch the source (%s)", i,
                            reel_store_errmsg(w->cfg.store));
            goto end;
        }
        if (atomic_load(&s->cancel)) {
            ret = REEL_ERROR_CANCELLED;
            goto end;
        }
        free(clip->source);
        if (!(clip->source = strdup(path))) {
            ret = REEL_ERR(ENOMEM);
            goto end;
        }
    }
end:
    json_decref(root);
    return ret;
}

/* Take the process's model (loading it the first time); model_lock held on success. */
static int acquire_model(ReelWorker *w, Side *s, const ReelJob *job, ReelUpscaler **up,
                         char *errmsg)
{
    ReelUpscaleOptions uo = {0};
    int ret;

    pthread_mutex_lock(&w->model_lock);
    if (!w->model || strcmp(w->model_name, job->output.upscale_model) ||
        w->model_tile != job->output.upscale_tile || w->model_bf16 != job->output.upscale_bf16) {
        ReelProgress p = {.phase = REEL_PHASE_LOADING_MODEL, .eta_s = -1};
        reel_upscale_close(&w->model);
        report(s, REEL_PHASE_LOADING_MODEL, s->base, &p, 1);
        reel_export_model_options(job, w->cfg.model_dir, w->cfg.engine_threads, w->cfg.engine_lanes,
                                  &uo);
        if ((ret = reel_upscale_open(&w->model, &uo, errmsg)) < 0) {
            pthread_mutex_unlock(&w->model_lock);
            return ret;
        }
        snprintf(w->model_name, sizeof(w->model_name), "%s", job->output.upscale_model);
        w->model_tile = job->output.upscale_tile;
        w->model_bf16 = job->output.upscale_bf16;
        atomic_fetch_add(&w->models_loaded, 1);
        reel_log(REEL_LOG_INFO, LOG_TAG, "model %s loaded (kept for this process)",
                 job->output.upscale_model);
    }
    *up = w->model;
    return 0;
}

static int permanent(int err)
{
    return err == REEL_ERROR_INVALID_JOB || err == REEL_ERROR_MEDIA || err == REEL_ERROR_LIMIT;
}

static void delete_temp_sources(ReelWorker *w, const ReelRedisqMsg *m);

/* Publish a terminal result and its frame; 1 won, 0 lost, < 0 error. */
static int finish(ReelWorker *w, ReelRedisq *q, const ReelRedisqMsg *m, const char *consumer,
                  const char *status, const char *out_key, const char *vtt_key, const char *error)
{
    ReelRedisqResult res = {.status = status,
                            .output_key = out_key,
                            .chapters_key = vtt_key,
                            .error = error,
                            .worker = consumer};
    Frame f = {.status = !strcmp(status, "complete") ? "complete" : "error",
               .phase = status,
               .percent = 100,
               .eta_s = -1,
               .output_key = out_key,
               .chapters_key = vtt_key,
               .error = error};
    char *frame;
    int ret;

    f.message = !strcmp(status, "complete")    ? "Multi-clip export complete!"
                : !strcmp(status, "cancelled") ? "Export cancelled"
                                               : error;
    if ((ret = reel_redisq_publish_result(q, m->user, m->export_id, &res)) <= 0)
        return ret;
    if ((frame = make_frame(m, &f))) {
        reel_redisq_publish_progress(q, m->user, m->export_id, frame);
        free(frame);
    }
    delete_temp_sources(w, m);
    return 1;
}

static int delete_listed(void *opaque, const char *key, const ReelStoreInfo *info)
{
    (void)info;
    reel_store_delete((ReelStore *)opaque, key);
    return 0;
}

/* The export's temporary source objects: listed ones, then anything under its prefix. */
static void delete_temp_sources(ReelWorker *w, const ReelRedisqMsg *m)
{
    json_t *root = json_loads(m->sources_json ? m->sources_json : "null", 0, NULL);
    char prefix[REEL_REDISQ_NAME_MAX * 2 + 32];
    size_t i;
    json_t *item;

    if (json_is_array(root))
        json_array_foreach(root, i, item)
        {
            const char *key = json_string_value(json_object_get(item, "key"));
            if (key)
                reel_store_delete(w->cfg.store, key);
        }
    json_decref(root);
    snprintf(prefix, sizeof(prefix), "%s/temp/multi_clip_%s/", m->user, m->export_id);
    reel_store_list(w->cfg.store, prefix, delete_listed, w->cfg.store);
}

/* Parallel mode: each part's share of the export's progress, by its frames
 * (equal shares when the clips' durations are only known after a probe). */
static void part_weights(const ReelJob *job, double *wts, int n)
{
    ReelLayout layout;
    int64_t sum = 0;
    int resolved = job->nb_clips == n;

    for (int k = 0; k < n; k++)
        wts[k] = 1.0 / n;
    for (int k = 0; k < job->nb_clips && resolved; k++)
        resolved = job->clips[k].nb_segments > 0;
    if (!resolved || reel_layout_init(&layout, job) < 0)
        return;
    for (int k = 0; k < layout.nb_clips; k++)
        sum += layout.clips[k].nb_frames;
    if (sum > 0 && layout.nb_clips == n)
        for (int k = 0; k < n; k++)
            wts[k] = (double)layout.clips[k].nb_frames / (double)sum;
    reel_layout_uninit(&layout);
}

/* Publish a frame of a parallel task from the loop thread (the side thread is stopped). */
static void task_frame(ReelRedisq *q, const ReelRedisqMsg *m, const double *wts, double pct,
                       const char *phase)
{
    Frame f = {.status = "processing",
               .phase = phase,
               .percent = pct,
               .message = "",
               .clip = m->part + 1,
               .total_clips = m->parts,
               .eta_s = -1};
    char *frame = make_frame(m, &f);
    if (frame)
        reel_redisq_publish_task_progress(q, m, pct, wts, m->parts, frame);
    free(frame);
}

/* fetch_parts: a part is being rendered again, a later assemble entry will follow */
#define SUPERSEDED 1

/* Part k (recorded at key) is gone from the store: queue it again. SUPERSEDED,
 * or an error (the export's when the part vanished too often). */
static int rerender(ReelWorker *w, ReelRedisq *q, const ReelRedisqMsg *m, int k, const char *key,
                    char *errmsg)
{
    int rr = reel_redisq_rerender_part(q, m, k, key, w->cfg.max_attempts);

    switch (rr) {
    case REEL_REDISQ_RERENDER_QUEUED:
    case REEL_REDISQ_RERENDER_STALE:
    case REEL_REDISQ_RERENDER_SETTLED:
        reel_log(REEL_LOG_WARNING, LOG_TAG,
                 "%s/%s: clip %d's rendered part %s is gone from the store: %s", m->user,
                 m->export_id, k + 1, key,
                 rr == REEL_REDISQ_RERENDER_QUEUED  ? "rendered again"
                 : rr == REEL_REDISQ_RERENDER_STALE ? "already queued again"
                                                    : "the export is settled");
        return SUPERSEDED;
    case REEL_REDISQ_RERENDER_CANCEL:
        return REEL_ERROR_CANCELLED;
    case REEL_REDISQ_RERENDER_LIMIT:
        return reel_fail(errmsg, REEL_ERROR_MEDIA,
                         "the rendered clip %d vanished from the store %d times", k + 1,
                         w->cfg.max_attempts);
    default:
        return reel_fail(errmsg, rr < 0 ? rr : REEL_ERROR_INTERNAL,
                         "clip %d's rendered part is gone and it cannot be queued again: %s", k + 1,
                         reel_redisq_errmsg(q));
    }
}

/*
 * Assemble task: download the recorded parts into dir; paths[k] are new
 * strings. A recorded part that is gone from the store is rendered again
 * (reel_redisq_rerender_part, at most max_attempts times per part) and this
 * assembly steps aside: SUPERSEDED. So does an assembly that finds a part not
 * recorded: an older assemble entry, reclaimed while that re-render runs.
 */
static int fetch_parts(ReelWorker *w, ReelRedisq *q, Side *s, const ReelRedisqMsg *m,
                       const char *dir, char **paths, char *errmsg)
{
    char **keys = NULL;
    int ret;

    if ((ret = reel_redisq_get_parts(q, m, &keys)) == REEL_ERR(ENOENT)) {
        reel_log(REEL_LOG_INFO, LOG_TAG, "%s/%s: assembly superseded (%s)", m->user, m->export_id,
                 reel_redisq_errmsg(q));
        return SUPERSEDED;
    }
    if (ret < 0)
        return reel_fail(errmsg, ret, "%s", reel_redisq_errmsg(q));
    for (int k = 0; k < m->parts && ret == 0; k++) {
        ReelProgress p = {.phase = REEL_PHASE_DOWNLOADING,
                          .clip = k + 1,
                          .total_clips = m->parts,
                          .eta_s = -1,
                          .message = "Downloading the rendered clips..."};
        size_t n = strlen(dir) + 32;
        report(s, REEL_PHASE_DOWNLOADING, 5.0 * k / m->parts, &p, 1);
        if (!(paths[k] = malloc(n))) {
            ret = REEL_ERR(ENOMEM);
            break;
        }
        snprintf(paths[k], n, "%s/part_%d.nut", dir, k);
        if ((ret = reel_store_get_file(w->cfg.store, keys[k], paths[k])) == REEL_ERR(ENOENT))
            ret = rerender(w, q, m, k, keys[k], errmsg);
        else if (ret < 0)
            ret = reel_fail(errmsg, ret, "the rendered clip %d cannot be fetched (%s)", k + 1,
                            reel_store_errmsg(w->cfg.store));
        else if (atomic_load(&s->cancel))
            ret = REEL_ERROR_CANCELLED;
        else
            ret = 0; /* the loop goes on while 0: no store's success value may end it */
    }
    for (int k = 0; k < m->parts; k++)
        free(keys[k]);
    free(keys);
    return ret;
}

/* Upload the reel (chapters first, so whenever the MP4 is visible its chapters are too). */
static int upload_reel(ReelWorker *w, const ReelRedisqMsg *m, const char *mp4, const char *vtt,
                       char *out_key, size_t out_size, char *vtt_key, size_t vtt_size, char *errmsg)
{
    char id8[9];
    struct stat sb;
    int ret;

    make_id8(id8);
    snprintf(out_key, out_size, "%s/working_videos/working_%s_%s.mp4", m->user,
             m->project_id[0] ? m->project_id : "none", id8);
    if (stat(vtt, &sb) == 0) {
        snprintf(vtt_key, vtt_size, "%s/working_videos/working_%s_%s.chapters.vtt", m->user,
                 m->project_id[0] ? m->project_id : "none", id8);
        if ((ret = reel_store_put_file(w->cfg.store, vtt_key, vtt)) < 0) {
            vtt_key[0] = 0;
            out_key[0] = 0;
            return reel_fail(errmsg, ret, "Upload of the chapters failed: %s",
                             reel_store_errmsg(w->cfg.store));
        }
    }
    if ((ret = reel_store_put_file(w->cfg.store, out_key, mp4)) < 0) {
        out_key[0] = 0;
        return reel_fail(errmsg, ret, "Upload of the result failed: %s",
                         reel_store_errmsg(w->cfg.store));
    }
    return 0;
}

static void process(ReelWorker *w, ReelRedisq *q, const char *consumer, int slot,
                    const ReelRedisqMsg *m)
{
    Side s = {.w = w,
              .msg = m,
              .consumer = consumer,
              .base = 0,
              .span = 0,
              .last_phase = REEL_PHASE_QUEUED};
    char owner[REEL_REDISQ_NAME_MAX + 16], errmsg[REEL_ERRMSG_SIZE] = "",
                                           reason[REEL_ERRMSG_SIZE + 32];
    char dir[PATH_MAX], mp4[PATH_MAX + 16], vtt[PATH_MAX + 32], part[PATH_MAX + 16];
    char out_key[REEL_REDISQ_NAME_MAX * 3 + 64] = "", vtt_key[REEL_REDISQ_NAME_MAX * 3 + 80] = "";
    char part_key[REEL_REDISQ_NAME_MAX * 3 + 64] = "";
    char **parts = NULL;
    double *wts = NULL;
    ReelJob *job = NULL;
    ReelExportOptions opt = {0};
    ReelExportStats stats = {0};
    int attempt = 0, ret, model_locked = 0, side_running = 0, won, superseded = 0;
    const char *what = m->task[0] ? m->task : "export";

    ret = reel_redisq_begin(q, m, consumer, w->cfg.max_attempts, &attempt, owner);
    if (ret < 0) {
        reel_log(REEL_LOG_WARNING, LOG_TAG, "%s/%s: cannot start: %s", m->user, m->export_id,
                 reel_redisq_errmsg(q));
        return; /* left pending: reclaimed later */
    }
    if (ret != REEL_REDISQ_RUN) {
        if (ret == REEL_REDISQ_GAVE_UP) {
            Frame f = {.status = "error", .phase = "error", .eta_s = -1};
            ReelRedisqState st;
            char *frame;
            reel_redisq_get_state(q, m->user, m->export_id, &st);
            f.error = f.message = st.error;
            if ((frame = make_frame(m, &f))) {
                reel_redisq_publish_progress(q, m->user, m->export_id, frame);
                free(frame);
            }
            reel_log(REEL_LOG_WARNING, LOG_TAG, "%s/%s: %s", m->user, m->export_id, st.error);
            reel_redisq_state_uninit(&st);
            atomic_fetch_add(&w->failed, 1);
        }
        /* Settled (now or before): its temporary objects are garbage. A recorded
         * part (PART_DONE) is still needed by the assemble task. */
        if (ret != REEL_REDISQ_PART_DONE)
            delete_temp_sources(w, m);
        reel_redisq_ack(q, m);
        return;
    }
    s.owner = owner;
    reel_log(REEL_LOG_INFO, LOG_TAG, "%s/%s: start %s (attempt %d%s)", m->user, m->export_id, what,
             attempt, m->reclaimed ? ", reclaimed" : "");

    snprintf(dir, sizeof(dir), "%s/%d-%s-%s", w->work_dir, slot, m->user, m->export_id);
    snprintf(mp4, sizeof(mp4), "%s/reel.mp4", dir);
    snprintf(vtt, sizeof(vtt), "%s/reel.chapters.vtt", dir);
    snprintf(part, sizeof(part), "%s/part.nut", dir);
    reel_rm_tree(dir, LOG_TAG);
    if ((ret = reel_mkdir_p(dir)) < 0) {
        reel_fail(errmsg, ret, "cannot create the work folder %s", dir);
        goto done;
    }
    if ((ret = reel_job_parse(&job, m->job_json, NULL, &w->cfg.limits, errmsg)) < 0)
        goto done;
    if (w->cfg.upscale >= 0)
        job->output.upscale_mode = (ReelUpscaleMode)w->cfg.upscale;
    if (m->parts > 0) {
        if (m->parts != job->nb_clips) {
            ret = reel_fail(errmsg, REEL_ERROR_INVALID_JOB, "the export has %d parts for %d clips",
                            m->parts, job->nb_clips);
            goto done;
        }
        if (!(wts = calloc((size_t)m->parts, sizeof(*wts))) ||
            (m->part < 0 && !(parts = calloc((size_t)m->parts, sizeof(*parts))))) {
            ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "out of memory");
            goto done;
        }
        part_weights(job, wts, m->parts);
        s.weights = wts;
        s.nb_weights = m->parts;
    }
    if ((ret = side_start(&s)) < 0) {
        reel_fail(errmsg, ret, "cannot start the claim thread");
        goto done;
    }
    side_running = 1;
    report(&s, REEL_PHASE_QUEUED, 0, NULL, 1);

    if (parts)
        ret = fetch_parts(w, q, &s, m, dir, parts, errmsg);
    else
        ret = fetch_sources(w, &s, job, m->sources_json, dir, m->part, errmsg);
    if (ret == SUPERSEDED) {
        superseded = 1;
        ret = 0;
        goto done;
    }
    if (ret < 0)
        goto done;
    s.base = 5;
    s.span = 90;

    opt.output_path = m->part >= 0 ? part : mp4;
    opt.chapters_path = vtt;
    opt.model_dir = w->cfg.model_dir;
    opt.progress = on_engine_progress;
    opt.progress_opaque = &s;
    opt.cancel = &s.cancel;
    opt.threads = w->cfg.engine_threads;
    if (!parts && job->output.upscale_mode != REEL_UPSCALE_OFF) { /* assembly: no model */
        if ((ret = acquire_model(w, &s, job, &opt.upscaler, errmsg)) < 0)
            goto done;
        model_locked = 1;
    }
    if (m->part >= 0)
        ret = reel_export_part(job, m->part, &opt, &stats, errmsg);
    else if (parts)
        ret = reel_export_assemble(job, (const char *const *)parts, &opt, &stats, errmsg);
    else
        ret = reel_export_run(job, &opt, &stats, errmsg);
    if (model_locked) {
        pthread_mutex_unlock(&w->model_lock);
        model_locked = 0;
    }
    if (ret >= 0 && atomic_load(&s.cancel))
        ret = REEL_ERROR_CANCELLED;
    if (ret < 0)
        goto done;

    report(&s, REEL_PHASE_UPLOADING, 95, NULL, 1);
    if (m->part >= 0) {
        /* A key of its own per attempt: a slow, reclaimed-from worker never
         * overwrites the part that was recorded (and may be being read). */
        snprintf(part_key, sizeof(part_key), "%s/temp/multi_clip_%s/part_%d_a%d.nut", m->user,
                 m->export_id, m->part, attempt);
        if ((ret = reel_store_put_file(w->cfg.store, part_key, part)) < 0) {
            reel_fail(errmsg, ret, "Upload of clip %d failed: %s", m->part + 1,
                      reel_store_errmsg(w->cfg.store));
            part_key[0] = 0;
        }
    } else {
        ret =
            upload_reel(w, m, mp4, vtt, out_key, sizeof(out_key), vtt_key, sizeof(vtt_key), errmsg);
    }

done:
    if (model_locked)
        pthread_mutex_unlock(&w->model_lock);
    if (side_running)
        side_stop(&s);
    reel_job_free(&job);
    if (parts)
        for (int k = 0; k < m->parts; k++)
            free(parts[k]);
    free(parts);
    reel_rm_tree(dir, LOG_TAG);

    if (atomic_load(&s.lost) || (ret < 0 && atomic_load(&w->stop) && ret == REEL_ERROR_CANCELLED &&
                                 !atomic_load(&s.cancel_requested))) {
        /* Another worker owns it now, or we are stopping: not ours to finish or ack. */
        ReelRedisqState st;
        if (out_key[0])
            reel_store_delete(w->cfg.store, out_key);
        if (vtt_key[0])
            reel_store_delete(w->cfg.store, vtt_key);
        if (part_key[0])
            reel_store_delete(w->cfg.store, part_key);
        if (atomic_load(&s.lost))
            atomic_fetch_add(&w->lost, 1);
        reel_log(REEL_LOG_INFO, LOG_TAG, "%s/%s: %s abandoned (%s)", m->user, m->export_id, what,
                 atomic_load(&s.lost) ? "claim lost" : "stopping");
        /* Lost because the export is settled (a part failed, a cancel won): nobody
         * else will run this entry, so it leaves the pending list now. */
        if (atomic_load(&s.lost) && reel_redisq_get_state(q, m->user, m->export_id, &st) >= 0) {
            if (st.result)
                reel_redisq_ack(q, m);
            reel_redisq_state_uninit(&st);
        }
        free(wts);
        return;
    }
    if (superseded) { /* a part is rendered again: a new assemble entry will follow */
        reel_redisq_ack(q, m);
        free(wts);
        return;
    }
    if (ret >= 0 && m->part >= 0) {
        int rec = reel_redisq_record_part(q, m, part_key);
        if (rec < 0) {
            /* Maybe recorded, maybe not: the object stays (the export's final clean-up
             * removes the temp prefix); the next attempt finds out (PART_DONE). */
            reel_log(REEL_LOG_WARNING, LOG_TAG, "%s/%s: recording part %d: %s (will be retried)",
                     m->user, m->export_id, m->part, reel_redisq_errmsg(q));
            atomic_fetch_add(&w->retried, 1);
            free(wts);
            return;
        }
        if (rec == REEL_REDISQ_PART_CANCEL) {
            ret = REEL_ERROR_CANCELLED; /* published as the export's result below */
        } else {
            if (rec == REEL_REDISQ_PART_RECORDED || rec == REEL_REDISQ_PART_LAST) {
                task_frame(q, m, wts, 100, "processing");
                atomic_fetch_add(&w->completed, 1);
            } else {
                reel_store_delete(w->cfg.store, part_key);
                atomic_fetch_add(&w->duplicates, 1);
            }
            reel_log(REEL_LOG_INFO, LOG_TAG, "%s/%s: part %d %s", m->user, m->export_id, m->part,
                     rec == REEL_REDISQ_PART_LAST       ? "recorded, the last: assembly queued"
                     : rec == REEL_REDISQ_PART_RECORDED ? "recorded"
                     : rec == REEL_REDISQ_PART_SETTLED  ? "dropped (the export is settled)"
                                                        : "dropped (recorded by another attempt)");
            reel_redisq_ack(q, m);
            free(wts);
            return;
        }
    }
    free(wts);
    if (ret >= 0) {
        won = finish(w, q, m, consumer, "complete", out_key, vtt_key, NULL);
        if (won == 1) {
            atomic_fetch_add(&w->completed, 1);
            reel_log(REEL_LOG_INFO, LOG_TAG, "%s/%s: complete, %s (%.1f s, %lld bytes)", m->user,
                     m->export_id, out_key, stats.total_s, (long long)stats.size_bytes);
        } else {
            /* Another worker's result won (or Redis failed): ours must not stay visible. */
            reel_store_delete(w->cfg.store, out_key);
            if (vtt_key[0])
                reel_store_delete(w->cfg.store, vtt_key);
            if (won < 0) {
                atomic_fetch_add(&w->retried, 1);
                return; /* not acked: retried */
            }
            atomic_fetch_add(&w->duplicates, 1);
        }
        reel_redisq_ack(q, m);
        return;
    }
    if (!errmsg[0])
        reel_strerror(ret, errmsg, sizeof(errmsg));
    if (ret == REEL_ERROR_CANCELLED) {
        won = finish(w, q, m, consumer, "cancelled", NULL, NULL, "Cancelled by user");
    } else if (permanent(ret)) {
        snprintf(reason, sizeof(reason), "Export failed: %s", errmsg);
        won = finish(w, q, m, consumer, "error", NULL, NULL, reason);
    } else {
        /* Transient: leave it pending; another attempt follows after the idle time. */
        snprintf(reason, sizeof(reason), "attempt %d on %s: %s", attempt, consumer, errmsg);
        reel_redisq_note_error(q, m->user, m->export_id, reason);
        reel_log(REEL_LOG_WARNING, LOG_TAG, "%s/%s: %s (will be retried)", m->user, m->export_id,
                 reason);
        atomic_fetch_add(&w->retried, 1);
        return;
    }
    if (won < 0)
        return; /* Redis failed: retried */
    if (won == 1)
        atomic_fetch_add(&w->failed, 1);
    reel_log(REEL_LOG_WARNING, LOG_TAG, "%s/%s: %s", m->user, m->export_id, errmsg);
    reel_redisq_ack(q, m);
}

/* ---- loop threads ----------------------------------------------------------------------- */

typedef struct Loop {
    ReelWorker *w;
    int slot;
    pthread_t thread;
} Loop;

static void *loop_main(void *arg)
{
    Loop *l = arg;
    ReelWorker *w = l->w;
    ReelRedisq *q = NULL;
    char consumer[REEL_REDISQ_NAME_MAX], err[REEL_ERRMSG_SIZE];
    int backoff = 100;

    reel_redisq_consumer_name(consumer, sizeof(consumer), l->slot);
    while (!atomic_load(&w->stop)) {
        ReelRedisqMsg m;
        int ret;

        if (!q && reel_redisq_open(&q, w->cfg.redis_url, 5000, err) < 0) {
            reel_log(REEL_LOG_WARNING, LOG_TAG, "%s (retrying)", err);
            q = NULL;
            sleep_ms(backoff);
            backoff = backoff < 5000 ? backoff * 2 : 5000;
            continue;
        }
        ret = reel_redisq_autoclaim(q, w->cfg.gpu_class, consumer, w->cfg.claim_idle_ms, &m);
        if (ret == 0)
            ret = reel_redisq_read(q, w->cfg.gpu_class, consumer, w->cfg.block_ms, &m);
        if (ret < 0) {
            reel_log(REEL_LOG_WARNING, LOG_TAG, "redis: %s (retrying)", reel_redisq_errmsg(q));
            sleep_ms(backoff);
            backoff = backoff < 5000 ? backoff * 2 : 5000;
            continue;
        }
        backoff = 100;
        if (ret == 0)
            continue;
        process(w, q, consumer, l->slot, &m);
        reel_redisq_msg_uninit(&m);
    }
    reel_redisq_close(&q);
    return NULL;
}

/* ---- lifetime ----------------------------------------------------------------------------- */

int reel_worker_create(ReelWorker **out, const ReelWorkerConfig *cfg, char *errmsg)
{
    ReelWorker *w;
    ReelRedisUrl url;
    const char *tmp = getenv("TMPDIR");
    char root[1900];
    int ret;

    *out = NULL;
    if (!cfg->store || !cfg->gpu_class || !*cfg->gpu_class)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "worker: a store and a GPU class are required");
    if ((ret = reel_redisq_url_parse(&url, cfg->redis_url, errmsg)) < 0)
        return ret;
    if (!(w = calloc(1, sizeof(*w))))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "out of memory");
    w->cfg = *cfg;
    if (w->cfg.claim_idle_ms <= 0)
        w->cfg.claim_idle_ms = 30000;
    if (w->cfg.max_attempts <= 0)
        w->cfg.max_attempts = 3;
    if (w->cfg.concurrency <= 0)
        w->cfg.concurrency = 1;
    if (w->cfg.block_ms <= 0)
        w->cfg.block_ms = 1000;
    if (!w->cfg.limits.max_clips)
        reel_job_limits_default(&w->cfg.limits);
    snprintf(root, sizeof(root), "%s", cfg->work_dir ? cfg->work_dir : "");
    if (!root[0])
        snprintf(root, sizeof(root), "%s/clipreel-worker", tmp && *tmp ? tmp : "/tmp");
    if ((ret = reel_mkdir_p(root)) < 0) {
        free(w);
        return reel_fail(errmsg, ret, "worker: cannot create %s", root);
    }
    nftw(root, sweep_entry, 8, FTW_PHYS);
    snprintf(w->work_dir, sizeof(w->work_dir), "%s/%d", root, (int)getpid());
    if ((ret = reel_mkdir_p(w->work_dir)) < 0) {
        free(w);
        return reel_fail(errmsg, ret, "worker: cannot create %s", root);
    }
    pthread_mutex_init(&w->model_lock, NULL);
    *out = w;
    return 0;
}

int reel_worker_run(ReelWorker *w, char *errmsg)
{
    Loop *loops = calloc((size_t)w->cfg.concurrency, sizeof(*loops));
    ReelRedisq *q = NULL;
    int started = 0, ret;

    if (!loops)
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "out of memory");
    /* Fail fast on a wrong URL or password; later outages are ridden out. */
    if ((ret = reel_redisq_open(&q, w->cfg.redis_url, 5000, errmsg)) < 0) {
        free(loops);
        return ret;
    }
    reel_redisq_close(&q);
    reel_log(REEL_LOG_INFO, LOG_TAG, "serving clipreel:jobs:%s with %d slot(s), claim idle %d ms",
             w->cfg.gpu_class, w->cfg.concurrency, w->cfg.claim_idle_ms);
    for (int i = 0; i < w->cfg.concurrency; i++) {
        loops[i].w = w;
        loops[i].slot = i;
        if (pthread_create(&loops[i].thread, NULL, loop_main, &loops[i]) != 0)
            break;
        started++;
    }
    if (!started) {
        free(loops);
        return reel_fail(errmsg, REEL_ERR(EAGAIN), "cannot start worker threads");
    }
    for (int i = 0; i < started; i++)
        pthread_join(loops[i].thread, NULL);
    free(loops);
    return 0;
}

void reel_worker_stop(ReelWorker *w)
{
    atomic_store(&w->stop, 1);
}

void reel_worker_stats(ReelWorker *w, ReelWorkerStats *st)
{
    st->completed = atomic_load(&w->completed);
    st->failed = atomic_load(&w->failed);
    st->retried = atomic_load(&w->retried);
    st->lost = atomic_load(&w->lost);
    st->duplicates = atomic_load(&w->duplicates);
    st->models_loaded = atomic_load(&w->models_loaded);
}

void reel_worker_free(ReelWorker **pw)
{
    ReelWorker *w = pw ? *pw : NULL;
    if (!w)
        return;
    reel_upscale_close(&w->model);
    reel_rm_tree(w->work_dir, LOG_TAG);
    pthread_mutex_destroy(&w->model_lock);
    free(w);
    *pw = NULL;
}
