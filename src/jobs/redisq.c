/*
 * redisq.c - the Redis Streams protocol of docs/scaleout.md over hiredis 0.14.
 *
 * DESIGN: every public call runs on one synchronous context. A call that finds
 * the context broken (an I/O error on an earlier call) reconnects first, so
 * workers ride out a Redis restart by simply retrying. hiredis replies are
 * translated here and nowhere else: a NULL reply is a broken connection
 * (ECONNRESET), a REDIS_REPLY_ERROR or an unexpected shape is EPROTO, with the
 * server's text kept in q->errmsg.
 *
 * The exactly-once result needs no Lua: HSETNX on one field of the export's
 * hash is atomic, and only the caller that got 1 writes the terminal state.
 * The claim refresh uses WATCH on the hash so that a consumer that has been
 * reclaimed from never takes the entry back (XCLAIM with min-idle 0 would).
 */
#include "jobs/redisq.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "core/error.h"
#include "core/log.h"

#define LOG_TAG "redisq"
#define STREAM_MAXLEN 10000
#define DONE_TTL_S (7 * 24 * 3600)
#define LATEST_TTL_S (24 * 3600)

struct ReelRedisq {
    redisContext *ctx; /* NULL or broken: reconnect at the next call */
    ReelRedisUrl url;
    int timeout_ms;
    char errmsg[REEL_ERRMSG_SIZE];
};

/* ---- connection ------------------------------------------------------------------------- */

static int set_err(ReelRedisq *q, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int set_err(ReelRedisq *q, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->errmsg, sizeof(q->errmsg), fmt, ap);
    va_end(ap);
    return err;
}

int reel_redisq_url_parse(ReelRedisUrl *url, const char *text, char *errmsg)
{
    const char *p, *at, *slash, *colon, *host_end;
    char num[16];
    size_t n;
    char *end;
    long v;

    memset(url, 0, sizeof(*url));
    url->port = 6379;
    if (!text || strncmp(text, "redis://", 8))
        return reel_fail(errmsg, REEL_ERR(EINVAL), "--redis: expected redis://host[:port][/db]");
    p = text + 8;
    slash = strchr(p, '/');
    at = strrchr(p, '@');
    if (at && slash && at > slash)
        at = NULL;
    if (at) {
        const char *c = memchr(p, ':', (size_t)(at - p));
        if (!c)
            return reel_fail(errmsg, REEL_ERR(EINVAL),
                             "--redis: credentials must be user:password@");
        if ((size_t)(c - p) >= sizeof(url->user) || (size_t)(at - c - 1) >= sizeof(url->password))
            return reel_fail(errmsg, REEL_ERR(EINVAL), "--redis: credentials too long");
        memcpy(url->user, p, (size_t)(c - p));
        memcpy(url->password, c + 1, (size_t)(at - c - 1));
        p = at + 1;
    }
    host_end = slash ? slash : p + strlen(p);
    colon = memchr(p, ':', (size_t)(host_end - p));
    n = (size_t)((colon ? colon : host_end) - p);
    if (n == 0 || n >= sizeof(url->host))
        return reel_fail(errmsg, REEL_ERR(EINVAL), "--redis: missing or too long host");
    memcpy(url->host, p, n);
    if (colon) {
        n = (size_t)(host_end - colon - 1);
        if (n == 0 || n >= sizeof(num))
            return reel_fail(errmsg, REEL_ERR(EINVAL), "--redis: bad port");
        memcpy(num, colon + 1, n);
        num[n] = 0;
        errno = 0;
        v = strtol(num, &end, 10);
        if (errno || *end || v < 1 || v > 65535)
            return reel_fail(errmsg, REEL_ERR(EINVAL), "--redis: bad port '%s'", num);
        url->port = (int)v;
    }
    if (slash && slash[1]) {
        errno = 0;
        v = strtol(slash + 1, &end, 10);
        if (errno || *end || v < 0 || v > 1000000)
            return reel_fail(errmsg, REEL_ERR(EINVAL), "--redis: bad database '%s'", slash + 1);
        url->db = (int)v;
    }
    return 0;
}

static void drop(ReelRedisq *q)
{
    if (q->ctx)
        redisFree(q->ctx);
    q->ctx = NULL;
}

static struct timeval tv_of(int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return tv;
}

/* A reply that must be "+OK"-like (status or integer). */
static int simple(ReelRedisq *q, redisReply *r, const char *what)
{
    int ret = 0;
    if (!r) {
        ret = set_err(q, REEL_ERR(ECONNRESET), "%s: %s", what,
                      q->ctx && q->ctx->errstr[0] ? q->ctx->errstr : "connection lost");
        drop(q);
        return ret;
    }
    if (r->type == REDIS_REPLY_ERROR)
        ret = set_err(q, REEL_ERR(EPROTO), "%s: %s", what, r->str);
    freeReplyObject(r);
    return ret;
}

static int connect_now(ReelRedisq *q)
{
    redisContext *c = redisConnectWithTimeout(q->url.host, q->url.port, tv_of(q->timeout_ms));
    int ret;

    if (!c || c->err) {
        ret = set_err(q, REEL_ERR(ECONNREFUSED), "cannot connect to redis %s:%d: %s", q->url.host,
                      q->url.port, c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return ret;
    }
    redisSetTimeout(c, tv_of(q->timeout_ms));
    q->ctx = c;
    if (q->url.password[0]) {
        redisReply *r = q->url.user[0] ? redisCommand(c, "AUTH %s %s", q->url.user, q->url.password)
                                       : redisCommand(c, "AUTH %s", q->url.password);
        if ((ret = simple(q, r, "AUTH")) < 0) {
            drop(q);
            return ret;
        }
    }
    if (q->url.db && (ret = simple(q, redisCommand(c, "SELECT %d", q->url.db), "SELECT")) < 0) {
        drop(q);
        return ret;
    }
    return 0;
}

int reel_redisq_open(ReelRedisq **out, const char *url, int timeout_ms, char *errmsg)
{
    ReelRedisq *q;
    int ret;

    *out = NULL;
    if (!(q = calloc(1, sizeof(*q))))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "out of memory");
    if ((ret = reel_redisq_url_parse(&q->url, url, errmsg)) < 0) {
        free(q);
        return ret;
    }
    q->timeout_ms = timeout_ms > 0 ? timeout_ms : 10000;
    if ((ret = connect_now(q)) < 0) {
        reel_fail(errmsg, ret, "%s", q->errmsg);
        free(q);
        return ret;
    }
    *out = q;
    return 0;
}

