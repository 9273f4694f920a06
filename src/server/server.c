/*
 * server.c - start/stop of `clipreel serve`, the routes, the WebSocket
 * endpoints and the progress frames.
 *
 * Routes (DESIGN section 6; docs/service.md has the details):
 *
 *   GET    /api/health
 *   POST   /api/export/multi-clip            upload.c
 *   GET    /api/exports/active
 *   GET    /api/exports/recent?hours=N       (default 24; newest first, at most 200)
 *   GET    /api/exports/{id}
 *   DELETE /api/exports/{id}                 cancel
 *   GET    /api/exports/{id}/output          the MP4 (Range) or 302 to a presigned URL
 *   GET    /api/exports/{id}/chapters.vtt
 *   WS     /ws/export/{id}
 *   GET    /, /index.html, /app.js, /style.css   the embedded web page
 *
 * Every export belongs to the user who posted it: records, frames and objects
 * are looked up by (user, export_id), so another user's export is simply not
 * found (404) and two users may use the same export id.
 *
 * DESIGN (connections): civetweb gives each request, and each open WebSocket,
 * one of its pool threads. begin_request() runs first for every request and
 * rejects what no route may see (dot segments in the raw path) and WebSocket
 * upgrades that are not authorised, with a proper HTTP status, before civetweb
 * completes a handshake. A WebSocket is attached to the hub in the ready
 * handler and detached in the close handler; writes to it come from the hub's
 * sender threads (hub.h) and from the `ping` handler, which civetweb
 * serialises with its per-connection lock.
 */
#include "server/server_int.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <civetweb.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "server/web_assets.h"
#include "storage/storage.h"

#define LOG_TAG "server"
#define DETAIL_SIZE 256
#define HTTP_RESERVED_THREADS 16 /* civetweb threads never given to WebSockets */

void reel_server_hub_key(char *key, size_t size, const char *user, const char *export_id)
{
    snprintf(key, size, "%s\n%s", user, export_id);
}

/* ---- frames ------------------------------------------------------------------------------ */

static json_t *num_or_null(double v, int valid)
{
    return valid && isfinite(v) ? json_real(round(v * 10.0) / 10.0) : json_null();
}

/*
 * The app's progress frame (reel-ballers-contract section 5) plus the fields
 * of DESIGN section 6. A cancelled export is reported as an error frame
 * ("Cancelled by user", as the app's DELETE did) with phase "cancelled", so the
 * editor, which knows only processing/complete/error, stops waiting.
 */
static char *make_frame(ReelServer *srv, ReelExecEventKind kind, const ReelExportRecord *rec,
                        const char *phase, double percent, int clip, int total_clips,
                        int64_t frames_done, int64_t frames_total, double eta_s,
                        const char *message, const char *error)
{
    const char *status = kind == REEL_EXEC_PROGRESS   ? "processing"
                         : kind == REEL_EXEC_COMPLETE ? "complete"
                                                      : "error";
    json_t *o = json_object();
    char *text;

    (void)srv;
    if (!o)
        return NULL;
    json_object_set_new(o, "progress",
                        kind == REEL_EXEC_COMPLETE ? json_integer(100)
                        : kind == REEL_EXEC_ERROR  ? json_integer(0)
                                                   : num_or_null(percent, 1));
    json_object_set_new(o, "message", json_string(message ? message : ""));
    json_object_set_new(o, "status", json_string(status));
    json_object_set_new(o, "phase", json_string(phase ? phase : ""));
    json_object_set_new(o, "projectId", reel_http_project_id(rec->project_id));
    json_object_set_new(o, "projectName",
                        rec->project_name[0] ? json_string(rec->project_name) : json_null());
    json_object_set_new(o, "clip", clip > 0 ? json_integer(clip) : json_null());
    json_object_set_new(o, "total_clips",
                        total_clips > 0 ? json_integer(total_clips) : json_null());
    json_object_set_new(o, "current_frame",
                        frames_total > 0 ? json_integer(frames_done) : json_null());
    json_object_set_new(o, "total_frames",
                        frames_total > 0 ? json_integer(frames_total) : json_null());
    json_object_set_new(o, "eta_s", num_or_null(eta_s, eta_s >= 0));
    json_object_set_new(o, "export_id", json_string(rec->export_id));
    json_object_set_new(o, "type", json_string("multi_clip"));
    if (kind == REEL_EXEC_COMPLETE) {
        char url[REEL_ID_MAX * 3 + 64];
        snprintf(url, sizeof(url), "/api/exports/%s/output", rec->export_id);
        json_object_set_new(o, "output_url", json_string(url));
        if (rec->chapters_key[0]) {
            snprintf(url, sizeof(url), "/api/exports/%s/chapters.vtt", rec->export_id);
            json_object_set_new(o, "chapters_url", json_string(url));
        }
        json_object_set_new(o, "output_filename", json_string(rec->output_filename));
        json_object_set_new(o, "outputFilename", json_string(rec->output_filename));
    }
    if (kind == REEL_EXEC_ERROR || kind == REEL_EXEC_CANCELLED)
        json_object_set_new(o, "error", json_string(error ? error : message ? message : "failed"));
    text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(o);
    return text;
}

