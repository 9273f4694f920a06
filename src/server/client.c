/*
 * client.c - HTTP (libcurl) and WebSocket (civetweb's client) sides of the
 * service client; see client.h.
 */
#include "server/client.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <civetweb.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/rand.h>

#include "core/error.h"
#include "core/log.h"

#define LOG_TAG "client"
#define MAX_BODY (1 << 20)

void reel_client_global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    mg_init_library(0);
}

void reel_client_make_export_id(char *out, size_t size)
{
    static const char b36[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    unsigned char r[7];
    char tail[8];
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (RAND_bytes(r, sizeof(r)) != 1)
        for (int i = 0; i < 7; i++)
            r[i] = (unsigned char)(ts.tv_nsec >> (i * 3));
    for (int i = 0; i < 7; i++)
        tail[i] = b36[r[i] % 36];
    tail[7] = 0;
    snprintf(out, size, "export_%lld_%s", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, tail);
}

/* ---- the job file ------------------------------------------------------------------------ */

void reel_client_submission_uninit(ReelClientSubmission *sub)
{
    for (int i = 0; i < sub->nb_files; i++)
        free(sub->files[i]);
    free(sub->files);
    free(sub->indices);
    free(sub->job_json);
    sub->files = NULL;
    sub->indices = NULL;
    sub->job_json = NULL;
    sub->nb_files = 0;
}

int reel_client_job_load(ReelClientSubmission *sub, const char *path, char *errmsg)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr), *clips, *clip, *output, *v;
    char *copy = NULL, *dir;
    size_t i, n;
    int ret = 0;

    sub->files = NULL;
    sub->indices = NULL;
    sub->job_json = NULL;
    sub->nb_files = 0;
    sub->include_audio = 1;
    sub->target_fps = 0;
    if (!root)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "%s: line %d column %d: %s", path, jerr.line,
                         jerr.column, jerr.text);
    clips = json_object_get(root, "clips");
    if (!json_is_array(clips) || !(n = json_array_size(clips))) {
        ret = reel_fail(errmsg, REEL_ERR(EINVAL), "%s: clips: a non-empty array is required", path);
        goto end;
    }
    if (!(copy = strdup(path)) || !(sub->files = calloc(n, sizeof(*sub->files))) ||
        !(sub->indices = calloc(n, sizeof(*sub->indices)))) {
        ret = REEL_ERR(ENOMEM);
        goto end;
    }
    dir = dirname(copy);
    json_array_foreach(clips, i, clip)
    {
        const char *src = json_string_value(json_object_get(clip, "source"));
        json_t *ci = json_object_get(clip, "clipIndex");
        char full[PATH_MAX];
        struct stat st;
        int idx = (int)i;

        if (!json_is_object(clip) || !src || !*src) {
            ret = reel_fail(errmsg, REEL_ERR(EINVAL),
                            "%s: clips[%zu].source: required (a path to the video)", path, i);
            goto end;
        }
        if (json_is_integer(ci))
            idx = (int)json_integer_value(ci);
        if (snprintf(full, sizeof(full), "%s%s%s", src[0] == '/' ? "" : dir,
                     src[0] == '/' ? "" : "/", src) >= (int)sizeof(full)) {
            ret = reel_fail(errmsg, REEL_ERR(ENAMETOOLONG), "clips[%zu].source: path too long", i);
            goto end;
        }
        if (stat(full, &st) < 0 || !S_ISREG(st.st_mode)) {
            ret = reel_fail(errmsg, REEL_ERR(ENOENT), "clips[%zu].source: %s: %s", i, full,
                            stat(full, &st) < 0 ? strerror(errno) : "not a file");
            goto end;
        }
        if (!(sub->files[sub->nb_files] = strdup(full))) {
            ret = REEL_ERR(ENOMEM);
            goto end;
        }
        sub->indices[sub->nb_files++] = idx;
        json_object_set_new(clip, "clipIndex", json_integer(idx));
        json_object_del(clip, "source");
    }
    output = json_object_get(root, "output");
    if (json_is_object(output)) {
        if (json_is_boolean(v = json_object_get(output, "include_audio")))
            sub->include_audio = json_is_true(v);
        if (json_is_integer(v = json_object_get(output, "fps")))
            sub->target_fps = (int)json_integer_value(v);
        else if (json_is_real(v) && json_real_value(v) == (double)(int)json_real_value(v))
            sub->target_fps = (int)json_real_value(v);
    }
    if (!(sub->job_json = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(17))))
        ret = REEL_ERR(ENOMEM);