void reel_redisq_close(ReelRedisq **q)
{
    if (!q || !*q)
        return;
    drop(*q);
    free(*q);
    *q = NULL;
}

const char *reel_redisq_errmsg(const ReelRedisq *q)
{
    return q ? q->errmsg : "no connection";
}

/* Reconnect when broken; NULL reply (with q->errmsg) means the call failed. */
static redisReply *cmd(ReelRedisq *q, const char *fmt, ...)
{
    redisReply *r;
    va_list ap;

    if (!q->ctx && connect_now(q) < 0)
        return NULL;
    va_start(ap, fmt);
    r = redisvCommand(q->ctx, fmt, ap);
    va_end(ap);
    if (!r) {
        set_err(q, REEL_ERR(ECONNRESET), "redis: %s",
                q->ctx->errstr[0] ? q->ctx->errstr : "I/O error");
        drop(q);
    }
    return r;
}

/* The error of a NULL reply, or of an error reply (which is freed). */
static int reply_err(ReelRedisq *q, redisReply *r, const char *what)
{
    int ret;
    if (!r)
        return REEL_ERR(ECONNRESET);
    if (r->type == REDIS_REPLY_ERROR)
        ret = set_err(q, REEL_ERR(EPROTO), "%s: %s", what, r->str);
    else
        ret = set_err(q, REEL_ERR(EPROTO), "%s: unexpected reply type %d", what, r->type);
    freeReplyObject(r);
    return ret;
}

/* ---- names ------------------------------------------------------------------------------ */

static int name_ok(const char *s)
{
    size_t n = 0;
    if (!s || !*s)
        return 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= REEL_REDISQ_NAME_MAX || c <= ' ' || c == ':' || c == 0x7f)
            return 0;
    }
    return 1;
}

static void stream_key(char *out, size_t size, const char *gpu_class)
{
    snprintf(out, size, "clipreel:jobs:%s", gpu_class);
}

static void export_key(char *out, size_t size, const char *user, const char *id)
{
    snprintf(out, size, "clipreel:export:%s:%s", user, id);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void reel_redisq_consumer_name(char *out, int size, int n)
{
    char host[64] = "host";
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = 0;
    for (char *p = host; *p; p++)
        if (*p == ':' || *p <= ' ')
            *p = '_';
    snprintf(out, (size_t)size, "%s-%d-%d", host, (int)getpid(), n);
}

/* ---- enqueue ------------------------------------------------------------------------------ */

int reel_redisq_enqueue(ReelRedisq *q, const ReelRedisqExport *e, char *stream_id)
{
    char skey[256], ekey[512], ms[32];
    redisReply *r;
    int ret;

    if (!name_ok(e->gpu_class) || !name_ok(e->user) || !name_ok(e->export_id) || !e->job_json)
        return set_err(q, REEL_ERR(EINVAL), "enqueue: bad class, user or export id");
    stream_key(skey, sizeof(skey), e->gpu_class);
    export_key(ekey, sizeof(ekey), e->user, e->export_id);
    snprintf(ms, sizeof(ms), "%lld", (long long)now_ms());

    if ((ret = simple(q, cmd(q, "WATCH %s", ekey), "WATCH")) < 0)
        return ret;
    if (!(r = cmd(q, "EXISTS %s", ekey)))
        return REEL_ERR(ECONNRESET);
    if (r->type != REDIS_REPLY_INTEGER) {
        simple(q, cmd(q, "UNWATCH"), "UNWATCH");
        return reply_err(q, r, "EXISTS");
    }
    if (r->integer) {
        freeReplyObject(r);
        simple(q, cmd(q, "UNWATCH"), "UNWATCH");
        return set_err(q, REEL_ERR(EEXIST), "export %s/%s is queued already", e->user,
                       e->export_id);
    }
    freeReplyObject(r);
    /* The group must exist before the entry, or a worker creating it at "$"
     * later would skip this entry. */
    if (!(r = cmd(q, "XGROUP CREATE %s %s 0 MKSTREAM", skey, REEL_REDISQ_GROUP)))
        return REEL_ERR(ECONNRESET);
    freeReplyObject(r); /* BUSYGROUP is fine */
    if (e->parts < 0 || e->parts > REEL_REDISQ_MAX_PARTS)
        return set_err(q, REEL_ERR(EINVAL), "enqueue: %d parts", e->parts);
    if ((ret = simple(q, cmd(q, "MULTI"), "MULTI")) < 0)
        return ret;
    if ((ret = simple(q,
                      cmd(q,
                          "HSET %s state queued class %s attempts 0 user %s export_id %s "
                          "created_ms %s mode %s parts %d",
                          ekey, e->gpu_class, e->user, e->export_id, ms,
                          e->parts ? "parallel" : "single", e->parts),
                      "HSET")) < 0)
        return ret;
    /* One entry (single), or one per part; the assemble entry comes later. */
    for (int k = 0; k < (e->parts ? e->parts : 1); k++) {
        if ((ret = simple(q,
                          cmd(q,
                              "XADD %s MAXLEN ~ %d * export_id %s user %s project_id %s "
                              "project_name %s job %s sources %s mode %s part %d parts %d "
                              "enqueued_ms %s",
                              skey, STREAM_MAXLEN, e->export_id, e->user,
                              e->project_id ? e->project_id : "",
                              e->project_name ? e->project_name : "", e->job_json,
                              e->sources_json ? e->sources_json : "[]",
                              e->parts ? "part" : "single", e->parts ? k : -1, e->parts, ms),
                          "XADD")) < 0)
            return ret;
    }
    if (!(r = cmd(q, "EXEC")))
        return REEL_ERR(ECONNRESET);
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return set_err(q, REEL_ERR(EEXIST), "export %s/%s was queued concurrently", e->user,
                       e->export_id);
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[1]->type != REDIS_REPLY_STRING)
        return reply_err(q, r, "EXEC");
    if (stream_id)
        snprintf(stream_id, 64, "%s", r->element[1]->str);
    /* Remember where the (first) entry is (for an operator looking at the hash). */
    simple(q, cmd(q, "HSET %s stream_id %s", ekey, r->element[1]->str), "HSET");
    freeReplyObject(r);
    return 0;
}