/* Executor events (worker threads): publish to the hub; never blocks. */
static void on_exec_event(void *opaque, const ReelExecEvent *ev)
{
    ReelServer *srv = opaque;
    char key[2 * REEL_ID_MAX + 2];
    char *frame =
        make_frame(srv, ev->kind, ev->rec, ev->phase, ev->percent, ev->clip, ev->total_clips,
                   ev->frames_done, ev->frames_total, ev->eta_s, ev->message, ev->error);

    if (!frame)
        return;
    reel_server_hub_key(key, sizeof(key), ev->rec->user, ev->rec->export_id);
    reel_hub_publish(srv->hub, key, frame, ev->kind != REEL_EXEC_PROGRESS, 0);
    free(frame);
}

/* Frames from the scale-out workers (remote threads): already in the editor's shape. */
static void on_remote_frame(void *opaque, const char *user, const char *export_id,
                            const char *frame, int terminal)
{
    ReelServer *srv = opaque;
    char key[2 * REEL_ID_MAX + 2];

    reel_server_hub_key(key, sizeof(key), user, export_id);
    reel_hub_publish(srv->hub, key, frame, terminal, 0);
}

/* A frame rebuilt from a row, for a client that joins when the hub has none. */
static char *frame_from_record(ReelServer *srv, const ReelExportRecord *rec, int *terminal)
{
    ReelExecEventKind kind = rec->status == REEL_EXPORT_COMPLETE    ? REEL_EXEC_COMPLETE
                             : rec->status == REEL_EXPORT_ERROR     ? REEL_EXEC_ERROR
                             : rec->status == REEL_EXPORT_CANCELLED ? REEL_EXEC_CANCELLED
                                                                    : REEL_EXEC_PROGRESS;
    const char *message = kind == REEL_EXEC_COMPLETE ? "Multi-clip export complete!"
                          : kind == REEL_EXEC_PROGRESS
                              ? (rec->status == REEL_EXPORT_PROCESSING ? "Processing..." : "Queued")
                          : kind == REEL_EXEC_CANCELLED ? "Export cancelled"
                                                        : rec->error;

    *terminal = kind != REEL_EXEC_PROGRESS;
    return make_frame(srv, kind, rec, rec->phase[0] ? rec->phase : "queued", rec->progress, 0, 0, 0,
                      0, -1, message, rec->error[0] ? rec->error : NULL);
}

/* ---- export records as JSON ------------------------------------------------------------- */

static json_t *record_json(const ReelExportRecord *rec)
{
    json_t *o = json_object();

    if (!o)
        return NULL;
    json_object_set_new(o, "job_id", json_string(rec->export_id));
    json_object_set_new(o, "export_id", json_string(rec->export_id));
    json_object_set_new(o, "project_id", reel_http_project_id(rec->project_id));
    json_object_set_new(o, "project_name",
                        rec->project_name[0] ? json_string(rec->project_name) : json_null());
    json_object_set_new(o, "type", json_string(rec->type));
    json_object_set_new(o, "status", json_string(reel_export_status_name(rec->status)));
    json_object_set_new(o, "error", rec->error[0] ? json_string(rec->error) : json_null());
    json_object_set_new(o, "output_video_id", json_null());
    json_object_set_new(o, "output_filename",
                        rec->output_filename[0] ? json_string(rec->output_filename) : json_null());
    json_object_set_new(o, "created_at", reel_http_time(rec->created_ms));
    json_object_set_new(o, "started_at", reel_http_time(rec->started_ms));
    json_object_set_new(o, "completed_at", reel_http_time(rec->completed_ms));
    json_object_set_new(o, "phase", json_string(rec->phase[0] ? rec->phase : "queued"));
    json_object_set_new(o, "stage", json_string(rec->phase[0] ? rec->phase : "queued"));
    json_object_set_new(o, "progress", json_real(round(rec->progress * 10.0) / 10.0));
    json_object_set_new(o, "attempts", json_integer(rec->attempts));
    if (rec->status == REEL_EXPORT_COMPLETE) {
        char url[REEL_ID_MAX + 64];
        snprintf(url, sizeof(url), "/api/exports/%s/output", rec->export_id);
        json_object_set_new(o, "output_url", json_string(url));
    }
    return o;
}