end:
    if (ret < 0)
        reel_client_submission_uninit(sub);
    free(copy);
    json_decref(root);
    return ret;
}

/* ---- HTTP -------------------------------------------------------------------------------- */

typedef struct Buf {
    char *data;
    size_t len;
} Buf;

static size_t buf_write(char *ptr, size_t size, size_t nmemb, void *opaque)
{
    Buf *b = opaque;
    size_t n = size * nmemb, keep = n;
    char *d;

    if (b->len + keep > MAX_BODY)
        keep = MAX_BODY - b->len;
    if (keep) {
        if (!(d = realloc(b->data, b->len + keep + 1)))
            return 0;
        memcpy(d + b->len, ptr, keep);
        b->data = d;
        b->len += keep;
        d[b->len] = 0;
    }
    return n;
}

static struct curl_slist *auth_headers(const ReelClientOptions *opt)
{
    char h[700];
    struct curl_slist *list = NULL;

    if (opt->token && *opt->token) {
        snprintf(h, sizeof(h), "Authorization: Bearer %s", opt->token);
        list = curl_slist_append(list, h);
    } else if (opt->user && *opt->user) {
        snprintf(h, sizeof(h), "X-User-ID: %s", opt->user);
        list = curl_slist_append(list, h);
    }
    return curl_slist_append(list, "Expect:"); /* send bodies at once, as browsers do */
}

static CURL *easy(const ReelClientOptions *opt, const char *path, struct curl_slist *headers)
{
    CURL *c = curl_easy_init();
    char url[2048];

    if (!c)
        return NULL;
    snprintf(url, sizeof(url), "%s%s", opt->server, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)(opt->timeout_s > 0 ? opt->timeout_s : 10));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "clipreel-client/0.1");
    return c;
}

/* The "detail" of an error reply, else the body, else the status. */
static void detail_from(char *errmsg, int status, const Buf *b)
{
    json_t *root = b->data ? json_loads(b->data, 0, NULL) : NULL;
    const char *d = json_string_value(json_object_get(root, "detail"));

    if (errmsg)
        snprintf(errmsg, REEL_ERRMSG_SIZE, "HTTP %d: %s", status,
                 d                     ? d
                 : b->data && *b->data ? b->data
                                       : "no detail");
    json_decref(root);
}

static int transport_error(char *errmsg, CURLcode rc, const char *what)
{
    return reel_fail(errmsg,
                     rc == CURLE_OPERATION_TIMEDOUT ? REEL_ERR(ETIMEDOUT)
                     : rc == CURLE_COULDNT_CONNECT  ? REEL_ERR(ECONNREFUSED)
                                                    : REEL_ERR(EIO),
                     "%s: %s", what, curl_easy_strerror(rc));
}