/* ---- reading entries -------------------------------------------------------------------- */

void reel_redisq_msg_uninit(ReelRedisqMsg *msg)
{
    if (!msg)
        return;
    free(msg->job_json);
    free(msg->sources_json);
    memset(msg, 0, sizeof(*msg));
}

/* Fill msg from an [id, [f, v, ...]] entry; 0 ok, 1 when the entry is unusable. */
static int parse_entry(ReelRedisq *q, const redisReply *ent, const char *gpu_class,
                       ReelRedisqMsg *msg)
{
    const redisReply *kv;

    memset(msg, 0, sizeof(*msg));
    if (ent->type != REDIS_REPLY_ARRAY || ent->elements != 2 ||
        ent->element[0]->type != REDIS_REPLY_STRING)
        return set_err(q, REEL_ERR(EPROTO), "stream entry: unexpected shape");
    snprintf(msg->stream_id, sizeof(msg->stream_id), "%s", ent->element[0]->str);
    snprintf(msg->gpu_class, sizeof(msg->gpu_class), "%s", gpu_class);
    msg->part = -1;
    kv = ent->element[1];
    if (kv->type != REDIS_REPLY_ARRAY)
        return 1; /* deleted while pending */
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
        const char *f = kv->element[i]->str, *v = kv->element[i + 1]->str;
        if (!f || !v)
            continue;
        if (!strcmp(f, "export_id"))
            snprintf(msg->export_id, sizeof(msg->export_id), "%s", v);
        else if (!strcmp(f, "user"))
            snprintf(msg->user, sizeof(msg->user), "%s", v);
        else if (!strcmp(f, "project_id"))
            snprintf(msg->project_id, sizeof(msg->project_id), "%s", v);
        else if (!strcmp(f, "project_name"))
            snprintf(msg->project_name, sizeof(msg->project_name), "%s", v);
        else if (!strcmp(f, "mode"))
            snprintf(msg->mode, sizeof(msg->mode), "%s", v);
        else if (!strcmp(f, "part"))
            msg->part = (int)strtol(v, NULL, 10);
        else if (!strcmp(f, "parts"))
            msg->parts = (int)strtol(v, NULL, 10);
        else if (!strcmp(f, "job") && !msg->job_json)
            msg->job_json = strdup(v);
        else if (!strcmp(f, "sources") && !msg->sources_json)
            msg->sources_json = strdup(v);
    }
    if (!msg->job_json || !msg->sources_json) {
        reel_redisq_msg_uninit(msg);
        return set_err(q, REEL_ERR(ENOMEM), "out of memory");
    }
    if (!name_ok(msg->user) || !name_ok(msg->export_id))
        return 1;
    if (!msg->mode[0] || !strcmp(msg->mode, "single")) {
        snprintf(msg->mode, sizeof(msg->mode), "single");
        msg->part = -1;
        msg->parts = 0;
    } else if (!strcmp(msg->mode, "part")) {
        if (msg->parts < 1 || msg->parts > REEL_REDISQ_MAX_PARTS || msg->part < 0 ||
            msg->part >= msg->parts)
            return 1;
        snprintf(msg->task, sizeof(msg->task), "part%d", msg->part);
    } else if (!strcmp(msg->mode, "assemble")) {
        if (msg->parts < 1 || msg->parts > REEL_REDISQ_MAX_PARTS)
            return 1;
        msg->part = -1;
        snprintf(msg->task, sizeof(msg->task), "assemble");
    } else {
        return 1; /* a mode from a newer protocol: not ours to run */
    }
    return 0;
}

static int ensure_group(ReelRedisq *q, const char *skey)
{
    redisReply *r = cmd(q, "XGROUP CREATE %s %s 0 MKSTREAM", skey, REEL_REDISQ_GROUP);
    int ret = 0;
    if (!r)
        return REEL_ERR(ECONNRESET);
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9))
        ret = set_err(q, REEL_ERR(EPROTO), "XGROUP CREATE: %s", r->str);
    freeReplyObject(r);
    return ret;
}

static int ack_id(ReelRedisq *q, const char *skey, const char *id)
{
    return simple(q, cmd(q, "XACK %s %s %s", skey, REEL_REDISQ_GROUP, id), "XACK");
}

int reel_redisq_read(ReelRedisq *q, const char *gpu_class, const char *consumer, int block_ms,
                     ReelRedisqMsg *msg)
{
    char skey[256];
    redisReply *r;
    const redisReply *ents;
    int ret;

    if (!name_ok(gpu_class) || !name_ok(consumer))
        return set_err(q, REEL_ERR(EINVAL), "read: bad class or consumer name");
    stream_key(skey, sizeof(skey), gpu_class);
    if (!q->ctx && (ret = connect_now(q)) < 0)
        return ret;
    if ((ret = ensure_group(q, skey)) < 0)
        return ret;
    if (q->ctx && block_ms + 5000 > q->timeout_ms)
        redisSetTimeout(q->ctx, tv_of(block_ms + 5000));
    r = block_ms > 0 ? cmd(q, "XREADGROUP GROUP %s %s COUNT 1 BLOCK %d STREAMS %s >",
                           REEL_REDISQ_GROUP, consumer, block_ms, skey)
                     : cmd(q, "XREADGROUP GROUP %s %s COUNT 1 STREAMS %s >", REEL_REDISQ_GROUP,
                           consumer, skey);
    if (q->ctx && block_ms + 5000 > q->timeout_ms)
        redisSetTimeout(q->ctx, tv_of(q->timeout_ms));
    if (!r)
        return REEL_ERR(ECONNRESET);
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return 0;
    }
    /* [[stream, [[id, [f, v, ...]]]]] */
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_ARRAY || r->element[0]->elements != 2 ||
        r->element[0]->element[1]->type != REDIS_REPLY_ARRAY)
        return reply_err(q, r, "XREADGROUP");
    ents = r->element[0]->element[1];
    if (ents->elements < 1) {
        freeReplyObject(r);
        return 0;
    }
    ret = parse_entry(q, ents->element[0], gpu_class, msg);
    if (ret == 1) { /* not ours to run: drop it from the pending list */
        reel_log(REEL_LOG_WARNING, LOG_TAG, "%s: malformed entry %s acked", skey, msg->stream_id);
        ack_id(q, skey, msg->stream_id);
        reel_redisq_msg_uninit(msg);
        ret = 0;
    } else if (ret == 0) {
        ret = 1;
    }
    freeReplyObject(r);
    return ret;
}