/* ---- routes ------------------------------------------------------------------------------ */

static int authenticate(ReelServer *srv, struct mg_connection *conn, char *user)
{
    char detail[DETAIL_SIZE];
    int status;

    if (reel_http_user(srv, conn, user, &status, detail, sizeof(detail)) < 0) {
        reel_http_error(conn, status, "%s", detail);
        return status;
    }
    return 0;
}

static int h_health(struct mg_connection *conn, void *cbdata)
{
    ReelServer *srv = cbdata;
    int pending, running, capacity, channels, clients;

    reel_executor_stats(srv->exec, &pending, &running, &capacity);
    reel_hub_stats(srv->hub, &channels, &clients, NULL);
    return reel_http_json(conn, 200,
                          json_pack("{s:s,s:s,s:I,s:{s:i,s:i,s:i,s:i},s:{s:i,s:i},s:s,s:b}",
                                    "status", "healthy", "version", "0.1.0", "uptime_s",
                                    (json_int_t)((reel_jobstore_now_ms() - srv->started_ms) / 1000),
                                    "exports", "workers", srv->cfg.workers, "running", running,
                                    "pending", pending, "capacity", capacity, "websockets",
                                    "exports", channels, "clients", clients, "storage",
                                    srv->s3 ? "s3" : "local", "auth", srv->cfg.auth));
}

static int h_upload(struct mg_connection *conn, void *cbdata)
{
    ReelServer *srv = cbdata;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    char user[REEL_ID_MAX + 1];
    int status;

    if (strcmp(ri->request_method, "POST")) {
        mg_response_header_start(conn, 405);
        mg_response_header_add(conn, "Allow", "POST", -1);
        mg_response_header_add(conn, "Content-Length", "0", -1);
        mg_response_header_send(conn);
        return 405;
    }
    if ((status = authenticate(srv, conn, user)))
        return status;
    return reel_server_handle_upload(srv, conn, user);
}

typedef struct ActiveList {
    json_t *list;
} ActiveList;

static int add_active(void *opaque, const ReelExportRecord *rec)
{
    ActiveList *a = opaque;
    json_array_append_new(a->list, record_json(rec));
    return 0;
}

typedef struct FetchWork {
    ReelServer *srv;
    const char *key;
    int vtt;
    char *buf;      /* vtt: the file (1 MiB at most) */
    int64_t len;    /* or a negative error */
    char url[4096]; /* mp4: the presigned URL */
} FetchWork;

static void *fetch_main(void *arg)
{
    FetchWork *f = arg;

    if (f->vtt) {
        if (!(f->buf = malloc(1 << 20))) {
            f->len = REEL_ERR(ENOMEM);
            return NULL;
        }
        f->len = reel_store_get_range(f->srv->store, f->key, 0, f->buf, 1 << 20);
    } else {
        f->len = reel_store_presign_get(f->srv->store, f->key, f->srv->cfg.presign_ttl_s, f->url,
                                        sizeof(f->url));
    }
    return NULL;
}

