/*
 * remote.c - dispatch to and follow the scale-out workers (see remote.h).
 *
 * Threads: the subscriber (its own hiredis connection, PSUBSCRIBE, blocking
 * reads) and the poller (every poll_ms: settle the rows processing remotely
 * whose export hash has a result). Both, and the callers of dispatch/cancel/
 * latest, use the command connection under `lock`.
 */
#include "jobs/remote.h"

#include <errno.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "core/error.h"
#include "core/job.h"
#include "core/log.h"
#include "jobs/planner.h"
#include "jobs/redisq.h"

#define LOG_TAG "remote"
#define CMD_TIMEOUT_MS 2000
#define PREFIX "clipreel:progress:"
#define NOTE_SLOTS 256

struct ReelRemote {
    ReelRemoteConfig cfg;
    char *url;
    ReelRedisUrl parsed;
    ReelPlanConfig plan;

    pthread_mutex_t lock; /* the command connection */
    ReelRedisq *q;

    pthread_mutex_t state; /* stop, sub, wake */
    pthread_cond_t wake;
    int stop;
    redisContext *sub; /* the subscriber's; its socket is shut down to stop it */
    pthread_t sub_thread, poll_thread;
    int threads;
    int64_t noted[NOTE_SLOTS]; /* subscriber: when a row's progress was last written */
};

/* ---- the command connection -------------------------------------------------------------- */

/* Called with r->lock held: a usable connection, or NULL. */
static ReelRedisq *cmd_conn(ReelRemote *r)
{
    char err[REEL_ERRMSG_SIZE];

    if (!r->q && reel_redisq_open(&r->q, r->url, CMD_TIMEOUT_MS, err) < 0) {
        reel_log(REEL_LOG_DEBUG, LOG_TAG, "%s", err);
        return NULL;
    }
    return r->q;
}

/* After a connection-level error the next call reconnects (redisq does that itself;
 * dropping the object also covers a failed reconnect). Called with r->lock held. */
static void cmd_failed(ReelRemote *r, int ret)
{
    if (ret == REEL_ERR(ECONNRESET) || ret == REEL_ERR(ETIMEDOUT) || ret == REEL_ERR(EIO))
        reel_redisq_close(&r->q);
}

/* ---- outcome ----------------------------------------------------------------------------- */

/*
 * Settle a row from the export hash's result, if it has one: finish the row,
 * note the sources gone (the workers delete them), then pass the terminal frame
 * on (the given one, else the newest stored, else a minimal one).
 */