int reel_redisq_autoclaim(ReelRedisq *q, const char *gpu_class, const char *consumer,
                          int min_idle_ms, ReelRedisqMsg *msg)
{
    char skey[256], cursor[64] = "0-0";
    redisReply *r;
    int ret = 0;

    if (!name_ok(gpu_class) || !name_ok(consumer))
        return set_err(q, REEL_ERR(EINVAL), "autoclaim: bad class or consumer name");
    stream_key(skey, sizeof(skey), gpu_class);
    if (!q->ctx && (ret = connect_now(q)) < 0)
        return ret;
    if ((ret = ensure_group(q, skey)) < 0)
        return ret;
    /* Walk the pending list until one usable entry is found or it is exhausted. */
    for (int round = 0; round < 100; round++) {
        const redisReply *ents;
        if (!(r = cmd(q, "XAUTOCLAIM %s %s %s %d %s COUNT 1", skey, REEL_REDISQ_GROUP, consumer,
                      min_idle_ms, cursor)))
            return REEL_ERR(ECONNRESET);
        /* Redis 7: [next-cursor, [[id, [f, v, ...]], ...], [deleted-id, ...]] */
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY)
            return reply_err(q, r, "XAUTOCLAIM");
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        if (r->elements >= 3 && r->element[2]->type == REDIS_REPLY_ARRAY)
            for (size_t i = 0; i < r->element[2]->elements; i++)
                if (r->element[2]->element[i]->str)
                    ack_id(q, skey, r->element[2]->element[i]->str);
        ents = r->element[1];
        for (size_t i = 0; i < ents->elements && ret == 0; i++) {
            ret = parse_entry(q, ents->element[i], gpu_class, msg);
            if (ret == 1) {
                ack_id(q, skey, msg->stream_id);
                reel_redisq_msg_uninit(msg);
                ret = 0;
            } else if (ret == 0) {
                msg->reclaimed = 1;
                ret = 1;
            }
        }
        freeReplyObject(r);
        if (ret != 0 || !strcmp(cursor, "0-0"))
            return ret;
    }
    return 0;
}

int reel_redisq_ack(ReelRedisq *q, const ReelRedisqMsg *msg)
{
    char skey[256];
    stream_key(skey, sizeof(skey), msg->gpu_class);
    return ack_id(q, skey, msg->stream_id);
}

int64_t reel_redisq_pending(ReelRedisq *q, const char *gpu_class)
{
    char skey[256];
    redisReply *r;
    int64_t n;

    stream_key(skey, sizeof(skey), gpu_class);
    if (!(r = cmd(q, "XPENDING %s %s", skey, REEL_REDISQ_GROUP)))
        return REEL_ERR(ECONNRESET);
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER)
        return reply_err(q, r, "XPENDING");
    n = r->element[0]->integer;
    freeReplyObject(r);
    return n;
}

/* ---- attempts, claims, results ---------------------------------------------------------- */

/* HMGET key f1 f2 ... into strings (NULL = absent); r kept for their lifetime. */
static int hmget(ReelRedisq *q, redisReply **out, const char *key, const char *f1, const char *f2,
                 const char *f3)
{
    redisReply *r = cmd(q, "HMGET %s %s %s %s", key, f1, f2, f3);
    *out = NULL;
    if (!r)
        return REEL_ERR(ECONNRESET);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3)
        return reply_err(q, r, "HMGET");
    *out = r;
    return 0;
}

static const char *field(const redisReply *r, size_t i)
{
    return r->element[i]->type == REDIS_REPLY_STRING ? r->element[i]->str : NULL;
}

/* The hash field of msg's task: "owner" (single), "owner:part3", "owner:assemble". */
static const char *task_field(char *out, size_t size, const char *base, const ReelRedisqMsg *msg)
{
    if (msg->task[0])
        snprintf(out, size, "%s:%s", base, msg->task);
    else
        snprintf(out, size, "%s", base);
    return out;
}

static int hincr(ReelRedisq *q, const char *key, const char *f, int64_t *out)
{
    redisReply *r = cmd(q, "HINCRBY %s %s 1", key, f);
    if (!r)
        return REEL_ERR(ECONNRESET);
    if (r->type != REDIS_REPLY_INTEGER)
        return reply_err(q, r, "HINCRBY");
    *out = r->integer;
    freeReplyObject(r);
    return 0;
}

int reel_redisq_begin(ReelRedisq *q, const ReelRedisqMsg *msg, const char *consumer,
                      int max_attempts, int *attempt, char *owner_out)
{
    char key[512], ms[32], reason[760], fowner[48], fattempts[48], what[48] = "";
    redisReply *r;
    ReelRedisqResult res = {0};
    int64_t n, total;
    int ret;

    export_key(key, sizeof(key), msg->user, msg->export_id);
    task_field(fowner, sizeof(fowner), "owner", msg);
    task_field(fattempts, sizeof(fattempts), "attempts", msg);
    if ((ret = hmget(q, &r, key, "state", "result", "cancel")) < 0)
        return ret;
    if (!field(r, 0) || field(r, 1)) {
        freeReplyObject(r);
        return REEL_REDISQ_DONE;
    }
    if (field(r, 2) && !strcmp(field(r, 2), "1")) {
        freeReplyObject(r);
        res.status = "cancelled";
        res.error = "Cancelled by user";
        res.worker = consumer;
        ret = reel_redisq_publish_result(q, msg->user, msg->export_id, &res);
        return ret < 0 ? ret : REEL_REDISQ_CANCELLED;
    }
    freeReplyObject(r);
    if (msg->part >= 0) {
        /* A previous owner recorded the part and died before its XACK. */
        if (!(r = cmd(q, "HEXISTS %s part:%d", key, msg->part)))
            return REEL_ERR(ECONNRESET);
        if (r->type != REDIS_REPLY_INTEGER)
            return reply_err(q, r, "HEXISTS");
        n = r->integer;
        freeReplyObject(r);
        if (n)
            return REEL_REDISQ_PART_DONE;
        snprintf(what, sizeof(what), " on clip %d", msg->part + 1);
    } else if (msg->task[0]) {
        snprintf(what, sizeof(what), " joining the clips");
    }
    if ((ret = hincr(q, key, fattempts, &n)) < 0)
        return ret;
    if (msg->task[0] && (ret = hincr(q, key, "attempts", &total)) < 0)
        return ret;
    *attempt = (int)n;
    if (n > max_attempts) {
        char last[512] = "the worker was lost";
        if ((ret = hmget(q, &r, key, "error", "owner", "state")) < 0)
            return ret;
        if (field(r, 0) && *field(r, 0))
            snprintf(last, sizeof(last), "%s", field(r, 0));
        freeReplyObject(r);
        snprintf(reason, sizeof(reason), "Export failed: gave up after %d attempts%s (last: %s)",
                 max_attempts, what, last);
        res.status = "error";
        res.error = reason;
        res.worker = consumer;
        ret = reel_redisq_publish_result(q, msg->user, msg->export_id, &res);
        return ret < 0 ? ret : REEL_REDISQ_GAVE_UP;
    }
    snprintf(owner_out, REEL_REDISQ_NAME_MAX + 16, "%s#%d", consumer, (int)n);
    snprintf(ms, sizeof(ms), "%lld", (long long)now_ms());
    return simple(
        q, cmd(q, "HSET %s state running %s %s started_ms %s", key, fowner, owner_out, ms), "HSET");
}