static int send_output(ReelServer *srv, struct mg_connection *conn, const ReelExportRecord *rec,
                       int vtt, int head)
{
    const char *key = vtt ? rec->chapters_key : rec->output_key;
    const char *type = vtt ? "text/vtt; charset=utf-8" : "video/mp4";
    const char *name = strrchr(key, '/');
    FetchWork *f;
    char path[PATH_MAX], len[32];
    int status;

    if (rec->status != REEL_EXPORT_COMPLETE)
        return reel_http_error(conn, 409, "Export %s is not complete (status %s)", rec->export_id,
                               reel_export_status_name(rec->status));
    if (!key[0])
        return reel_http_error(conn, 404, "This export has no chapters");
    name = name ? name + 1 : key;
    if (reel_store_local_path(srv->store, key, path, sizeof(path)) == 0)
        return reel_http_send_file(conn, path, type, name, head);

    /* S3: the MP4 by redirect to a presigned URL; the small VTT proxied, so that
     * <track> works without CORS on the bucket. */
    if (!(f = calloc(1, sizeof(*f))))
        return reel_http_error(conn, 500, "Out of memory");
    f->srv = srv;
    f->key = key;
    f->vtt = vtt;
    if (reel_http_run_big_stack(fetch_main, f) < 0) {
        status = reel_http_error(conn, 503, "Server busy: try again");
    } else if (f->len < 0) {
        status = reel_http_error(conn, f->len == REEL_ERR(ENOENT) ? 404 : 502,
                                 "Output unavailable: %s", reel_store_errmsg(srv->store));
    } else if (vtt) {
        mg_response_header_start(conn, 200);
        mg_response_header_add(conn, "Content-Type", type, -1);
        snprintf(len, sizeof(len), "%" PRId64, f->len);
        mg_response_header_add(conn, "Content-Length", len, -1);
        mg_response_header_send(conn);
        if (!head)
            mg_write(conn, f->buf, (size_t)f->len);
        status = 200;
    } else {
        mg_response_header_start(conn, 302);
        mg_response_header_add(conn, "Location", f->url, -1);
        mg_response_header_add(conn, "Cache-Control", "no-store", -1);
        mg_response_header_add(conn, "Content-Length", "0", -1);
        mg_response_header_send(conn);
        status = 302;
    }
    free(f->buf);
    free(f);
    return status;
}

/*
 * The store and the executor's clean-up run on a full-size stack: civetweb's
 * request threads have 100 KiB, too little for a storage client.
 */
typedef struct CancelWork {
    ReelServer *srv;
    const char *user;
    const char *export_id;
    int result;
} CancelWork;

static void *cancel_main(void *arg)
{
    CancelWork *c = arg;
    ReelServer *srv = c->srv;
    ReelExportRecord full;

    c->result = reel_executor_cancel(srv->exec, c->user, c->export_id);
    if (c->result >= 0)
        return NULL;
    /* Not in the executor: still uploading, or pending without a worker (server
     * stopping). Finish the row here; an upload in progress notices and cleans up. */
    if (reel_jobstore_finish(srv->jobs, c->user, c->export_id, REEL_EXPORT_CANCELLED,
                             "Cancelled by user", NULL, NULL) == 0 &&
        reel_jobstore_get(srv->jobs, c->user, c->export_id, &full, REEL_JOBSTORE_WITH_JSON) == 0) {
        ReelExecEvent ev = {.kind = REEL_EXEC_CANCELLED,
                            .rec = &full,
                            .phase = "cancelled",
                            .eta_s = -1,
                            .message = "Export cancelled",
                            .error = "Cancelled by user"};
        if (full.sources_json &&
            reel_executor_delete_sources(srv->store, c->user, c->export_id, full.sources_json) >= 0)
            reel_jobstore_set_sources_deleted(srv->jobs, c->user, c->export_id);
        on_exec_event(srv, &ev);
        reel_jobstore_record_uninit(&full);
    }
    c->result = REEL_EXEC_CANCELLED_NOW;
    return NULL;
}

static int cancel_export(ReelServer *srv, struct mg_connection *conn, const char *user,
                         const ReelExportRecord *rec)
{
    CancelWork c = {srv, user, rec->export_id, 0};

    if (reel_export_status_terminal(rec->status))
        return reel_http_error(conn, 409, "Export %s is already %s", rec->export_id,
                               reel_export_status_name(rec->status));
    if (reel_http_run_big_stack(cancel_main, &c) < 0)
        return reel_http_error(conn, 503, "Server busy: try again");
    if (c.result == REEL_EXEC_CANCELLING)
        return reel_http_json(
            conn, 202, json_pack("{s:s,s:s}", "status", "cancelling", "export_id", rec->export_id));
    return reel_http_json(
        conn, 200, json_pack("{s:s,s:s}", "status", "cancelled", "export_id", rec->export_id));
}

