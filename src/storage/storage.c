/*
 * storage.c - the object store front: picks a backend by kind, checks keys and
 * arguments once for every backend, forwards, and keeps the error sentence.
 *
 * DESIGN (errors across threads). A store is shared by the server's handler
 * threads, the upload threads and the export workers. Each backend call writes
 * its sentence into a buffer on the caller's stack; storage.c then copies it
 * (1) into a thread-local slot tagged with the store's id and (2) under the
 * store's lock into the store's shared errmsg. reel_store_errmsg returns the
 * thread-local sentence when this thread's last call on the store failed, else
 * a thread-local copy of the shared one. So a worker reads its own failure even
 * while other workers fail, and a thread that joins a helper thread (the
 * server's big-stack pattern) reads the helper's failure. No pointer into a
 * buffer that another thread writes ever escapes.
 */
#include "storage/storage.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "storage/storage_int.h"

struct ReelStore {
    const ReelStoreBackend *be;
    void *priv;           /* the backend's context */
    uint64_t id;          /* unique per store in this process (tags thread-local errors) */
    pthread_mutex_t lock; /* guards errmsg */
    char errmsg[REEL_ERRMSG_SIZE];
};

static const ReelStoreBackend *const backends[] = {
    &reel_store_backend_local,
    &reel_store_backend_s3,
};

static atomic_uint_fast64_t next_id = 1;

static _Thread_local struct {
    uint64_t id; /* store of this thread's last call (0: none) */
    int failed;  /* that call failed and msg holds its sentence */
    char msg[REEL_ERRMSG_SIZE];
    char copy[REEL_ERRMSG_SIZE]; /* what reel_store_errmsg returned from the shared slot */
} tl_err;

/* Record the outcome of one call; returns ret unchanged. */
static int64_t done(ReelStore *st, int64_t ret, char *msg, const char *op, const char *key)
{
    tl_err.id = st->id;
    tl_err.failed = 0;
    if (ret >= 0)
        return ret;
    if (!msg[0]) {
        /* defensive: a backend failed without a sentence */
        char e[128];
        snprintf(msg, REEL_ERRMSG_SIZE, "storage: %s %s: %s", op, key ? key : "",
                 reel_strerror((int)ret, e, sizeof(e)));
    }
    tl_err.failed = 1;
    memcpy(tl_err.msg, msg, REEL_ERRMSG_SIZE);
    pthread_mutex_lock(&st->lock);
    memcpy(st->errmsg, msg, REEL_ERRMSG_SIZE);
    pthread_mutex_unlock(&st->lock);
    return ret;
}

int reel_store_key_valid(const char *key)
{
    size_t n;
    const char *seg;

    if (!key || !*key || key[0] == '/' || (n = strlen(key)) > REEL_STORE_KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f || key[i] == '\\')
            return 0;
    seg = key;
    for (;;) {
        const char *slash = strchr(seg, '/');
        size_t len = slash ? (size_t)(slash - seg) : strlen(seg);
        if (len == 0 || (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
            return 0;
        if (!slash)
            return 1;
        seg = slash + 1;
    }
}

int reel_store_prefix_valid(const char *prefix)
{
    size_t n;
    const char *seg;

    if (!prefix)
        return 0;
    if (!*prefix)
        return 1;
    if (prefix[0] == '/' || (n = strlen(prefix)) > REEL_STORE_KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)prefix[i] < 0x20 || prefix[i] == 0x7f || prefix[i] == '\\')
            return 0;
    /* complete segments follow the key rules; the last (partial) one may be
     * empty or "." (".hidden" starts with it) but not "..", which only
     * ever names a parent */
    seg = prefix;
    for (;;) {
        const char *slash = strchr(seg, '/');
        size_t len = slash ? (size_t)(slash - seg) : strlen(seg);
        int dotdot = len == 2 && seg[0] == '.' && seg[1] == '.';
        if (!slash)
            return !dotdot;
        if (len == 0 || dotdot || (len == 1 && seg[0] == '.'))
            return 0;
        seg = slash + 1;
    }
}

int reel_store_open(ReelStore **out, const ReelStoreConfig *cfg, char *errmsg)
{
    const ReelStoreBackend *be = NULL;
    const char *kind = cfg->kind && *cfg->kind ? cfg->kind : "local";
    ReelStore *st;
    int ret;

    *out = NULL;
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
        if (!strcmp(kind, backends[i]->name))
            be = backends[i];
    if (!be)
        return reel_fail(errmsg, REEL_ERR(ENOTSUP),
                         "storage: unknown kind '%s' (expected local or s3)", kind);
    if (!(st = calloc(1, sizeof(*st))))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "storage: out of memory");
    st->be = be;
    st->id = atomic_fetch_add(&next_id, 1);
    if ((ret = pthread_mutex_init(&st->lock, NULL)) != 0) {
        free(st);
        return reel_fail(errmsg, REEL_ERR(ret), "storage: cannot create a lock");
    }
    if ((ret = be->open(&st->priv, cfg, errmsg)) < 0) {
        pthread_mutex_destroy(&st->lock);
        free(st);
        return ret;
    }
    *out = st;
    return 0;
}

void reel_store_close(ReelStore **pst)
{
    ReelStore *st = pst ? *pst : NULL;

    if (!st)
        return;
    st->be->close(&st->priv);
    pthread_mutex_destroy(&st->lock);
    free(st);
    *pst = NULL;
}

const char *reel_store_kind(const ReelStore *st)
{
    return st->be->name;
}

