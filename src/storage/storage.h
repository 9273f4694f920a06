/*
 * storage.h - the object store interface (DESIGN section 5).
 *
 * One interface, two backends behind a const table of functions: a local
 * directory (the embedded default) and S3-compatible storage over libcurl with
 * AWS SigV4 (Cloudflare R2, AWS S3, MinIO, s3rver). Keys are '/'-separated
 * relative names; a key with "..", an empty segment, a leading '/', a
 * backslash or a control character is rejected (REEL_ERR(EINVAL)) before any
 * I/O. Transfers stream between files and the store: nothing is held whole in
 * memory. Transient failures (network, 5xx, 429) are retried with backoff.
 *
 * Thread-safety: a ReelStore may be used from several threads at once.
 */
#ifndef REEL_STORAGE_STORAGE_H
#define REEL_STORAGE_STORAGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct ReelStore ReelStore;

typedef struct ReelStoreConfig {
    const char *kind;       /**< "local" (default) or "s3" */
    /* local */
    const char *root;       /**< local: the directory holding the objects */
    /* s3 */
    const char *endpoint;   /**< e.g. "http://127.0.0.1:4569" or "https://<acct>.r2.cloudflarestorage.com" */
    const char *bucket;
    const char *region;     /**< "auto" for R2; default "us-east-1" */
    const char *access_key;
    const char *secret_key;
    int path_style;         /**< 1: endpoint/bucket/key (default); 0: bucket.endpoint/key */
    int64_t multipart_threshold; /**< bytes; puts above it use multipart upload (default 64 MiB) */
    int64_t part_size;      /**< default 16 MiB (>= 5 MiB) */
    int max_retries;        /**< default 4 */
} ReelStoreConfig;

typedef struct ReelStoreInfo {
    int64_t size;
    int64_t mtime;          /**< seconds since the epoch, 0 if unknown */
} ReelStoreInfo;

/** Open a store. errmsg (REEL_ERRMSG_SIZE, may be NULL) says why on failure. */
int reel_store_open(ReelStore **out, const ReelStoreConfig *cfg, char *errmsg);
void reel_store_close(ReelStore **store);

/** 1 if key is acceptable, 0 otherwise (see the header comment). */
int reel_store_key_valid(const char *key);

/**
 * Upload a file to key (streamed; multipart above the threshold). The object
 * appears atomically: readers see the old object or the whole new one.
 */
int reel_store_put_file(ReelStore *st, const char *key, const char *path);

/** Download key to a file (written to path.tmp then renamed). -ENOENT if absent. */
int reel_store_get_file(ReelStore *st, const char *key, const char *path);

/**
 * Read bytes [offset, offset + len) of key into buf; returns bytes read (short
 * at the end of the object), or a negative error (-ENOENT if absent).
 */
int64_t reel_store_get_range(ReelStore *st, const char *key, int64_t offset, void *buf,
                             size_t len);

/** Size and mtime of key; -ENOENT if absent. */
int reel_store_head(ReelStore *st, const char *key, ReelStoreInfo *info);

/** Delete key; deleting an absent key succeeds. */
int reel_store_delete(ReelStore *st, const char *key);

/**
 * List keys under prefix, calling cb for each (in lexical order); cb returning
 * non-zero stops the listing and that value is returned.
 */
int reel_store_list(ReelStore *st, const char *prefix,
                    int (*cb)(void *opaque, const char *key, const ReelStoreInfo *info),
                    void *opaque);

/**
 * A presigned GET URL valid for expires_s seconds in url (size bytes).
 * Local store: -ENOTSUP (the server streams the file itself instead).
 */
int reel_store_presign_get(ReelStore *st, const char *key, int expires_s, char *url,
                           size_t size);

/**
 * Local store only: the filesystem path of key (for zero-copy reads by the
 * engine and the HTTP server). S3: -ENOTSUP.
 */
int reel_store_local_path(ReelStore *st, const char *key, char *path, size_t size);

/** Last error text of this store (thread-local per store is not kept: best effort). */
const char *reel_store_errmsg(const ReelStore *st);

#endif