/* /api/exports/... */
static int h_exports(struct mg_connection *conn, void *cbdata)
{
    ReelServer *srv = cbdata;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *method = ri->request_method;
    const char *path = ri->local_uri_raw ? ri->local_uri_raw : ri->local_uri;
    char user[REEL_ID_MAX + 1], id[REEL_ID_MAX + 1], sub[32] = "";
    const char *rest, *slash;
    ReelExportRecord rec;
    size_t n;
    int status, get = !strcmp(method, "GET"), head = !strcmp(method, "HEAD");

    if ((status = authenticate(srv, conn, user)))
        return status;
    rest = path + strlen("/api/exports");
    if (*rest == '/')
        rest++;
    if (!*rest)
        return reel_http_error(conn, 404, "Not found");
    if (!strcmp(rest, "active") || !strcmp(rest, "active/")) {
        ActiveList a;
        if (!get)
            return reel_http_error(conn, 405, "Method not allowed");
        a.list = json_array();
        reel_jobstore_list(srv->jobs, user,
                           (1u << REEL_EXPORT_RECEIVING) | (1u << REEL_EXPORT_PENDING) |
                               (1u << REEL_EXPORT_PROCESSING),
                           add_active, &a);
        return reel_http_json(conn, 200, json_pack("{s:o}", "exports", a.list));
    }
    if (!strcmp(rest, "recent") || !strcmp(rest, "recent/")) {
        ActiveList a;
        char hours[32] = "";
        double h = 24;
        if (!get)
            return reel_http_error(conn, 405, "Method not allowed");
        if (ri->query_string && mg_get_var(ri->query_string, strlen(ri->query_string), "hours",
                                           hours, sizeof(hours)) > 0) {
            char *end;
            h = strtod(hours, &end);
            if (end == hours || *end || !(h > 0 && h <= 24 * 366))
                return reel_http_error(conn, 400, "hours: a number of hours, up to a year");
        }
        a.list = json_array();
        reel_jobstore_list_recent(srv->jobs, user, reel_jobstore_now_ms() - (int64_t)(h * 3600e3),
                                  200, add_active, &a);
        return reel_http_json(conn, 200, json_pack("{s:o}", "exports", a.list));
    }
    slash = strchr(rest, '/');
    n = slash ? (size_t)(slash - rest) : strlen(rest);
    if (reel_http_decode_id(rest, n, id) < 0)
        return reel_http_error(conn, 400,
                               "Invalid export id: use 1-128 characters of A-Z a-z 0-9 _ . - "
                               "(no '..')");
    if (slash && strlen(slash + 1) >= sizeof(sub))
        return reel_http_error(conn, 404, "Not found");
    if (slash)
        snprintf(sub, sizeof(sub), "%s", slash + 1);
    if (reel_jobstore_get(srv->jobs, user, id, &rec, 0) < 0)
        return reel_http_error(conn, 404, "Export not found");
    if (!sub[0]) {
        if (get)
            return reel_http_json(conn, 200, record_json(&rec));
        if (!strcmp(method, "DELETE"))
            return cancel_export(srv, conn, user, &rec);
        return reel_http_error(conn, 405, "Method not allowed");
    }
    if (!strcmp(sub, "output") || !strcmp(sub, "chapters.vtt")) {
        if (!get && !head)
            return reel_http_error(conn, 405, "Method not allowed");
        return send_output(srv, conn, &rec, !strcmp(sub, "chapters.vtt"), head);
    }
    return reel_http_error(conn, 404, "Not found");
}

/* The web page; anything else unknown is a JSON 404. */
static int h_static(struct mg_connection *conn, void *cbdata)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *path = ri->local_uri;
    char len[32];

    (void)cbdata;
    if (!strcmp(path, "/"))
        path = "/index.html";
    for (const ReelWebAsset *a = reel_web_assets; a->path; a++) {
        if (strcmp(a->path, path))
            continue;
        if (strcmp(ri->request_method, "GET") && strcmp(ri->request_method, "HEAD"))
            return reel_http_error(conn, 405, "Method not allowed");
        mg_response_header_start(conn, 200);
        mg_response_header_add(conn, "Content-Type", a->content_type, -1);
        snprintf(len, sizeof(len), "%zu", a->size);
        mg_response_header_add(conn, "Content-Length", len, -1);
        mg_response_header_add(conn, "Cache-Control", "no-cache", -1);
        mg_response_header_add(conn, "X-Content-Type-Options", "nosniff", -1);
        mg_response_header_send(conn);
        if (strcmp(ri->request_method, "HEAD"))
            mg_write(conn, a->data, a->size);
        return 200;
    }
    return reel_http_error(conn, 404, "Not found");
}