int reel_redisq_refresh(ReelRedisq *q, const ReelRedisqMsg *msg, const char *consumer,
                        const char *owner)
{
    char key[512], skey[256], fowner[48];
    redisReply *r;
    int ret, cancel;

    export_key(key, sizeof(key), msg->user, msg->export_id);
    stream_key(skey, sizeof(skey), msg->gpu_class);
    task_field(fowner, sizeof(fowner), "owner", msg);
    if ((ret = simple(q, cmd(q, "WATCH %s", key), "WATCH")) < 0)
        return ret;
    if ((ret = hmget(q, &r, key, fowner, "result", "cancel")) < 0)
        return ret;
    if (!field(r, 0) || strcmp(field(r, 0), owner) || field(r, 1)) {
        freeReplyObject(r);
        simple(q, cmd(q, "UNWATCH"), "UNWATCH");
        return REEL_REDISQ_LOST;
    }
    cancel = field(r, 2) && !strcmp(field(r, 2), "1");
    freeReplyObject(r);
    if ((ret = simple(q, cmd(q, "MULTI"), "MULTI")) < 0)
        return ret;
    if ((ret = simple(q,
                      cmd(q, "XCLAIM %s %s %s 0 %s JUSTID", skey, REEL_REDISQ_GROUP, consumer,
                          msg->stream_id),
                      "XCLAIM")) < 0)
        return ret;
    if (!(r = cmd(q, "EXEC")))
        return REEL_ERR(ECONNRESET);
    if (r->type == REDIS_REPLY_NIL) { /* the hash changed under us: look again next time */
        freeReplyObject(r);
        return cancel ? REEL_REDISQ_CANCEL : REEL_REDISQ_HELD;
    }
    if (r->type != REDIS_REPLY_ARRAY)
        return reply_err(q, r, "EXEC");
    /* XCLAIM of an entry that left the pending list returns nothing. */
    ret =
        r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 0
            ? REEL_REDISQ_LOST
        : cancel ? REEL_REDISQ_CANCEL
                 : REEL_REDISQ_HELD;
    freeReplyObject(r);
    return ret;
}

int reel_redisq_note_error(ReelRedisq *q, const char *user, const char *export_id,
                           const char *error)
{
    char key[512];
    export_key(key, sizeof(key), user, export_id);
    return simple(q, cmd(q, "HSET %s error %s", key, error ? error : ""), "HSET");
}

/* JSON string escaping for the small result object (no jansson needed here). */
static void json_str(char *out, size_t size, const char *s)
{
    size_t n = 0;
    if (size < 3)
        return;
    out[n++] = '"';
    for (; s && *s && n + 8 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, size - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n++] = '"';
    out[n] = 0;
}

int reel_redisq_publish_result(ReelRedisq *q, const char *user, const char *export_id,
                               const ReelRedisqResult *res)
{
    char key[512], json[2600], a[1100], b[1100], c[300], ms[32];
    redisReply *r;
    int won, ret;

    export_key(key, sizeof(key), user, export_id);
    snprintf(ms, sizeof(ms), "%lld", (long long)now_ms());
    json_str(c, sizeof(c), res->worker ? res->worker : "");
    if (!strcmp(res->status, "complete")) {
        json_str(a, sizeof(a), res->output_key ? res->output_key : "");
        json_str(b, sizeof(b), res->chapters_key ? res->chapters_key : "");
        snprintf(json, sizeof(json),
                 "{\"status\":\"complete\",\"output_key\":%s,\"chapters_key\":%s,\"worker\":%s}", a,
                 b, c);
    } else {
        json_str(a, sizeof(a), res->error ? res->error : "failed");
        snprintf(json, sizeof(json), "{\"status\":\"%s\",\"error\":%s,\"worker\":%s}", res->status,
                 a, c);
    }
    if (!(r = cmd(q, "HSETNX %s result %s", key, json)))
        return REEL_ERR(ECONNRESET);
    if (r->type != REDIS_REPLY_INTEGER)
        return reply_err(q, r, "HSETNX");
    won = r->integer == 1;
    freeReplyObject(r);
    if (!won)
        return 0;
    if (!strcmp(res->status, "complete"))
        ret = simple(q,
                     cmd(q, "HSET %s state complete output_key %s chapters_key %s completed_ms %s",
                         key, res->output_key ? res->output_key : "",
                         res->chapters_key ? res->chapters_key : "", ms),
                     "HSET");
    else
        ret = simple(q,
                     cmd(q, "HSET %s state %s error %s completed_ms %s", key, res->status,
                         res->error ? res->error : "failed", ms),
                     "HSET");
    if (ret >= 0)
        ret = simple(q, cmd(q, "EXPIRE %s %d", key, DONE_TTL_S), "EXPIRE");
    /* The result field is the truth; a failure after it only leaves state stale. */
    return ret < 0 ? ret : 1;
}

