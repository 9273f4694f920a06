/*
 * http.c - the HTTP building blocks of the service: JSON replies and errors in
 * the app's {"detail": ...} shape, who the user is, ranged file responses.
 */
#include "server/server_int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <civetweb.h>

#include "core/error.h"

static void send_headers(struct mg_connection *conn, int status, const char *type, int64_t length,
                         int close)
{
    char len[32];

    if (close)
        mg_disable_connection_keep_alive(conn);
    mg_response_header_start(conn, status);
    mg_response_header_add(conn, "Content-Type", type, -1);
    snprintf(len, sizeof(len), "%" PRId64, length);
    mg_response_header_add(conn, "Content-Length", len, -1);
    mg_response_header_add(conn, "Cache-Control", "no-store", -1);
    mg_response_header_add(conn, "X-Content-Type-Options", "nosniff", -1);
    if (status == 401)
        mg_response_header_add(conn, "WWW-Authenticate", "Bearer", -1);
    if (status == 503)
        mg_response_header_add(conn, "Retry-After", "30", -1);
    if (close)
        mg_response_header_add(conn, "Connection", "close", -1);
    mg_response_header_send(conn);
}

static int send_json(struct mg_connection *conn, int status, json_t *body, int close)
{
    char *text = json_dumps(body ? body : json_object(), JSON_COMPACT | JSON_REAL_PRECISION(10));
    static const char oom[] = "{\"detail\":\"out of memory\"}";

    if (!text) {
        send_headers(conn, 500, "application/json", sizeof(oom) - 1, 1);
        mg_write(conn, oom, sizeof(oom) - 1);
        json_decref(body);
        return 500;
    }
    send_headers(conn, status, "application/json", (int64_t)strlen(text), close);
    mg_write(conn, text, strlen(text));
    free(text);
    json_decref(body);
    return status;
}

int reel_http_json(struct mg_connection *conn, int status, json_t *body)
{
    return send_json(conn, status, body, 0);
}

static int verror(struct mg_connection *conn, int status, int close, const char *fmt, va_list ap)
{
    char detail[1024];

    vsnprintf(detail, sizeof(detail), fmt, ap);
    return send_json(conn, status, json_pack("{s:s}", "detail", detail), close);
}

int reel_http_error(struct mg_connection *conn, int status, const char *fmt, ...)
{
    va_list ap;
    int ret;

    va_start(ap, fmt);
    ret = verror(conn, status, 0, fmt, ap);
    va_end(ap);
    return ret;
}

int reel_http_reject(struct mg_connection *conn, int status, const char *fmt, ...)
{
    char detail[512], *text;
    json_t *body;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    body = json_pack("{s:s}", "detail", detail);
    text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    mg_printf(conn,
              "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
              "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n%s",
              status, mg_get_response_code_text(conn, status), text ? strlen(text) : 2,
              status == 401 ? "WWW-Authenticate: Bearer\r\n" : "", text ? text : "{}");
    free(text);
    return status;
}

int reel_http_error_close(struct mg_connection *conn, int status, const char *fmt, ...)
{
    va_list ap;
    int ret;

    va_start(ap, fmt);
    ret = verror(conn, status, 1, fmt, ap);
    va_end(ap);
    return ret;
}

/* The value of query parameter name (URL-decoded) into out; 0 if present. */
static int query_param(const struct mg_request_info *ri, const char *name, char *out, size_t size)
{
    if (!ri->query_string)
        return -1;
    return mg_get_var(ri->query_string, strlen(ri->query_string), name, out, size) >= 0 ? 0 : -1;
}

int reel_http_user(const ReelServer *srv, const struct mg_connection *conn, char *user, int *status,
                   char *detail, size_t detail_size)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    char token[512];
    const char *found;

    if (!srv->cfg.auth) {
        /* Development mode (loopback only). WebSockets cannot send headers: ?user=. */
        const char *h = mg_get_header(conn, "X-User-ID");
        if ((!h || !*h) && query_param(ri, "user", token, sizeof(token)) == 0)
            h = token;
        if (!h || !*h)
            h = "a";
        if (!reel_server_id_valid(h)) {
            *status = 400;
            snprintf(detail, detail_size,
                     "X-User-ID: must be 1-128 characters of A-Z a-z 0-9 _ . - (no '..')");
            return -1;
        }
        memcpy(user, h, strlen(h) + 1); /* valid ids are <= REEL_ID_MAX bytes */
        return 0;
    }
    {
        const char *h = mg_get_header(conn, "Authorization");
        token[0] = 0;
        if (h) {
            if (strncasecmp(h, "Bearer ", 7)) {
                *status = 401;
                snprintf(detail, detail_size, "Authorization: expected 'Bearer <token>'");
                return -1;
            }
            h += 7;
            while (*h == ' ')
                h++;
            snprintf(token, sizeof(token), "%s", h);
        } else if (query_param(ri, "token", token, sizeof(token)) < 0) {
            token[0] = 0;
        }
    }
    if (!token[0]) {
        *status = 401;
        snprintf(detail, detail_size, "Not authenticated: a bearer token is required");
        return -1;
    }
    if (!(found = reel_server_config_user_for_token(&srv->cfg, token))) {
        *status = 401;
        snprintf(detail, detail_size, "Invalid token");
        return -1;
    }
    snprintf(user, REEL_ID_MAX + 1, "%s", found);
    return 0;
}