/* ---- WebSocket --------------------------------------------------------------------------- */

static const char *ws_export_id(const struct mg_connection *conn)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *path = ri->local_uri_raw ? ri->local_uri_raw : ri->local_uri;
    static const char prefix[] = "/ws/export/";

    if (!path || strncmp(path, prefix, sizeof(prefix) - 1))
        return NULL;
    return path + sizeof(prefix) - 1;
}

static int is_websocket_upgrade(const struct mg_connection *conn)
{
    const char *up = mg_get_header(conn, "Upgrade");
    return up && !strcasecmp(up, "websocket");
}

static int ws_connect(const struct mg_connection *conn, void *cbdata)
{
    (void)conn;
    (void)cbdata;
    return 0; /* checked in begin_request, where a proper HTTP error can be sent */
}

static void ws_ready(struct mg_connection *conn, void *cbdata)
{
    ReelServer *srv = cbdata;
    const char *raw = ws_export_id(conn);
    char user[REEL_ID_MAX + 1], detail[DETAIL_SIZE], key[2 * REEL_ID_MAX + 2];
    char id[REEL_ID_MAX + 1];
    ReelHubClient *client = NULL;
    ReelExportRecord rec;
    int status;

    if (!raw || reel_http_decode_id(raw, strlen(raw), id) < 0 ||
        reel_http_user(srv, conn, user, &status, detail, sizeof(detail)) < 0)
        return; /* defensive: begin_request has already refused these */
    reel_server_hub_key(key, sizeof(key), user, id);
    if (reel_hub_attach(srv->hub, key, conn, &client) < 0)
        return;
    mg_set_user_connection_data(conn, client);
    /* A late joiner whose export the hub no longer (or not yet) holds gets the
     * state of the row; a live frame, if any, wins (only_if_empty). */
    if (reel_jobstore_get(srv->jobs, user, id, &rec, 0) == 0) {
        int terminal;
        char *frame = NULL;
        if (rec.status == REEL_EXPORT_PROCESSING && !strcmp(rec.runner, "redis"))
            frame = reel_executor_latest_frame(srv->exec, user, id); /* the workers' newest */
        if (frame)
            terminal = 0;
        else
            frame = frame_from_record(srv, &rec, &terminal);
        if (frame)
            reel_hub_publish(srv->hub, key, frame, terminal, 1);
        free(frame);
    }
}

static int ws_data(struct mg_connection *conn, int bits, char *data, size_t len, void *cbdata)
{
    int opcode = bits & 0xf;

    (void)cbdata;
    if (opcode == MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE)
        return 0;
    if (opcode == MG_WEBSOCKET_OPCODE_TEXT && len == 4 && !memcmp(data, "ping", 4))
        mg_websocket_write(conn, MG_WEBSOCKET_OPCODE_TEXT, "pong", 4);
    return 1; /* anything else from the client is ignored */
}

static void ws_close(const struct mg_connection *conn, void *cbdata)
{
    ReelServer *srv = cbdata;
    ReelHubClient *client = mg_get_user_connection_data(conn);

    reel_hub_detach(srv->hub, &client);
    mg_set_user_connection_data(conn, NULL);
}

/* ---- every request ----------------------------------------------------------------------- */

static int has_dot_segment(const char *p)
{
    for (; p && *p; p++) {
        if (*p == '\\')
            return 1;
        if (*p == '/' && p[1] == '.' &&
            (p[2] == '/' || !p[2] || (p[2] == '.' && (p[3] == '/' || !p[3]))))
            return 1;
    }
    return 0;
}