int reel_client_submit(const ReelClientOptions *opt, const ReelClientSubmission *sub,
                       int *http_status, int *duplicate, char *errmsg)
{
    struct curl_slist *headers = auth_headers(opt);
    CURL *c = easy(opt, "/api/export/multi-clip", headers);
    curl_mime *mime = NULL;
    curl_mimepart *part;
    Buf body = {0};
    char num[32];
    long status = 0;
    CURLcode rc;
    int ret = 0;

    *http_status = 0;
    *duplicate = 0;
    if (!c || !(mime = curl_mime_init(c))) {
        ret = REEL_ERR(ENOMEM);
        goto end;
    }
#define FIELD(name, value)                                                                         \
    do {                                                                                           \
        part = curl_mime_addpart(mime);                                                            \
        curl_mime_name(part, name);                                                                \
        curl_mime_data(part, value, CURL_ZERO_TERMINATED);                                         \
    } while (0)
    FIELD("export_id", sub->export_id);
    FIELD("multi_clip_data_json", sub->job_json);
    FIELD("include_audio", sub->include_audio ? "true" : "false");
    if (sub->target_fps > 0) {
        snprintf(num, sizeof(num), "%d", sub->target_fps);
        FIELD("target_fps", num);
    }
    FIELD("export_mode", "fast");
    if (sub->project_id[0]) {
        FIELD("project_id", sub->project_id); /* twice, as the editor does */
        FIELD("project_id", sub->project_id);
    }
    if (sub->project_name[0])
        FIELD("project_name", sub->project_name);
#undef FIELD
    for (int i = 0; i < sub->nb_files; i++) {
        char name[32];
        const char *base = strrchr(sub->files[i], '/');
        snprintf(name, sizeof(name), "video_%d", sub->indices[i]);
        part = curl_mime_addpart(mime);
        curl_mime_name(part, name);
        if (curl_mime_filedata(part, sub->files[i]) != CURLE_OK) {
            ret = reel_fail(errmsg, REEL_ERR(ENOENT), "%s: cannot read", sub->files[i]);
            goto end;
        }
        curl_mime_filename(part, base ? base + 1 : sub->files[i]);
        curl_mime_type(part, "video/mp4");
    }
    curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    if ((rc = curl_easy_perform(c)) != CURLE_OK) {
        ret = transport_error(errmsg, rc, "upload");
        goto end;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    *http_status = (int)status;
    if (status != 202) {
        detail_from(errmsg, (int)status, &body);
        ret = status == 503   ? REEL_ERR(EAGAIN)
              : status == 401 ? REEL_ERR(EACCES)
              : status == 413 ? REEL_ERR(EFBIG)
                              : REEL_ERR(EINVAL);
        goto end;
    }
    {
        json_t *root = body.data ? json_loads(body.data, 0, NULL) : NULL;
        *duplicate = json_is_true(json_object_get(root, "duplicate"));
        json_decref(root);
    }
end:
    curl_mime_free(mime);
    curl_easy_cleanup(c);
    curl_slist_free_all(headers);
    free(body.data);
    return ret;
}

int reel_client_get(const ReelClientOptions *opt, const char *path, char **out, char *errmsg)
{
    struct curl_slist *headers = auth_headers(opt);
    CURL *c = easy(opt, path, headers);
    Buf body = {0};
    long status = 0;
    CURLcode rc;
    int ret;

    *out = NULL;
    if (!c) {
        curl_slist_free_all(headers);
        return REEL_ERR(ENOMEM);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    if ((rc = curl_easy_perform(c)) != CURLE_OK) {
        ret = transport_error(errmsg, rc, path);
        free(body.data);
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 400)
            detail_from(errmsg, (int)status, &body);
        *out = body.data;
        ret = (int)status;
    }
    curl_easy_cleanup(c);
    curl_slist_free_all(headers);
    return ret;
}

int reel_client_cancel(const ReelClientOptions *opt, const char *export_id, char *errmsg)
{
    struct curl_slist *headers = auth_headers(opt);
    char path[256];
    CURL *c;
    Buf body = {0};
    long status = 0;
    CURLcode rc;
    int ret;

    snprintf(path, sizeof(path), "/api/exports/%s", export_id);
    if (!(c = easy(opt, path, headers))) {
        curl_slist_free_all(headers);
        return REEL_ERR(ENOMEM);
    }
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    if ((rc = curl_easy_perform(c)) != CURLE_OK) {
        ret = transport_error(errmsg, rc, "cancel");
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 400)
            detail_from(errmsg, (int)status, &body);
        ret = (int)status;
    }
    free(body.data);
    curl_easy_cleanup(c);
    curl_slist_free_all(headers);
    return ret;
}

/* GET path into file (path.part, renamed when complete). 0, -ENOENT on 404, or an error. */
static int fetch_file(const ReelClientOptions *opt, const char *path, const char *file,
                      char *errmsg)
{
    struct curl_slist *headers = auth_headers(opt);
    CURL *c = easy(opt, path, headers);
    char part[PATH_MAX + 8];
    FILE *f = NULL;
    long status = 0;
    CURLcode rc;
    int ret = 0;

    if (!c) {
        ret = REEL_ERR(ENOMEM);
        goto end;
    }
    if (snprintf(part, sizeof(part), "%s.part", file) >= (int)sizeof(part)) {
        ret = reel_fail(errmsg, REEL_ERR(ENAMETOOLONG), "%s: path too long", file);
        goto end;
    }
    if (!(f = fopen(part, "wb"))) {
        ret = reel_fail(errmsg, REEL_ERR(errno), "%s: %s", part, strerror(errno));
        goto end;
    }
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L); /* a presigned URL on S3 */
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    rc = curl_easy_perform(c);
    if (fclose(f) != 0 && rc == CURLE_OK)
        rc = CURLE_WRITE_ERROR;
    f = NULL;
    if (rc != CURLE_OK) {
        ret = transport_error(errmsg, rc, path);
        unlink(part);
        goto end;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        Buf b = {0};
        FILE *in = fopen(part, "rb");
        char tmp[4096];
        size_t n = in ? fread(tmp, 1, sizeof(tmp) - 1, in) : 0;
        if (in)
            fclose(in);
        tmp[n] = 0;
        b.data = tmp;
        b.len = n;
        detail_from(errmsg, (int)status, &b);
        unlink(part);
        ret = status == 404 ? REEL_ERR(ENOENT) : REEL_ERR(EIO);
        goto end;
    }
    if (rename(part, file) < 0) {
        ret = reel_fail(errmsg, REEL_ERR(errno), "%s: %s", file, strerror(errno));
        unlink(part);
    }