int reel_http_decode_id(const char *raw, size_t n, char *out)
{
    char tmp[3 * REEL_ID_MAX + 4];
    int len;

    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, raw, n);
    tmp[n] = 0;
    len = mg_url_decode(tmp, (int)n, out, REEL_ID_MAX + 1, 0);
    if (len < 0 || len > REEL_ID_MAX || strlen(out) != (size_t)len)
        return -1; /* too long, or an embedded NUL */
    return reel_server_id_valid(out) ? 0 : -1;
}

int reel_http_run_big_stack(void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    pthread_t t;
    int r;

    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, (size_t)8 << 20);
    r = pthread_create(&t, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    if (r)
        return REEL_ERR(EAGAIN);
    pthread_join(t, NULL);
    return 0;
}

void reel_http_drain(struct mg_connection *conn, int64_t max, int max_ms)
{
    char buf[8192];
    struct timespec t0, t;
    int64_t total = 0;
    int n;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (total < max && (n = mg_read(conn, buf, sizeof(buf))) > 0) {
        total += n;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > max_ms)
            break;
    }
}

/*
 * Parse a Range header for a file of size bytes. Returns 1 with [*start, *end]
 * for one satisfiable range, 0 to send the whole file (no header, or one we
 * ignore: syntax errors and multiple ranges, as RFC 9110 allows), -1 for 416.
 */
static int parse_range(const char *h, int64_t size, int64_t *start, int64_t *end)
{
    char *p;
    long long a, b;

    if (!h || strncasecmp(h, "bytes=", 6) || strchr(h, ','))
        return 0;
    h += 6;
    while (*h == ' ')
        h++;
    if (*h == '-') { /* suffix: the last N bytes */
        errno = 0;
        b = strtoll(h + 1, &p, 10);
        if (p == h + 1 || *p || errno || b < 0)
            return 0;
        if (b == 0 || size == 0)
            return -1;
        *start = b >= size ? 0 : size - b;
        *end = size - 1;
        return 1;
    }
    if (!isdigit((unsigned char)*h))
        return 0;
    errno = 0;
    a = strtoll(h, &p, 10);
    if (errno || *p != '-')
        return 0;
    h = p + 1;
    if (!*h) {
        b = size - 1;
    } else {
        b = strtoll(h, &p, 10);
        if (*p || errno || b < a)
            return 0;
        if (b >= size)
            b = size - 1;
    }
    if (a >= size)
        return -1;
    *start = a;
    *end = b;
    return 1;
}

int reel_http_send_file(struct mg_connection *conn, const char *path, const char *content_type,
                        const char *filename, int head)
{
    enum { CHUNK = 65536 };
    int64_t size, start = 0, end = 0, left;
    char hdr[600], *buf;
    struct stat st;
    int fd, r, status;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        return reel_http_error(conn, 404, "Output file not found");
    }
    if (!(buf = malloc(CHUNK))) {
        close(fd);
        return reel_http_error(conn, 500, "Out of memory");
    }
    size = st.st_size;
    r = parse_range(mg_get_header(conn, "Range"), size, &start, &end);
    if (r < 0) {
        free(buf);
        close(fd);
        mg_response_header_start(conn, 416);
        snprintf(hdr, sizeof(hdr), "bytes */%" PRId64, size);
        mg_response_header_add(conn, "Content-Range", hdr, -1);
        mg_response_header_add(conn, "Content-Length", "0", -1);
        mg_response_header_send(conn);
        return 416;
    }
    if (r == 0) {
        start = 0;
        end = size - 1;
    }
    status = r ? 206 : 200;
    mg_response_header_start(conn, status);
    mg_response_header_add(conn, "Content-Type", content_type, -1);
    snprintf(hdr, sizeof(hdr), "%" PRId64, end - start + 1);
    mg_response_header_add(conn, "Content-Length", hdr, -1);
    mg_response_header_add(conn, "Accept-Ranges", "bytes", -1);
    mg_response_header_add(conn, "Cache-Control", "private, max-age=3600", -1);
    if (r) {
        snprintf(hdr, sizeof(hdr), "bytes %" PRId64 "-%" PRId64 "/%" PRId64, start, end, size);
        mg_response_header_add(conn, "Content-Range", hdr, -1);
    }
    if (filename) {
        snprintf(hdr, sizeof(hdr), "inline; filename=\"%s\"", filename);
        mg_response_header_add(conn, "Content-Disposition", hdr, -1);
    }
    mg_response_header_send(conn);
    for (left = end - start + 1; !head && left > 0;) {
        ssize_t n = pread(fd, buf, left < CHUNK ? (size_t)left : CHUNK, start);
        if (n <= 0 || mg_write(conn, buf, (size_t)n) <= 0)
            break;
        start += n;
        left -= n;
    }
    free(buf);
    close(fd);
    return status;
}

json_t *reel_http_time(int64_t ms)
{
    char buf[96];
    time_t s = (time_t)(ms / 1000);
    struct tm tm;

    if (ms <= 0 || !gmtime_r(&s, &tm))
        return json_null();
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    return json_string(buf);
}

json_t *reel_http_project_id(const char *project_id)
{
    char *end;
    long long v;

    if (!project_id || !*project_id)
        return json_null();
    errno = 0;
    v = strtoll(project_id, &end, 10);
    if (!*end && !errno && isdigit((unsigned char)project_id[0]) &&
        (project_id[0] != '0' || !project_id[1]))
        return json_integer(v);
    return json_string(project_id);
}