const char *reel_store_errmsg(const ReelStore *st)
{
    /* the lock is not part of the store's logical state: taking it on a const store is fine */
    ReelStore *mst = (ReelStore *)st;

    if (tl_err.id == st->id && tl_err.failed)
        return tl_err.msg;
    pthread_mutex_lock(&mst->lock);
    memcpy(tl_err.copy, st->errmsg, REEL_ERRMSG_SIZE);
    pthread_mutex_unlock(&mst->lock);
    return tl_err.copy;
}

static int bad_key(char *msg, const char *key)
{
    snprintf(msg, REEL_ERRMSG_SIZE, "storage: invalid key '%.300s'", key ? key : "(null)");
    return REEL_ERR(EINVAL);
}

int reel_store_put_file(ReelStore *st, const char *key, const char *path)
{
    char msg[REEL_ERRMSG_SIZE] = "";
    int ret;

    if (!reel_store_key_valid(key))
        ret = bad_key(msg, key);
    else
        ret = st->be->put_file(st->priv, key, path, msg);
    return (int)done(st, ret, msg, "put", key);
}

int reel_store_get_file(ReelStore *st, const char *key, const char *path)
{
    char msg[REEL_ERRMSG_SIZE] = "";
    int ret;

    if (!reel_store_key_valid(key))
        ret = bad_key(msg, key);
    else
        ret = st->be->get_file(st->priv, key, path, msg);
    return (int)done(st, ret, msg, "get", key);
}

int64_t reel_store_get_range(ReelStore *st, const char *key, int64_t offset, void *buf, size_t len)
{
    char msg[REEL_ERRMSG_SIZE] = "";
    int64_t ret;

    if (!reel_store_key_valid(key)) {
        ret = bad_key(msg, key);
    } else if (offset < 0 || (!buf && len)) {
        snprintf(msg, REEL_ERRMSG_SIZE, "storage: %s: invalid range", key);
        ret = REEL_ERR(EINVAL);
    } else {
        if (len > (size_t)INT64_MAX - (size_t)offset) /* offset + len must fit */
            len = (size_t)(INT64_MAX - offset);
        ret = st->be->get_range(st->priv, key, offset, buf, len, msg);
    }
    return done(st, ret, msg, "read", key);
}

int reel_store_head(ReelStore *st, const char *key, ReelStoreInfo *info)
{
    char msg[REEL_ERRMSG_SIZE] = "";
    ReelStoreInfo dummy;
    int ret;

    if (!reel_store_key_valid(key))
        ret = bad_key(msg, key);
    else
        ret = st->be->head(st->priv, key, info ? info : &dummy, msg);
    return (int)done(st, ret, msg, "head", key);
}

int reel_store_delete(ReelStore *st, const char *key)
{
    char msg[REEL_ERRMSG_SIZE] = "";
    int ret;

    if (!reel_store_key_valid(key))
        ret = bad_key(msg, key);
    else
        ret = st->be->del(st->priv, key, msg);
    return (int)done(st, ret, msg, "delete", key);
}

int reel_store_list(ReelStore *st, const char *prefix,
                    int (*cb)(void *opaque, const char *key, const ReelStoreInfo *info),
                    void *opaque)
{
    char msg[REEL_ERRMSG_SIZE] = "";
    int ret;

    if (!reel_store_prefix_valid(prefix) || !cb) {
        snprintf(msg, REEL_ERRMSG_SIZE, "storage: invalid prefix '%.300s'",
                 prefix ? prefix : "(null)");
        ret = REEL_ERR(EINVAL);
    } else {
        ret = st->be->list(st->priv, prefix, cb, opaque, msg);
    }
    /* a callback's own negative value is its business, not a store failure */
    if (ret < 0 && !msg[0])
        snprintf(msg, REEL_ERRMSG_SIZE, "storage: listing '%.300s' stopped by its callback (%d)",
                 prefix, ret);
    return (int)done(st, ret, msg, "list", prefix);
}

int reel_store_presign_get_at(ReelStore *st, const char *key, int expires_s, int64_t now, char *url,
                              size_t size)
{
    char msg[REEL_ERRMSG_SIZE] = "";
    int ret;

    if (!reel_store_key_valid(key)) {
        ret = bad_key(msg, key);
    } else if (expires_s < 1 || expires_s > 604800 || !url || !size) {
        snprintf(msg, REEL_ERRMSG_SIZE,
                 "storage: %s: a presigned URL lasts 1 s to 7 days, not %d s", key, expires_s);
        ret = REEL_ERR(EINVAL);
    } else {
        ret = st->be->presign_get(st->priv, key, expires_s, now, url, size, msg);
    }
    return (int)done(st, ret, msg, "presign", key);
}

int reel_store_presign_get(ReelStore *st, const char *key, int expires_s, char *url, size_t size)
{
    return reel_store_presign_get_at(st, key, expires_s, (int64_t)time(NULL), url, size);
}

int reel_store_local_path(ReelStore *st, const char *key, char *path, size_t size)
{
    char msg[REEL_ERRMSG_SIZE] = "";
    int ret;

    if (!reel_store_key_valid(key))
        ret = bad_key(msg, key);
    else
        ret = st->be->local_path(st->priv, key, path, size, msg);
    if (ret == REEL_ERR(ENOTSUP)) {
        /* a capability probe: not a failure worth a sentence */
        tl_err.id = st->id;
        tl_err.failed = 0;
        return ret;
    }
    return (int)done(st, ret, msg, "path", key);
}