int reel_redisq_publish_progress(ReelRedisq *q, const char *user, const char *export_id,
                                 const char *frame)
{
    char chan[512], latest[520];
    redisReply *r;
    int ret = 0;

    snprintf(chan, sizeof(chan), "clipreel:progress:%s:%s", user, export_id);
    snprintf(latest, sizeof(latest), "%s:latest", chan);
    if (!q->ctx && (ret = connect_now(q)) < 0)
        return ret;
    redisAppendCommand(q->ctx, "SET %s %s EX %d", latest, frame, LATEST_TTL_S);
    redisAppendCommand(q->ctx, "PUBLISH %s %s", chan, frame);
    for (int i = 0; i < 2; i++) {
        void *reply = NULL;
        if (redisGetReply(q->ctx, &reply) != REDIS_OK) {
            set_err(q, REEL_ERR(ECONNRESET), "redis: %s", q->ctx->errstr);
            drop(q);
            return REEL_ERR(ECONNRESET);
        }
        r = reply;
        if (r->type == REDIS_REPLY_ERROR && ret == 0)
            ret = set_err(q, REEL_ERR(EPROTO), "progress: %s", r->str);
        freeReplyObject(r);
    }
    return ret;
}

int reel_redisq_get_latest(ReelRedisq *q, const char *user, const char *export_id, char **frame)
{
    redisReply *r;

    *frame = NULL;
    if (!(r = cmd(q, "GET clipreel:progress:%s:%s:latest", user, export_id)))
        return REEL_ERR(ECONNRESET);
    if (r->type == REDIS_REPLY_STRING && !(*frame = strdup(r->str))) {
        freeReplyObject(r);
        return REEL_ERR(ENOMEM);
    }
    if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)
        return reply_err(q, r, "GET");
    freeReplyObject(r);
    return 0;
}

void reel_redisq_state_uninit(ReelRedisqState *st)
{
    if (!st)
        return;
    free(st->result);
    memset(st, 0, sizeof(*st));
}

int reel_redisq_get_state(ReelRedisq *q, const char *user, const char *export_id,
                          ReelRedisqState *st)
{
    char key[512];
    redisReply *r;

    memset(st, 0, sizeof(*st));
    export_key(key, sizeof(key), user, export_id);
    if (!(r = cmd(q, "HGETALL %s", key)))
        return REEL_ERR(ECONNRESET);
    if (r->type != REDIS_REPLY_ARRAY)
        return reply_err(q, r, "HGETALL");
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const char *f = r->element[i]->str, *v = r->element[i + 1]->str;
        if (!f || !v)
            continue;
        if (!strcmp(f, "state"))
            snprintf(st->state, sizeof(st->state), "%s", v);
        else if (!strcmp(f, "owner"))
            snprintf(st->owner, sizeof(st->owner), "%s", v);
        else if (!strcmp(f, "class"))
            snprintf(st->gpu_class, sizeof(st->gpu_class), "%s", v);
        else if (!strcmp(f, "attempts"))
            st->attempts = (int)strtol(v, NULL, 10);
        else if (!strcmp(f, "cancel"))
            st->cancel = !strcmp(v, "1");
        else if (!strcmp(f, "error"))
            snprintf(st->error, sizeof(st->error), "%s", v);
        else if (!strcmp(f, "output_key"))
            snprintf(st->output_key, sizeof(st->output_key), "%s", v);
        else if (!strcmp(f, "chapters_key"))
            snprintf(st->chapters_key, sizeof(st->chapters_key), "%s", v);
        else if (!strcmp(f, "result"))
            st->result = strdup(v);
    }
    freeReplyObject(r);
    return st->state[0] ? 1 : 0;
}

int reel_redisq_cancel(ReelRedisq *q, const char *user, const char *export_id)
{
    char key[512];
    redisReply *r;
    int found;

    export_key(key, sizeof(key), user, export_id);
    /* HSET only on an existing hash: a cancel must not create a ghost export. */
    if (!(r = cmd(q, "EXISTS %s", key)))
        return REEL_ERR(ECONNRESET);
    if (r->type != REDIS_REPLY_INTEGER)
        return reply_err(q, r, "EXISTS");
    found = r->integer > 0;
    freeReplyObject(r);
    if (!found)
        return 0;
    return simple(q, cmd(q, "HSET %s cancel 1", key), "HSET") < 0 ? REEL_ERR(EPROTO) : 1;
}

/* ---- parallel mode: parts, the assemble trigger, combined progress ---------------------- */

/* Like cmd(), for a variable number of binary-safe arguments. */
static redisReply *cmd_argv(ReelRedisq *q, int argc, const char **argv)
{
    redisReply *r;

    if (!q->ctx && connect_now(q) < 0)
        return NULL;
    r = redisCommandArgv(q->ctx, argc, argv, NULL);
    if (!r) {
        set_err(q, REEL_ERR(ECONNRESET), "redis: %s",
                q->ctx->errstr[0] ? q->ctx->errstr : "I/O error");
        drop(q);
    }
    return r;
}

/*
 * KEYS: export hash, stream. ARGV: part index, part key, stream MAXLEN, then the
 * assemble entry's field/value pairs. The HSETNX makes parts_done count each
 * part once, so exactly one call sees it reach `parts` and adds the entry; the
 * script runs atomically, so the entry can never be lost between the two.
 */
static const char record_part_lua[] =
    "local h = KEYS[1]\n"
    "if redis.call('EXISTS', h) == 0 or redis.call('HEXISTS', h, 'result') == 1 then return 3 end\n"
    "if redis.call('HGET', h, 'cancel') == '1' then return 4 end\n"
    "if redis.call('HSETNX', h, 'part:' .. ARGV[1], ARGV[2]) == 0 then return 0 end\n"
    "local done = redis.call('HINCRBY', h, 'parts_done', 1)\n"
    "if done ~= tonumber(redis.call('HGET', h, 'parts') or '0') then return 1 end\n"
    "local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))\n"
    "redis.call('HSET', h, 'assemble_id', id)\n"
    "return 2\n";

/* The field/value pairs of a parallel export's stream entry for msg's export:
 * mode and part ("-1" for the assemble task) as given; the strings in b. */
typedef struct EntryBufs {
    char parts[16], ms[32];
} EntryBufs;

