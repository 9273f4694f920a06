/*
 * storage_int.h - private to src/storage: the backend table and the SigV4
 * helpers shared by the S3 backend and its tests.
 *
 * A backend is a const ReelStoreBackend (like FFmpeg's DNNModule): storage.c
 * picks one by cfg->kind, validates keys and arguments, then forwards. The
 * backend functions work on their own context (`priv`), never on the ReelStore,
 * and write their error sentence to the call's own errmsg buffer
 * (REEL_ERRMSG_SIZE); storage.c publishes it. So backends need no locking of
 * their own beyond what their context requires: the local context is immutable
 * after open and the S3 context too (each call makes its own curl handle).
 *
 * Contracts every backend keeps:
 *  - keys and prefixes given to it are already valid (storage.c checked them);
 *  - a negative return comes with a sentence in errmsg, except REEL_ERR(ENOTSUP)
 *    from local_path, which is a capability probe;
 *  - nothing half-written becomes visible under a key or at a get_file path.
 */
#ifndef REEL_STORAGE_STORAGE_INT_H
#define REEL_STORAGE_STORAGE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "storage/storage.h"

typedef int (*ReelStoreListCb)(void *opaque, const char *key, const ReelStoreInfo *info);

typedef struct ReelStoreBackend {
    const char *name; /**< the cfg->kind that selects it */
    /** Make *priv from cfg; on error *priv is left NULL and errmsg says why. */
    int (*open)(void **priv, const ReelStoreConfig *cfg, char *errmsg);
    /** Free *priv and NULL it. */
    void (*close)(void **priv);
    int (*put_file)(void *priv, const char *key, const char *path, char *errmsg);
    int (*get_file)(void *priv, const char *key, const char *path, char *errmsg);
    int64_t (*get_range)(void *priv, const char *key, int64_t offset, void *buf, size_t len,
                         char *errmsg);
    int (*head)(void *priv, const char *key, ReelStoreInfo *info, char *errmsg);
    int (*del)(void *priv, const char *key, char *errmsg);
    int (*list)(void *priv, const char *prefix, ReelStoreListCb cb, void *opaque, char *errmsg);
    /** now: seconds since the epoch, so tests can sign at a fixed time. */
    int (*presign_get)(void *priv, const char *key, int expires_s, int64_t now, char *url,
                       size_t size, char *errmsg);
    int (*local_path)(void *priv, const char *key, char *path, size_t size, char *errmsg);
} ReelStoreBackend;

extern const ReelStoreBackend reel_store_backend_local;
extern const ReelStoreBackend reel_store_backend_s3;

/** 1 if prefix is acceptable to reel_store_list (see storage.h). */
int reel_store_prefix_valid(const char *prefix);

/** reel_store_presign_get at a given time (known-answer tests). */
int reel_store_presign_get_at(ReelStore *st, const char *key, int expires_s, int64_t now, char *url,
                              size_t size);

/* ---- SigV4 (s3_sigv4.c) ----------------------------------------------------------------- */

/**
 * Append s to out (size bytes, NUL-terminated, starting at *len) percent-encoded
 * as SigV4 wants: A-Z a-z 0-9 - _ . ~ kept, '/' kept when keep_slash, every
 * other byte %XX in upper-case hex. Returns 0 or REEL_ERR(ENAMETOOLONG).
 */
int reel_s3_uri_encode(char *out, size_t size, size_t *len, const char *s, int keep_slash);

/** A SigV4 query-string presign request (GET, signed header host, UNSIGNED-PAYLOAD). */
typedef struct ReelS3Presign {
    const char *method; /**< "GET" */
    const char *scheme; /**< "http" or "https" */
    const char *host;   /**< as sent in Host: default ports left out */
    const char *path;   /**< canonical URI, already encoded ("/bucket/a%20b") */
    const char *region;
    const char *access_key;
    const char *secret_key;
    int64_t now; /**< seconds since the epoch */
    int expires_s;
} ReelS3Presign;

/**
 * Write the presigned URL of p into url (size bytes). Returns 0, or
 * REEL_ERR(ENAMETOOLONG) / REEL_ERR(EINVAL) (time out of range) /
 * REEL_ERR(ENOMEM) (OpenSSL failure).
 */
int reel_s3_presign(const ReelS3Presign *p, char *url, size_t size);

#endif