static void settle(ReelRemote *r, const char *user, const char *export_id, const char *frame)
{
    ReelRedisqState st = {0};
    ReelRedisq *q;
    json_t *res = NULL;
    const char *status, *error;
    char *latest = NULL, made[1024];
    int ret, fin;

    pthread_mutex_lock(&r->lock);
    if (!(q = cmd_conn(r)) || (ret = reel_redisq_get_state(q, user, export_id, &st)) < 0) {
        if (q)
            cmd_failed(r, ret);
        pthread_mutex_unlock(&r->lock);
        return; /* the poller tries again */
    }
    if (ret == 0 || !st.result) {
        pthread_mutex_unlock(&r->lock);
        reel_redisq_state_uninit(&st);
        return; /* not over yet */
    }
    if (!frame && reel_redisq_get_latest(q, user, export_id, &latest) < 0)
        latest = NULL;
    pthread_mutex_unlock(&r->lock);

    res = json_loads(st.result, 0, NULL);
    status = json_string_value(json_object_get(res, "status"));
    error = json_string_value(json_object_get(res, "error"));
    if (status && !strcmp(status, "complete"))
        fin = reel_jobstore_finish(r->cfg.jobs, user, export_id, REEL_EXPORT_COMPLETE, NULL,
                                   json_string_value(json_object_get(res, "output_key")),
                                   json_string_value(json_object_get(res, "chapters_key")));
    else if (status && !strcmp(status, "cancelled"))
        fin = reel_jobstore_finish(r->cfg.jobs, user, export_id, REEL_EXPORT_CANCELLED,
                                   error ? error : "Cancelled by user", NULL, NULL);
    else
        fin = reel_jobstore_finish(r->cfg.jobs, user, export_id, REEL_EXPORT_ERROR,
                                   error ? error : "Export failed", NULL, NULL);
    if (fin == 0) {
        reel_jobstore_set_sources_deleted(r->cfg.jobs, user, export_id);
        reel_log(REEL_LOG_INFO, LOG_TAG, "%s/%s: %s on the workers", user, export_id,
                 status ? status : "error");
        if (!frame && !latest) {
            json_t *o = json_pack("{s:s,s:s,s:s,s:i}", "status",
                                  status && !strcmp(status, "complete") ? "complete" : "error",
                                  "phase", status ? status : "error", "message",
                                  error ? error : "Multi-clip export complete!", "progress",
                                  status && !strcmp(status, "complete") ? 100 : 0);
            char *t;
            if (o && error)
                json_object_set_new(o, "error", json_string(error));
            t = o ? json_dumps(o, JSON_COMPACT) : NULL;
            snprintf(made, sizeof(made), "%s", t ? t : "{}");
            free(t);
            json_decref(o);
        }
        if (r->cfg.on_frame)
            r->cfg.on_frame(r->cfg.opaque, user, export_id,
                            frame    ? frame
                            : latest ? latest
                                     : made,
                            1);
    }
    free(latest);
    json_decref(res);
    reel_redisq_state_uninit(&st);
}

/* ---- the subscriber ---------------------------------------------------------------------- */

static redisContext *sub_connect(ReelRemote *r)
{
    struct timeval tv = {CMD_TIMEOUT_MS / 1000, (CMD_TIMEOUT_MS % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(r->parsed.host, r->parsed.port, tv);
    redisReply *rep;

    if (!c || c->err)
        goto fail;
    if (r->parsed.password[0]) {
        rep = r->parsed.user[0] ? redisCommand(c, "AUTH %s %s", r->parsed.user, r->parsed.password)
                                : redisCommand(c, "AUTH %s", r->parsed.password);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            freeReplyObject(rep);
            goto fail;
        }
        freeReplyObject(rep);
    }
    /* PSUBSCRIBE is not per database, but a SELECT keeps the connection tidy. */
    rep = redisCommand(c, "PSUBSCRIBE " PREFIX "*");
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        freeReplyObject(rep);
        goto fail;
    }
    freeReplyObject(rep);
    redisSetTimeout(c, (struct timeval){0, 0}); /* block: stop() shuts the socket down */
    return c;
fail:
    if (c)
        redisFree(c);
    return NULL;
}

/* "clipreel:progress:{user}:{export_id}" -> user, export_id (ids have no ':'). */
static int split_channel(const char *chan, char *user, char *id)
{
    const char *p = chan + strlen(PREFIX), *colon;
    size_t n;

    if (strncmp(chan, PREFIX, strlen(PREFIX)) || !(colon = strchr(p, ':')))
        return -1;
    n = (size_t)(colon - p);
    if (!n || n > REEL_ID_MAX || strlen(colon + 1) > REEL_ID_MAX || !colon[1] ||
        strchr(colon + 1, ':'))
        return -1;
    memcpy(user, p, n);
    user[n] = 0;
    memcpy(id, colon + 1, strlen(colon + 1) + 1);
    return 0;
}

/*
 * The row's phase/progress is written at most once a second per export: a small
 * table of recent writes, indexed by a hash of the export (collisions only make
 * a write happen a little early or late). Subscriber thread only.
 */