static int entry_fields(const char **argv, int argc, const ReelRedisqMsg *msg, const char *mode,
                        const char *part, EntryBufs *b)
{
    snprintf(b->parts, sizeof(b->parts), "%d", msg->parts);
    snprintf(b->ms, sizeof(b->ms), "%lld", (long long)now_ms());
    argv[argc++] = "export_id";
    argv[argc++] = msg->export_id;
    argv[argc++] = "user";
    argv[argc++] = msg->user;
    argv[argc++] = "project_id";
    argv[argc++] = msg->project_id;
    argv[argc++] = "project_name";
    argv[argc++] = msg->project_name;
    argv[argc++] = "job";
    argv[argc++] = msg->job_json;
    argv[argc++] = "sources";
    argv[argc++] = msg->sources_json;
    argv[argc++] = "mode";
    argv[argc++] = mode;
    argv[argc++] = "part";
    argv[argc++] = part;
    argv[argc++] = "parts";
    argv[argc++] = b->parts;
    argv[argc++] = "enqueued_ms";
    argv[argc++] = b->ms;
    return argc;
}

/* EVAL of a script whose reply is an integer: that, or a negative error. */
static int eval_int(ReelRedisq *q, int argc, const char **argv, const char *what)
{
    redisReply *r;
    int ret;

    if (!(r = cmd_argv(q, argc, argv)))
        return REEL_ERR(ECONNRESET);
    if (r->type != REDIS_REPLY_INTEGER)
        return reply_err(q, r, what);
    ret = (int)r->integer;
    freeReplyObject(r);
    return ret;
}

int reel_redisq_record_part(ReelRedisq *q, const ReelRedisqMsg *msg, const char *part_key)
{
    char key[512], skey[256], idx[16], maxlen[16];
    const char *argv[32];
    EntryBufs b;
    int argc = 0;

    if (msg->part < 0 || msg->parts < 1)
        return set_err(q, REEL_ERR(EINVAL), "record_part: not a part task");
    export_key(key, sizeof(key), msg->user, msg->export_id);
    stream_key(skey, sizeof(skey), msg->gpu_class);
    snprintf(idx, sizeof(idx), "%d", msg->part);
    snprintf(maxlen, sizeof(maxlen), "%d", STREAM_MAXLEN);
    argv[argc++] = "EVAL";
    argv[argc++] = record_part_lua;
    argv[argc++] = "2";
    argv[argc++] = key;
    argv[argc++] = skey;
    argv[argc++] = idx;
    argv[argc++] = part_key;
    argv[argc++] = maxlen;
    argc = entry_fields(argv, argc, msg, "assemble", "-1", &b);
    return eval_int(q, argc, argv, "EVAL record_part");
}

/*
 * KEYS: export hash, stream. ARGV: part index, the key the assembler found
 * gone, the most re-renders of one part, stream MAXLEN, then the part entry's
 * field/value pairs. Only while `part:{K}` still names the gone key (a second
 * assembler that saw the same loss finds it changed: 0), so one loss queues one
 * re-render. The part's own attempts start again; parts_done drops by one, so
 * the re-rendered part's record_part adds a new assemble entry.
 */
static const char rerender_part_lua[] =
    "local h = KEYS[1]\n"
    "if redis.call('EXISTS', h) == 0 or redis.call('HEXISTS', h, 'result') == 1 then return 3 end\n"
    "if redis.call('HGET', h, 'cancel') == '1' then return 4 end\n"
    "if redis.call('HGET', h, 'part:' .. ARGV[1]) ~= ARGV[2] then return 0 end\n"
    "if redis.call('HINCRBY', h, 'rerenders:part' .. ARGV[1], 1) > tonumber(ARGV[3]) then\n"
    "  return 5\n"
    "end\n"
    "redis.call('HDEL', h, 'part:' .. ARGV[1], 'attempts:part' .. ARGV[1], 'assemble_id',\n"
    "           'attempts:assemble')\n"
    "redis.call('HINCRBY', h, 'parts_done', -1)\n"
    "redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 5))\n"
    "return 1\n";

int reel_redisq_rerender_part(ReelRedisq *q, const ReelRedisqMsg *msg, int part,
                              const char *gone_key, int max_rerenders)
{
    char key[512], skey[256], idx[16], maxlen[16], most[16];
    const char *argv[32];
    EntryBufs b;
    int argc = 0;

    if (msg->part >= 0 || msg->parts < 1 || part < 0 || part >= msg->parts)
        return set_err(q, REEL_ERR(EINVAL), "rerender_part: not an assemble task or no part %d",
                       part);
    export_key(key, sizeof(key), msg->user, msg->export_id);
    stream_key(skey, sizeof(skey), msg->gpu_class);
    snprintf(idx, sizeof(idx), "%d", part);
    snprintf(maxlen, sizeof(maxlen), "%d", STREAM_MAXLEN);
    snprintf(most, sizeof(most), "%d", max_rerenders);
    argv[argc++] = "EVAL";
    argv[argc++] = rerender_part_lua;
    argv[argc++] = "2";
    argv[argc++] = key;
    argv[argc++] = skey;
    argv[argc++] = idx;
    argv[argc++] = gone_key;
    argv[argc++] = most;
    argv[argc++] = maxlen;
    argc = entry_fields(argv, argc, msg, "part", idx, &b);
    return eval_int(q, argc, argv, "EVAL rerender_part");
}

int reel_redisq_get_parts(ReelRedisq *q, const ReelRedisqMsg *msg, char ***keys)
{
    char key[512];
    char **out;
    int ret = 0;

    *keys = NULL;
    if (msg->parts < 1 || msg->parts > REEL_REDISQ_MAX_PARTS)
        return set_err(q, REEL_ERR(EINVAL), "get_parts: not a parallel export");
    if (!(out = calloc((size_t)msg->parts, sizeof(*out))))
        return set_err(q, REEL_ERR(ENOMEM), "out of memory");
    export_key(key, sizeof(key), msg->user, msg->export_id);
    for (int k = 0; k < msg->parts && ret == 0; k++) {
        redisReply *r = cmd(q, "HGET %s part:%d", key, k);
        if (!r) {
            ret = REEL_ERR(ECONNRESET);
        } else if (r->type == REDIS_REPLY_NIL) {
            ret = set_err(q, REEL_ERR(ENOENT), "part %d of %s/%s is not recorded", k, msg->user,
                          msg->export_id);
            freeReplyObject(r);
        } else if (r->type != REDIS_REPLY_STRING) {
            ret = reply_err(q, r, "HGET");
        } else {
            if (!(out[k] = strdup(r->str)))
                ret = set_err(q, REEL_ERR(ENOMEM), "out of memory");
            freeReplyObject(r);
        }
    }
    if (ret < 0) {
        for (int k = 0; k < msg->parts; k++)
            free(out[k]);
        free(out);
        return ret;
    }
    *keys = out;
    return 0;
}