end:
    if (f)
        fclose(f);
    curl_easy_cleanup(c);
    curl_slist_free_all(headers);
    return ret;
}

int reel_client_download(const ReelClientOptions *opt, const char *export_id, const char *path,
                         const char *chapters_path, char *errmsg)
{
    char url[256];
    int ret;

    snprintf(url, sizeof(url), "/api/exports/%s/output", export_id);
    if ((ret = fetch_file(opt, url, path, errmsg)) < 0)
        return ret;
    if (chapters_path) {
        char ignored[REEL_ERRMSG_SIZE];
        snprintf(url, sizeof(url), "/api/exports/%s/chapters.vtt", export_id);
        ret = fetch_file(opt, url, chapters_path, ignored);
        if (ret < 0 && ret != REEL_ERR(ENOENT))
            return reel_fail(errmsg, ret, "chapters: %s", ignored);
    }
    return 0;
}

/* ---- WebSocket --------------------------------------------------------------------------- */

struct ReelClientWatch {
    ReelClientOptions opt;
    char server[512], token[512], user[129];
    char export_id[129];
    ReelClientFrameFn cb;
    void *opaque;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct mg_connection *conn;
    int connected; /* set while the socket is open */
    int terminal;  /* 1 complete, 2 error/cancelled */
    char error[REEL_ERRMSG_SIZE];
    int cancelled;
};

typedef struct Url {
    char host[256];
    int port;
    int tls;
    char prefix[256];
} Url;

static int parse_url(const char *s, Url *u)
{
    const char *p, *host_end, *path;
    size_t n;

    memset(u, 0, sizeof(*u));
    if (!strncasecmp(s, "http://", 7)) {
        p = s + 7;
        u->port = 80;
    } else if (!strncasecmp(s, "https://", 8)) {
        p = s + 8;
        u->port = 443;
        u->tls = 1;
    } else {
        return -1;
    }
    path = strchr(p, '/');
    host_end = path ? path : p + strlen(p);
    {
        const char *colon = memchr(p, ':', (size_t)(host_end - p));
        if (colon) {
            u->port = atoi(colon + 1) > 0 ? (int)strtol(colon + 1, NULL, 10) : u->port;
            host_end = colon;
        }
    }
    n = (size_t)(host_end - p);
    if (!n || n >= sizeof(u->host))
        return -1;
    memcpy(u->host, p, n);
    if (path)
        snprintf(u->prefix, sizeof(u->prefix), "%s", path);
    n = strlen(u->prefix);
    if (n && u->prefix[n - 1] == '/')
        u->prefix[n - 1] = 0;
    return 0;
}

static void str_or(char *dst, size_t size, json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    snprintf(dst, size, "%s", s ? s : "");
}

static double num_or(json_t *o, const char *key, double def)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : def;
}

/* Handle one frame's text (civetweb thread, or the polling fallback). */
static void deliver(ReelClientWatch *w, const char *text, size_t len)
{
    json_t *root = json_loadb(text, len, 0, NULL);
    char status[32], phase[32], message[512], error[512], url[512];
    char *copy;
    ReelClientFrame f = {0};

    if (!json_is_object(root)) {
        json_decref(root);
        return;
    }
    str_or(status, sizeof(status), root, "status");
    str_or(phase, sizeof(phase), root, "phase");
    str_or(message, sizeof(message), root, "message");
    str_or(error, sizeof(error), root, "error");
    str_or(url, sizeof(url), root, "output_url");
    if (!(copy = malloc(len + 1))) {
        json_decref(root);
        return;
    }
    memcpy(copy, text, len);
    copy[len] = 0;
    f.status = status;
    f.phase = phase;
    f.progress = num_or(root, "progress", 0);
    f.clip = (int)num_or(root, "clip", 0);
    f.total_clips = (int)num_or(root, "total_clips", 0);
    f.current_frame = (int64_t)num_or(root, "current_frame", 0);
    f.total_frames = (int64_t)num_or(root, "total_frames", 0);
    f.eta_s = num_or(root, "eta_s", -1);
    f.message = message;
    f.error = error[0] ? error : NULL;
    f.output_url = url[0] ? url : NULL;
    f.json = copy;

    pthread_mutex_lock(&w->lock);
    if (!w->terminal) {
        pthread_mutex_unlock(&w->lock);
        if (w->cb)
            w->cb(w->opaque, &f);
        pthread_mutex_lock(&w->lock);
        if (!strcmp(status, "complete")) {
            w->terminal = 1;
        } else if (!strcmp(status, "error") || !strcmp(status, "cancelled")) {
            w->terminal = 2;
            w->cancelled = !strcmp(phase, "cancelled") || !strcmp(status, "cancelled");
            snprintf(w->error, sizeof(w->error), "%s", error[0] ? error : message);
        }
        pthread_cond_broadcast(&w->cond);
    }
    pthread_mutex_unlock(&w->lock);
    free(copy);
    json_decref(root);
}