static int begin_request(struct mg_connection *conn)
{
    ReelServer *srv = mg_get_user_data(mg_get_context(conn));
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *raw = ri->local_uri_raw ? ri->local_uri_raw : ri->local_uri;
    char user[REEL_ID_MAX + 1], detail[DETAIL_SIZE], id[REEL_ID_MAX + 1];
    const char *raw_id;
    int status;

    /* civetweb would quietly resolve "a/../b"; we refuse it, loudly. */
    if (has_dot_segment(raw))
        return reel_http_reject(conn, 400, "Invalid path: '.', '..' and '\\' are not allowed");
    if (!is_websocket_upgrade(conn) || strncmp(raw, "/ws/", 4))
        return 0;
    if (!(raw_id = ws_export_id(conn)))
        return reel_http_reject(conn, 404, "Not found");
    if (reel_http_decode_id(raw_id, strlen(raw_id), id) < 0)
        return reel_http_reject(conn, 400,
                                "Invalid export id: use 1-128 characters of A-Z a-z 0-9 _ . -"
                                " (no '..')");
    if (reel_http_user(srv, conn, user, &status, detail, sizeof(detail)) < 0)
        return reel_http_reject(conn, status, "%s", detail);
    {
        /* Each open WebSocket holds a civetweb thread for its life: keep some for
         * plain requests, or enough idle sockets would starve the API. */
        int clients;
        reel_hub_stats(srv->hub, NULL, &clients, NULL);
        if (clients >= srv->cfg.http_threads - HTTP_RESERVED_THREADS)
            return reel_http_reject(conn, 503,
                                    "Too many progress connections; try again"
                                    " later");
    }
    return 0;
}

static int log_message(const struct mg_connection *conn, const char *message)
{
    (void)conn;
    reel_log(REEL_LOG_DEBUG, "civetweb", "%s", message);
    return 1;
}

/* ---- life -------------------------------------------------------------------------------- */

static int ensure_dir(const char *path, char *errmsg)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return reel_fail(errmsg, REEL_ERR(errno), "cannot create %s: %s", path, strerror(errno));
    return 0;
}