/*
 * KEYS: export hash, ...:latest. ARGV: channel, task ("assemble" or the part
 * index), the task's percent, the frame, then one weight per part. Parts share
 * 0-90 % (a recorded part counts 100), the assemble task 90-100 %; `pct` keeps
 * the export's percent monotonic whatever order the workers' calls come in,
 * and since the PUBLISH is inside the script, subscribers see that order too.
 */
static const char task_progress_lua[] =
    "local h = KEYS[1]\n"
    "if redis.call('EXISTS', h) == 0 or redis.call('HEXISTS', h, 'result') == 1 then return 0 end\n"
    "local n = tonumber(redis.call('HGET', h, 'parts') or '0') or 0\n"
    "if n < 1 then return 0 end\n"
    "local p = tonumber(ARGV[3]) or 0\n"
    "local frame = cjson.decode(ARGV[4])\n"
    "local total\n"
    "if ARGV[2] == 'assemble' then\n"
    "  total = 90 + 10 * p / 100\n"
    "else\n"
    "  local f = 'pct:' .. ARGV[2]\n"
    "  if p > (tonumber(redis.call('HGET', h, f) or '0') or 0) then\n"
    "    redis.call('HSET', h, f, tostring(p))\n"
    "  end\n"
    "  local sum, done, run = 0, 0, {}\n"
    "  for k = 0, n - 1 do\n"
    "    local v\n"
    "    if redis.call('HEXISTS', h, 'part:' .. k) == 1 then\n"
    "      v = 100\n"
    "      done = done + 1\n"
    "    else\n"
    "      v = tonumber(redis.call('HGET', h, 'pct:' .. k) or '0') or 0\n"
    "      if redis.call('HEXISTS', h, 'owner:part' .. k) == 1 then run[#run + 1] = k + 1 end\n"
    "    end\n"
    "    sum = sum + v * (tonumber(ARGV[5 + k]) or (1 / n))\n"
    "  end\n"
    "  total = 90 * sum / 100\n"
    "  if done == n then\n"
    "    frame['message'] = 'All ' .. n .. ' clips rendered, joining them...'\n"
    "  elseif #run == 1 then\n"
    "    frame['message'] = 'Rendering clip ' .. run[1] .. ' of ' .. n .. ' (' .. done .. ' "
    "done)...'\n"
    "  elseif #run > 1 then\n"
    "    frame['message'] = 'Rendering clips ' .. table.concat(run, ', ') .. ' of ' .. n ..\n"
    "      ' in parallel (' .. done .. ' done)...'\n"
    "  else\n"
    "    frame['message'] = 'Waiting for workers (' .. done .. ' of ' .. n .. ' clips done)...'\n"
    "  end\n"
    "  if #run > 0 then frame['clip'] = run[1] end\n"
    "  frame['total_clips'] = n\n"
    "end\n"
    "local last = tonumber(redis.call('HGET', h, 'pct') or '0') or 0\n"
    "if total < last then total = last end\n"
    "if total > 99.9 then total = 99.9 end\n"
    "redis.call('HSET', h, 'pct', tostring(total))\n"
    "frame['progress'] = math.floor(total * 10 + 0.5) / 10\n"
    "local out = cjson.encode(frame)\n"
    "redis.call('SET', KEYS[2], out, 'EX', ARGV[5 + n] or 86400)\n"
    "redis.call('PUBLISH', ARGV[1], out)\n"
    "return 1\n";

int reel_redisq_publish_task_progress(ReelRedisq *q, const ReelRedisqMsg *msg, double task_pct,
                                      const double *weights, int nb_weights, const char *frame)
{
    char key[512], chan[512], latest[520], task[16], pct[32], ttl[16];
    char(*w)[32] = NULL;
    const char **argv = NULL;
    redisReply *r;
    int argc = 0, ret, n = msg->parts;

    if (n < 1 || n > REEL_REDISQ_MAX_PARTS || !frame)
        return set_err(q, REEL_ERR(EINVAL), "task progress: not a parallel export");
    if (!(argv = calloc((size_t)n + 16, sizeof(*argv))) || !(w = calloc((size_t)n, sizeof(*w)))) {
        free(argv);
        return set_err(q, REEL_ERR(ENOMEM), "out of memory");
    }
    export_key(key, sizeof(key), msg->user, msg->export_id);
    snprintf(chan, sizeof(chan), "clipreel:progress:%s:%s", msg->user, msg->export_id);
    snprintf(latest, sizeof(latest), "%s:latest", chan);
    if (msg->part >= 0)
        snprintf(task, sizeof(task), "%d", msg->part);
    else
        snprintf(task, sizeof(task), "assemble");
    snprintf(pct, sizeof(pct), "%.3f", task_pct < 0 ? 0.0 : task_pct > 100 ? 100.0 : task_pct);
    snprintf(ttl, sizeof(ttl), "%d", LATEST_TTL_S);
    argv[argc++] = "EVAL";
    argv[argc++] = task_progress_lua;
    argv[argc++] = "2";
    argv[argc++] = key;
    argv[argc++] = latest;
    argv[argc++] = chan;
    argv[argc++] = task;
    argv[argc++] = pct;
    argv[argc++] = frame;
    for (int k = 0; k < n; k++) {
        snprintf(w[k], sizeof(w[k]), "%.9f", weights && nb_weights == n ? weights[k] : 1.0 / n);
        argv[argc++] = w[k];
    }
    argv[argc++] = ttl;
    if (!(r = cmd_argv(q, argc, argv))) {
        ret = REEL_ERR(ECONNRESET);
    } else if (r->type != REDIS_REPLY_INTEGER) {
        ret = reply_err(q, r, "EVAL task_progress");
    } else {
        ret = (int)r->integer;
        freeReplyObject(r);
    }
    free(w);
    free(argv);
    return ret;
}