static int ws_data(struct mg_connection *conn, int bits, char *data, size_t len, void *opaque)
{
    ReelClientWatch *w = opaque;
    int opcode = bits & 0xf;

    if (opcode == MG_WEBSOCKET_OPCODE_PING) {
        mg_websocket_client_write(conn, MG_WEBSOCKET_OPCODE_PONG, data, len);
        return 1;
    }
    if (opcode == MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE)
        return 0;
    if (opcode == MG_WEBSOCKET_OPCODE_TEXT && !(len == 4 && !memcmp(data, "pong", 4)))
        deliver(w, data, len);
    return 1;
}

static void ws_closed(const struct mg_connection *conn, void *opaque)
{
    ReelClientWatch *w = opaque;

    (void)conn;
    pthread_mutex_lock(&w->lock);
    w->connected = 0;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static int ws_connect(ReelClientWatch *w, char *errmsg)
{
    char path[1400], enc[1024], err[256] = "";
    struct mg_connection *conn;
    Url u;
    int n;

    if (parse_url(w->opt.server, &u) < 0)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "server: '%s' is not an http(s):// URL",
                         w->opt.server);
    n = snprintf(path, sizeof(path), "%s/ws/export/%s", u.prefix, w->export_id);
    if (w->opt.token && *w->opt.token) {
        mg_url_encode(w->opt.token, enc, sizeof(enc));
        n += snprintf(path + n, sizeof(path) - (size_t)n, "?token=%s", enc);
    } else if (w->opt.user && *w->opt.user) {
        mg_url_encode(w->opt.user, enc, sizeof(enc));
        n += snprintf(path + n, sizeof(path) - (size_t)n, "?user=%s", enc);
    }
    if (n >= (int)sizeof(path))
        return reel_fail(errmsg, REEL_ERR(ENAMETOOLONG), "WebSocket path too long");
    pthread_mutex_lock(&w->lock);
    w->connected = 1; /* before the connect: the close callback may come at once */
    pthread_mutex_unlock(&w->lock);
    conn = mg_connect_websocket_client(u.host, u.port, u.tls, err, sizeof(err), path, NULL, ws_data,
                                       ws_closed, w);
    pthread_mutex_lock(&w->lock);
    if (!conn)
        w->connected = 0;
    w->conn = conn;
    pthread_mutex_unlock(&w->lock);
    if (!conn)
        return reel_fail(errmsg, REEL_ERR(ECONNREFUSED), "WebSocket %s:%d%s: %s", u.host, u.port,
                         path, err[0] ? err : "connection failed");
    return 0;
}

/* Close our side of the socket and wait for civetweb's client thread to finish. */
static void ws_disconnect(ReelClientWatch *w)
{
    struct mg_connection *conn;

    pthread_mutex_lock(&w->lock);
    conn = w->conn;
    w->conn = NULL;
    pthread_mutex_unlock(&w->lock);
    if (conn) {
        mg_websocket_client_write(conn, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, "", 0);
        mg_close_connection(conn);
    }
}