static int note_due(ReelRemote *r, const char *user, const char *id)
{
    unsigned h = 2166136261u;
    struct timespec ts;
    int64_t now;

    for (const char *p = user; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    h %= NOTE_SLOTS;
    if (now - r->noted[h] < 1000)
        return 0;
    r->noted[h] = now;
    return 1;
}

static void handle_message(ReelRemote *r, redisReply *m)
{
    char user[REEL_ID_MAX + 1], id[REEL_ID_MAX + 1];
    const char *frame;
    json_t *o;
    const char *status;
    int terminal;

    /* pmessage, pattern, channel, payload */
    if (m->type != REDIS_REPLY_ARRAY || m->elements != 4 || !m->element[2]->str ||
        !m->element[3]->str || strcmp(m->element[0]->str ? m->element[0]->str : "", "pmessage"))
        return;
    if (split_channel(m->element[2]->str, user, id) < 0)
        return;
    frame = m->element[3]->str;
    o = json_loads(frame, 0, NULL);
    status = json_string_value(json_object_get(o, "status"));
    terminal = status && (!strcmp(status, "complete") || !strcmp(status, "error"));
    json_decref(o);
    if (terminal) {
        settle(r, user, id, frame); /* the row first, then the frame */
    } else {
        if (r->cfg.on_frame)
            r->cfg.on_frame(r->cfg.opaque, user, id, frame, 0);
        if (note_due(r, user, id)) {
            o = json_loads(frame, 0, NULL);
            reel_jobstore_update_progress(r->cfg.jobs, user, id,
                                          json_string_value(json_object_get(o, "phase")),
                                          json_number_value(json_object_get(o, "progress")));
            json_decref(o);
        }
    }
}

static int stopping(ReelRemote *r)
{
    int s;
    pthread_mutex_lock(&r->state);
    s = r->stop;
    pthread_mutex_unlock(&r->state);
    return s;
}

static void *sub_main(void *arg)
{
    ReelRemote *r = arg;
    int backoff = 250;

    while (!stopping(r)) {
        redisContext *c = sub_connect(r);
        redisReply *m;
        struct timespec ts;

        if (!c) {
            pthread_mutex_lock(&r->state);
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += backoff / 1000;
            ts.tv_nsec += (long)(backoff % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            if (!r->stop)
                pthread_cond_timedwait(&r->wake, &r->state, &ts);
            pthread_mutex_unlock(&r->state);
            backoff = backoff < 5000 ? backoff * 2 : 5000;
            continue;
        }
        backoff = 250;
        pthread_mutex_lock(&r->state);
        r->sub = c;
        pthread_mutex_unlock(&r->state);
        reel_log(REEL_LOG_INFO, LOG_TAG, "following progress on %s:%d", r->parsed.host,
                 r->parsed.port);
        while (redisGetReply(c, (void **)&m) == REDIS_OK) {
            handle_message(r, m);
            freeReplyObject(m);
        }
        pthread_mutex_lock(&r->state);
        r->sub = NULL;
        pthread_mutex_unlock(&r->state);
        redisFree(c);
        if (!stopping(r))
            reel_log(REEL_LOG_WARNING, LOG_TAG, "lost the progress subscription; reconnecting");
    }
    return NULL;
}

/* ---- the poller -------------------------------------------------------------------------- */

typedef struct Pending {
    char user[REEL_ID_MAX + 1], id[REEL_ID_MAX + 1];
} Pending;

typedef struct PendingList {
    Pending *items;
    int nb, cap;
} PendingList;

static int collect_remote(void *opaque, const ReelExportRecord *rec)
{
    PendingList *l = opaque;

    if (strcmp(rec->runner, "redis"))
        return 0;
    if (l->nb == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        Pending *p = realloc(l->items, (size_t)cap * sizeof(*p));
        if (!p)
            return REEL_ERR(ENOMEM);
        l->items = p;
        l->cap = cap;
    }
    snprintf(l->items[l->nb].user, sizeof(l->items[0].user), "%s", rec->user);
    snprintf(l->items[l->nb].id, sizeof(l->items[0].id), "%s", rec->export_id);
    l->nb++;
    return 0;
}

static void *poll_main(void *arg)
{
    ReelRemote *r = arg;

    for (;;) {
        PendingList l = {0};
        struct timespec ts;

        reel_jobstore_list(r->cfg.jobs, NULL, 1u << REEL_EXPORT_PROCESSING, collect_remote, &l);
        for (int i = 0; i < l.nb && !stopping(r); i++)
            settle(r, l.items[i].user, l.items[i].id, NULL);
        free(l.items);

        pthread_mutex_lock(&r->state);
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += r->cfg.poll_ms / 1000;
        ts.tv_nsec += (long)(r->cfg.poll_ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (!r->stop)
            pthread_cond_timedwait(&r->wake, &r->state, &ts);
        if (r->stop) {
            pthread_mutex_unlock(&r->state);
            break;
        }
        pthread_mutex_unlock(&r->state);
    }
    return NULL;
}

/* ---- the API ----------------------------------------------------------------------------- */

int reel_remote_start(ReelRemote **out, const ReelRemoteConfig *cfg, char *errmsg)
{
    ReelRemote *r;
    int ret;

    *out = NULL;
    if (!(r = calloc(1, sizeof(*r))))
        return REEL_ERR(ENOMEM);
    r->cfg = *cfg;
    if (r->cfg.poll_ms <= 0)
        r->cfg.poll_ms = 2000;
    if (!(r->url = strdup(cfg->url))) {
        free(r);
        return REEL_ERR(ENOMEM);
    }
    if ((ret = reel_redisq_url_parse(&r->parsed, cfg->url, errmsg)) < 0) {
        free(r->url);
        free(r);
        return ret;
    }
    reel_plan_config_default(&r->plan);
    /* The planner's thresholds and cost table (docs/planner.md), e.g. to send
     * smaller jobs to parallel mode. */
    if (cfg->plan_config && *cfg->plan_config &&
        (ret = reel_plan_config_load(&r->plan, cfg->plan_config, errmsg)) < 0) {
        free(r->url);
        free(r);
        return ret;
    }
    pthread_mutex_init(&r->lock, NULL);
    pthread_mutex_init(&r->state, NULL);
    pthread_cond_init(&r->wake, NULL);
    if (pthread_create(&r->sub_thread, NULL, sub_main, r) == 0)
        r->threads |= 1;
    if (pthread_create(&r->poll_thread, NULL, poll_main, r) == 0)
        r->threads |= 2;
    if (r->threads != 3) {
        reel_remote_stop(&r);
        return reel_fail(errmsg, REEL_ERR(EAGAIN), "cannot start the Redis threads");
    }
    *out = r;
    return 0;
}

void reel_remote_stop(ReelRemote **pr)
{
    ReelRemote *r = *pr;

    if (!r)
        return;
    pthread_mutex_lock(&r->state);
    r->stop = 1;
    if (r->sub)
        shutdown(r->sub->fd, SHUT_RDWR); /* ends the blocking read */
    pthread_cond_broadcast(&r->wake);
    pthread_mutex_unlock(&r->state);
    if (r->threads & 1)
        pthread_join(r->sub_thread, NULL);
    if (r->threads & 2)
        pthread_join(r->poll_thread, NULL);
    reel_redisq_close(&r->q);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->state);
    pthread_mutex_destroy(&r->lock);
    free(r->url);
    free(r);
    *pr = NULL;
}

/* The planner's GPU class and mode for the job: *parts is 0 (single container)
 * or the clip count (parallel). The first class, single, when it cannot decide
 * (e.g. durations only known after a probe). */
static void plan_export(ReelRemote *r, const char *job_json, char *out, size_t size, int *parts)
{
    char err[REEL_ERRMSG_SIZE];
    ReelJob *job = NULL;
    ReelPlan plan;

    snprintf(out, size, "%s", r->plan.nb_classes ? r->plan.classes[0].name : "t4");
    *parts = 0;
    if (reel_job_parse(&job, job_json ? job_json : "", NULL, NULL, err) < 0)
        return;
    if (reel_plan_make(job, &r->plan, &plan, err) == 0 && plan.gpu) {
        snprintf(out, size, "%s", plan.gpu->name);
        if (plan.parallel && job->nb_clips <= REEL_REDISQ_MAX_PARTS)
            *parts = job->nb_clips;
    }
    reel_job_free(&job);
}

int reel_remote_dispatch(ReelRemote *r, const ReelExportRecord *rec, char *errmsg)
{
    ReelRedisqExport e = {0};
    ReelRedisq *q;
    char gpu[64];
    int ret;

    plan_export(r, rec->job_json, gpu, sizeof(gpu), &e.parts);
    e.gpu_class = gpu;
    e.user = rec->user;
    e.export_id = rec->export_id;
    e.project_id = rec->project_id[0] ? rec->project_id : NULL;
    e.project_name = rec->project_name[0] ? rec->project_name : NULL;
    e.job_json = rec->job_json;
    e.sources_json = rec->sources_json;
    pthread_mutex_lock(&r->lock);
    if (!(q = cmd_conn(r))) {
        pthread_mutex_unlock(&r->lock);
        return reel_fail(errmsg, REEL_ERR(ECONNREFUSED), "the export queue (Redis) is unreachable");
    }
    ret = reel_redisq_enqueue(q, &e, NULL);
    if (ret < 0 && ret != REEL_ERR(EEXIST)) {
        reel_fail(errmsg, ret, "the export queue (Redis): %s", reel_redisq_errmsg(q));
        cmd_failed(r, ret);
    }
    pthread_mutex_unlock(&r->lock);
    if (ret < 0 && ret != REEL_ERR(EEXIST))
        return ret;
    /* Enqueued (or known already): the row follows the workers from now on. */
    reel_jobstore_mark_remote(r->cfg.jobs, rec->user, rec->export_id);
    reel_log(REEL_LOG_INFO, LOG_TAG, "%s/%s: queued for the %s workers (%s)", rec->user,
             rec->export_id, gpu, e.parts ? "parallel: one task per clip + assemble" : "single");
    return ret;
}

int reel_remote_cancel(ReelRemote *r, const char *user, const char *export_id)
{
    ReelRedisqState st = {0};
    ReelRedisq *q;
    int ret;

    pthread_mutex_lock(&r->lock);
    if (!(q = cmd_conn(r))) {
        pthread_mutex_unlock(&r->lock);
        return REEL_ERR(ECONNREFUSED);
    }
    ret = reel_redisq_cancel(q, user, export_id);
    if (ret == 1 && reel_redisq_get_state(q, user, export_id, &st) == 1 &&
        !strcmp(st.state, "queued")) {
        /* No worker has it: settle it here. Exactly one result wins, so a worker
         * taking it at this moment sees the result and leaves it alone. */
        ReelRedisqResult res = {
            .status = "cancelled", .error = "Cancelled by user", .worker = "service"};
        reel_redisq_publish_result(q, user, export_id, &res);
    }
    reel_redisq_state_uninit(&st);
    if (ret < 0)
        cmd_failed(r, ret);
    pthread_mutex_unlock(&r->lock);
    if (ret == 1)
        settle(r, user, export_id, NULL); /* done now if it was settled above */
    return ret;
}

char *reel_remote_latest(ReelRemote *r, const char *user, const char *export_id)
{
    ReelRedisq *q;
    char *frame = NULL;
    int ret;

    pthread_mutex_lock(&r->lock);
    if ((q = cmd_conn(r)) && (ret = reel_redisq_get_latest(q, user, export_id, &frame)) < 0) {
        cmd_failed(r, ret);
        frame = NULL;
    }
    pthread_mutex_unlock(&r->lock);
    return frame;
}
