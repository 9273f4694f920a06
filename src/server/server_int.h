/*
 * server_int.h - what the files of src/server share: the server object and the
 * HTTP helpers (http.c), the upload route (upload.c) and the frame builder.
 * Not part of the public API.
 */
#ifndef REEL_SERVER_SERVER_INT_H
#define REEL_SERVER_SERVER_INT_H

#include <limits.h>
#include <stdint.h>

#include <jansson.h>

#include "jobs/executor.h"
#include "jobs/jobstore.h"
#include "server/config.h"
#include "server/hub.h"
#include "server/server.h"

struct mg_connection;
struct mg_context;
struct ReelStore;

struct ReelServer {
    ReelServerConfig cfg;
    struct mg_context *mg;
    struct ReelStore *store;
    ReelJobStore *jobs;
    ReelExecutor *exec;
    ReelHub *hub;
    int port;
    int s3;                  /**< the store is S3 (results are redirected to) */
    char tmp_dir[PATH_MAX];  /**< <data>/tmp: uploads in progress */
    char work_dir[PATH_MAX]; /**< <data>/work: exports in progress */
    int64_t started_ms;
};

/* ---- http.c ------------------------------------------------------------------------------ */

/** Send body (stolen; NULL sends {}) as JSON with status. Returns status. */
int reel_http_json(struct mg_connection *conn, int status, json_t *body);

/** Send {"detail": "..."} with status (and Connection: close when close is set). */
int reel_http_error(struct mg_connection *conn, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Same, closing the connection afterwards (a body was left unread). */
int reel_http_error_close(struct mg_connection *conn, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * The same error written raw, for begin_request(): civetweb's response-header
 * API refuses to work on a request that asks for a WebSocket upgrade.
 */
int reel_http_reject(struct mg_connection *conn, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * Resolve the user of a request: bearer token (Authorization header, or the
 * `token` query parameter for media elements and WebSockets, which cannot set
 * headers) when auth is on; X-User-ID (default "a") when it is off. On failure
 * *status and detail say what to answer (401 or 400) and -1 is returned.
 */
int reel_http_user(const ReelServer *srv, const struct mg_connection *conn, char *user, int *status,
                   char *detail, size_t detail_size);

/**
 * Serve a local file with single-range support (200, 206 or 416); head: no body.
 * Returns the status sent.
 */
int reel_http_send_file(struct mg_connection *conn, const char *path, const char *content_type,
                        const char *filename, int head);

/** Read and discard up to max bytes of the request body, for at most max_ms. */
void reel_http_drain(struct mg_connection *conn, int64_t max, int max_ms);

/**
 * Run fn(arg) on a fresh thread with a full-size stack and wait for it.
 * civetweb's request threads have 100 KiB stacks: JSON parsing of client input
 * (recursive) and storage clients (libcurl) must not run on them.
 * @return 0, or REEL_ERR(EAGAIN) when no thread could be started.
 */
int reel_http_run_big_stack(void *(*fn)(void *), void *arg);

/**
 * URL-decode the path segment raw[0..n) into out (REEL_ID_MAX + 1 bytes) and
 * check it is a valid id (reel_server_id_valid): a %00, %2F or %2E%2E cannot
 * sneak through. @return 0, or -1 for an invalid id.
 */
int reel_http_decode_id(const char *raw, size_t n, char *out);

/** Format Unix ms as ISO 8601 UTC ("2026-11-24T15:03:24.120Z"); 0 gives JSON null. */
json_t *reel_http_time(int64_t ms);

/** project_id as the app sends it: a number when it is one, else the string; "" -> null. */
json_t *reel_http_project_id(const char *project_id);

/* ---- server.c ---------------------------------------------------------------------------- */

/** The hub key of an export: "user\nexport_id". */
void reel_server_hub_key(char *key, size_t size, const char *user, const char *export_id);

/* ---- upload.c ---------------------------------------------------------------------------- */

/** POST /api/export/multi-clip for an authenticated user. Returns the status sent. */
int reel_server_handle_upload(ReelServer *srv, struct mg_connection *conn, const char *user);

#endif