int reel_server_start(ReelServer **out, const ReelServerConfig *cfg, char *errmsg)
{
    ReelServer *srv;
    ReelStoreConfig scfg = {0};
    ReelExecutorConfig ecfg = {0};
    struct mg_callbacks cb = {0};
    struct mg_server_port ports[4];
    char listen[96], threads[16], dbpath[PATH_MAX + 16];
    const char *options[32];
    int n = 0, ret;

    *out = NULL;
    if (!(srv = calloc(1, sizeof(*srv))))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "out of memory");
    srv->cfg = *cfg;
    srv->started_ms = reel_jobstore_now_ms();
    if (snprintf(srv->tmp_dir, sizeof(srv->tmp_dir), "%s/tmp", cfg->data_dir) >=
            (int)sizeof(srv->tmp_dir) ||
        snprintf(srv->work_dir, sizeof(srv->work_dir), "%s/work", cfg->data_dir) >=
            (int)sizeof(srv->work_dir) ||
        snprintf(dbpath, sizeof(dbpath), "%s/jobs.db", cfg->data_dir) >= (int)sizeof(dbpath)) {
        ret = reel_fail(errmsg, REEL_ERR(ENAMETOOLONG), "data: path too long");
        goto fail;
    }
    if ((ret = ensure_dir(cfg->data_dir, errmsg)) < 0)
        goto fail;
    /* at start-up nothing is being uploaded: what <data>/tmp holds is a leftover */
    reel_rm_tree(srv->tmp_dir, LOG_TAG);
    if ((ret = ensure_dir(srv->tmp_dir, errmsg)) < 0)
        goto fail;

    scfg.kind = cfg->storage_kind;
    scfg.root = cfg->storage_root;
    scfg.endpoint = cfg->s3_endpoint;
    scfg.bucket = cfg->s3_bucket;
    scfg.region = cfg->s3_region[0] ? cfg->s3_region : NULL;
    scfg.access_key = cfg->s3_access_key;
    scfg.secret_key = cfg->s3_secret_key;
    scfg.path_style = cfg->s3_path_style;
    srv->s3 = !strcmp(cfg->storage_kind, "s3");
    if ((ret = reel_store_open(&srv->store, &scfg, errmsg)) < 0)
        goto fail;
    if ((ret = reel_jobstore_open(&srv->jobs, dbpath, errmsg)) < 0)
        goto fail;
    if ((ret = reel_hub_create(&srv->hub, 4)) < 0) {
        reel_fail(errmsg, ret, "cannot start the WebSocket hub");
        goto fail;
    }
    ecfg.workers = cfg->workers;
    ecfg.queue = cfg->queue;
    ecfg.on_restart = cfg->on_restart;
    ecfg.max_attempts = cfg->max_attempts;
    ecfg.work_dir = srv->work_dir;
    ecfg.model_dir = cfg->models_dir[0] ? cfg->models_dir : NULL;
    ecfg.upscale = cfg->upscale;
    ecfg.engine_threads = cfg->engine_threads;
    ecfg.engine_lanes = cfg->engine_lanes;
    ecfg.limits = cfg->limits;
    ecfg.store = srv->store;
    ecfg.jobs = srv->jobs;
    ecfg.on_event = on_exec_event;
    ecfg.opaque = srv;
    ecfg.redis_url = cfg->redis[0] ? cfg->redis : NULL;
    ecfg.redis_fallback = cfg->redis_fallback;
    ecfg.plan_config = cfg->plan_config[0] ? cfg->plan_config : NULL;
    ecfg.on_frame = on_remote_frame;
    if ((ret = reel_executor_create(&srv->exec, &ecfg, errmsg)) < 0 ||
        (ret = reel_executor_start(srv->exec, errmsg)) < 0)
        goto fail;

    snprintf(listen, sizeof(listen), "%s:%d", cfg->listen, cfg->port);
    snprintf(threads, sizeof(threads), "%d", cfg->http_threads);
    options[n++] = "listening_ports";
    options[n++] = listen;
    options[n++] = "num_threads";
    options[n++] = threads;
    options[n++] = "enable_keep_alive";
    options[n++] = "yes";
    options[n++] = "keep_alive_timeout_ms";
    options[n++] = "5000";
    options[n++] = "request_timeout_ms";
    options[n++] = "30000";
    /* Idle WebSockets are pinged every 20 s; peers that stop answering are closed. */
    options[n++] = "websocket_timeout_ms";
    options[n++] = "20000";
    options[n++] = "enable_websocket_ping_pong";
    options[n++] = "yes";
    /* We decode ids ourselves, per path segment: see reel_http_decode_id. */
    options[n++] = "decode_url";
    options[n++] = "no";
    options[n++] = "enable_directory_listing";
    options[n++] = "no";
    options[n++] = "max_request_size";
    options[n++] = "65536";
    options[n++] = "listen_backlog";
    options[n++] = "512";
    options[n++] = "connection_queue";
    options[n++] = "256";
    options[n] = NULL;
    cb.begin_request = begin_request;
    cb.log_message = log_message;
    mg_init_library(0);
    if (!(srv->mg = mg_start(&cb, srv, options))) {
        ret = reel_fail(errmsg, REEL_ERR(EADDRINUSE),
                        "cannot listen on %s (in use, or not an"
                        " address of this machine)",
                        listen);
        goto fail;
    }
    mg_set_request_handler(srv->mg, "/api/health", h_health, srv);
    mg_set_request_handler(srv->mg, "/api/export/multi-clip", h_upload, srv);
    mg_set_request_handler(srv->mg, "/api/exports", h_exports, srv);
    mg_set_request_handler(srv->mg, "**", h_static, srv);
    mg_set_websocket_handler(srv->mg, "/ws/export", ws_connect, ws_ready, ws_data, ws_close, srv);
    memset(ports, 0, sizeof(ports));
    if (mg_get_server_ports(srv->mg, 4, ports) > 0)
        srv->port = ports[0].port;
    reel_log(REEL_LOG_INFO, LOG_TAG, "listening on http://%s:%d (auth %s, %s store, %d workers%s)",
             cfg->listen, srv->port, cfg->auth ? "on" : "off", srv->s3 ? "s3" : "local",
             cfg->workers, cfg->redis[0] ? ", exports to the Redis workers" : "");
    *out = srv;
    return 0;

fail:
    reel_server_stop(&srv);
    return ret;
}

int reel_server_port(const ReelServer *srv)
{
    return srv->port;
}

void reel_server_stop(ReelServer **psrv)
{
    ReelServer *srv = *psrv;

    if (!srv)
        return;
    /* Exports first (they requeue themselves), then connections, then the rest. */
    reel_executor_free(&srv->exec);
    if (srv->mg) {
        mg_stop(srv->mg);
        mg_exit_library();
    }
    reel_hub_free(&srv->hub);
    reel_jobstore_close(&srv->jobs);
    reel_store_close(&srv->store);
    free(srv);
    *psrv = NULL;
}