int reel_client_watch_open(ReelClientWatch **out, const ReelClientOptions *opt,
                           const char *export_id, ReelClientFrameFn cb, void *opaque, char *errmsg)
{
    ReelClientWatch *w;
    int ret;

    *out = NULL;
    if (!(w = calloc(1, sizeof(*w))))
        return REEL_ERR(ENOMEM);
    snprintf(w->server, sizeof(w->server), "%s", opt->server);
    snprintf(w->token, sizeof(w->token), "%s", opt->token ? opt->token : "");
    snprintf(w->user, sizeof(w->user), "%s", opt->user ? opt->user : "");
    w->opt = *opt;
    w->opt.server = w->server;
    w->opt.token = w->token;
    w->opt.user = w->user;
    snprintf(w->export_id, sizeof(w->export_id), "%s", export_id);
    w->cb = cb;
    w->opaque = opaque;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    if ((ret = ws_connect(w, errmsg)) < 0) {
        reel_client_watch_close(&w);
        return ret;
    }
    *out = w;
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The socket is down: ask the record once (REST), as the editor's fallback does. */
static void poll_record(ReelClientWatch *w)
{
    char path[256], err[REEL_ERRMSG_SIZE], *body = NULL;
    json_t *rec;

    snprintf(path, sizeof(path), "/api/exports/%s", w->export_id);
    if (reel_client_get(&w->opt, path, &body, err) != 200) {
        free(body);
        return;
    }
    rec = json_loads(body, 0, NULL);
    free(body);
    if (json_is_object(rec)) {
        const char *status = json_string_value(json_object_get(rec, "status"));
        const char *error = json_string_value(json_object_get(rec, "error"));
        json_t *f = json_object();
        char *text;
        if (status && strcmp(status, "pending") && strcmp(status, "processing")) {
            json_object_set_new(f, "status",
                                json_string(!strcmp(status, "complete") ? "complete" : "error"));
            json_object_set_new(f, "phase", json_string(status));
            json_object_set_new(f, "progress", json_integer(!strcmp(status, "complete") ? 100 : 0));
            json_object_set_new(f, "message", json_string(error ? error : status));
            if (error)
                json_object_set_new(f, "error", json_string(error));
            if ((text = json_dumps(f, JSON_COMPACT))) {
                deliver(w, text, strlen(text));
                free(text);
            }
        }
        json_decref(f);
    }
    json_decref(rec);
}

int reel_client_watch_wait(ReelClientWatch *w, int timeout_s, char *errmsg)
{
    int64_t deadline = timeout_s > 0 ? now_ms() + (int64_t)timeout_s * 1000 : 0;
    int64_t next_ping = now_ms() + 15000, retry_at = 0, backoff = 1000;
    int attempts = 0, terminal;

    pthread_mutex_lock(&w->lock);
    while (!w->terminal) {
        struct timespec ts;
        int64_t now = now_ms(), wake = now + 500;

        if (deadline && now >= deadline) {
            pthread_mutex_unlock(&w->lock);
            return reel_fail(errmsg, REEL_ERR(ETIMEDOUT), "no result after %d s", timeout_s);
        }
        if (w->connected && now >= next_ping && w->conn) {
            /* Keep idle proxies from dropping us; the server answers "pong". */
            mg_websocket_client_write(w->conn, MG_WEBSOCKET_OPCODE_TEXT, "ping", 4);
            next_ping = now + 15000;
        }
        if (!w->connected) {
            if (!retry_at) {
                retry_at = now + backoff;
            } else if (now >= retry_at) {
                char err[REEL_ERRMSG_SIZE];
                pthread_mutex_unlock(&w->lock);
                ws_disconnect(w);
                /* The record first: the export may have ended while we were away. */
                poll_record(w);
                if (attempts < 10 && !w->terminal) {
                    attempts++;
                    if (ws_connect(w, err) == 0) {
                        backoff = 1000;
                        attempts = 0;
                    } else {
                        reel_log(REEL_LOG_WARNING, LOG_TAG, "%s (retrying)", err);
                    }
                }
                backoff = backoff * 2 > 30000 ? 30000 : backoff * 2;
                pthread_mutex_lock(&w->lock);
                retry_at = w->connected ? 0 : now_ms() + (attempts >= 10 ? 5000 : backoff);
                continue;
            }
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (wake - now) / 1000;
        ts.tv_nsec += (long)((wake - now) % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cond, &w->lock, &ts);
    }
    terminal = w->terminal;
    if (terminal != 1 && errmsg)
        snprintf(errmsg, REEL_ERRMSG_SIZE, "%s", w->error);
    pthread_mutex_unlock(&w->lock);
    if (terminal == 1)
        return 0;
    return w->cancelled ? REEL_ERROR_CANCELLED : REEL_ERROR_BACKEND;
}

void reel_client_watch_close(ReelClientWatch **pw)
{
    ReelClientWatch *w = *pw;

    if (!w)
        return;
    ws_disconnect(w);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
    *pw = NULL;
}
