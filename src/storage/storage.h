/*
 * storage.h - the object store interface (DESIGN section 5).
 *
 * One interface, two backends behind a const table of functions (storage_int.h):
 * a local directory (the embedded default) and S3-compatible storage over
 * libcurl with AWS SigV4 (Cloudflare R2, AWS S3, MinIO, s3rver). Keys are
 * '/'-separated relative names of at most 1024 bytes; a key with a "." or ".."
 * segment, an empty segment (leading, trailing or doubled '/'), a backslash or a
 * control character is rejected (REEL_ERR(EINVAL)) before any I/O. Transfers
 * stream between files and the store: nothing is held whole in memory.
 * Transient failures (connection errors, HTTP 5xx, 429) are retried with
 * exponential backoff. docs/internals/storage.md has the details.
 *
 * Errors: REEL_ERR(ENOENT) absent object, REEL_ERR(EACCES) refused by the store
 * (HTTP 401/403: bad credentials or signature), REEL_ERR(EINVAL) bad key or
 * argument, REEL_ERR(ENOTSUP) operation the backend lacks, other negative errno
 * values for I/O and network failures. Every failure leaves a sentence in the
 * store's errmsg (reel_store_errmsg) fit to show a user.
 *
 * Thread-safety: a ReelStore may be used from several threads at once, except
 * reel_store_close, which must not race with any other call.
 */
#ifndef REEL_STORAGE_STORAGE_H
#define REEL_STORAGE_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#define REEL_STORE_KEY_MAX 1024 /**< longest key in bytes (S3's limit) */

typedef struct ReelStore ReelStore;

/*
 * Zero means "the default" for every numeric field, so `ReelStoreConfig c = {0}`
 * plus the strings is a complete configuration.
 */
typedef struct ReelStoreConfig {
    const char *kind; /**< "local" (default when NULL or "") or "s3" */
    /* local */
    const char *root; /**< local: the directory holding the objects (created if absent) */
    /* s3 */
    const char
        *endpoint; /**< e.g. "http://127.0.0.1:4569" or "https://<acct>.r2.cloudflarestorage.com" */
    const char *bucket;
    const char *region; /**< "auto" for R2; default "us-east-1" */
    const char *access_key;
    const char *secret_key;
    int path_style; /**< 1: endpoint/bucket/key (the server's default); 0: bucket.endpoint/key */
    int64_t multipart_threshold; /**< bytes; puts above it use multipart upload (default 64 MiB) */
    int64_t part_size;           /**< default 16 MiB; at least 5 MiB (S3's minimum) */
    int max_retries;             /**< retries after the first try; 0 = default 4, < 0 = none */
    int retry_base_ms;           /**< first backoff delay, doubled per retry; default 200 */
    int list_page;               /**< keys per ListObjectsV2 request, 1..1000; default 1000 */
} ReelStoreConfig;

typedef struct ReelStoreInfo {
    int64_t size;
    int64_t mtime; /**< seconds since the epoch, 0 if unknown */
} ReelStoreInfo;

/**
 * Open a store. Nothing is contacted yet: an S3 store with a wrong endpoint or
 * credentials opens fine and its first request fails.
 * @param errmsg REEL_ERRMSG_SIZE bytes, may be NULL: says why on failure.
 * @return 0, REEL_ERR(EINVAL) for a bad configuration (missing root, bucket,
 *         endpoint or keys; part size below 5 MiB), REEL_ERR(ENOTSUP) for an
 *         unknown kind, or the error of creating the local root.
 */
int reel_store_open(ReelStore **out, const ReelStoreConfig *cfg, char *errmsg);

/** Free the store and set *store to NULL; NULL and *store == NULL are fine. */
void reel_store_close(ReelStore **store);

/** 1 if key is acceptable, 0 otherwise (see the header comment). Pure. */
int reel_store_key_valid(const char *key);

/**
 * Upload a file to key (streamed; multipart above the threshold). The object
 * appears atomically: readers see the old object or the whole new one. A
 * failed multipart upload is aborted, so no parts are left behind.
 */
int reel_store_put_file(ReelStore *st, const char *key, const char *path);

/**
 * Download key to a file: written to a temporary name next to path, then
 * renamed, so path holds the old file or the whole object. -ENOENT if absent.
 */
int reel_store_get_file(ReelStore *st, const char *key, const char *path);

/**
 * Read bytes [offset, offset + len) of key into buf; returns bytes read (short
 * at the end of the object, 0 at or past it), or a negative error (-ENOENT if
 * absent, -EINVAL for a negative offset).
 */
int64_t reel_store_get_range(ReelStore *st, const char *key, int64_t offset, void *buf, size_t len);

/** Size and mtime of key; -ENOENT if absent. */
int reel_store_head(ReelStore *st, const char *key, ReelStoreInfo *info);

/** Delete key; deleting an absent key succeeds. */
int reel_store_delete(ReelStore *st, const char *key);

/**
 * List keys starting with prefix ("" = all), calling cb for each in byte-wise
 * lexical order (S3's order). cb returning non-zero stops the listing and that
 * value is returned. A prefix follows the key rules, except that it may be
 * empty, end with '/' and end in a partial segment ("u1/temp/multi_" is fine).
 * cb may delete the key it is given.
 */
int reel_store_list(ReelStore *st, const char *prefix,
                    int (*cb)(void *opaque, const char *key, const ReelStoreInfo *info),
                    void *opaque);

/**
 * A presigned GET URL valid for expires_s seconds (1..604800, S3's limit) in
 * url (size bytes; -ENAMETOOLONG if it does not fit). Computed locally: no
 * request is made, and an absent key gives a URL that answers 404.
 * Local store: -ENOTSUP (the server streams the file itself instead).
 */
int reel_store_presign_get(ReelStore *st, const char *key, int expires_s, char *url, size_t size);

/**
 * Local store only: the filesystem path of key (for zero-copy reads by the
 * engine and the HTTP server). S3: -ENOTSUP, without touching the errmsg.
 */
int reel_store_local_path(ReelStore *st, const char *key, char *path, size_t size);

/** "local" or "s3". */
const char *reel_store_kind(const ReelStore *st);

/**
 * The error sentence of the last failed call. When the calling thread's own
 * last call on this store failed, that call's message; otherwise the store's
 * most recent failure from any thread (so a thread that joins a worker which
 * used the store reads the worker's message). The pointer is thread-local and
 * valid until this thread's next call of reel_store_errmsg. "" when none.
 */
const char *reel_store_errmsg(const ReelStore *st);

#endif
