/*
 * store_s3.c - the object store (storage.h) on S3-compatible storage (AWS S3,
 * Cloudflare R2, MinIO, s3rver) over libcurl's easy interface, signed with
 * AWS SigV4 by curl (CURLOPT_AWS_SIGV4); presigned URLs by s3_sigv4.c.
 *
 * DESIGN
 *  - One transfer at a time per call: every public call makes its own easy
 *    handle, reuses it for the requests the call needs (the parts of a
 *    multipart upload share its connection) and frees it. The S3Store context
 *    is read-only after open, so calls from many threads need no lock. curl's
 *    process-wide init runs once through pthread_once; CURLOPT_NOSIGNAL keeps
 *    curl away from signals in a threaded server.
 *  - Bodies stream: a PUT reads the file at its offset from curl's read
 *    callback (a multipart part is just a slice), a GET writes straight to the
 *    destination file, a ranged GET into the caller's buffer. Only S3's XML
 *    answers (listings, upload ids, errors) are held in memory, capped.
 *  - Retries (perform): connection-level curl errors, HTTP 5xx and 429 are
 *    retried max_retries times after retry_base_ms * 2^n (jittered to half..full,
 *    capped at 20 s, at least any Retry-After). Each try restarts its body from
 *    the start of its slice and truncates its output, so a retry never mixes
 *    bytes of two tries. Local I/O errors and other HTTP errors are not retried.
 *  - Atomicity: a single PUT is atomic in S3. A multipart upload is invisible
 *    until CompleteMultipartUpload; on any failure it is aborted, so no parts
 *    stay billed. A GET to a file writes "<path>.tmp-XXXXXX" and renames.
 *  - curl 7.88 signs what it is given: the query string must already be in
 *    canonical form (sorted, encoded, "k=" for empty values) and the header
 *    x-amz-content-sha256 must be present (we send UNSIGNED-PAYLOAD; TLS
 *    protects the body in transit). Keys are percent-encoded here.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "core/error.h"
#include "core/log.h"
#include "storage/storage_int.h"

#define LOG_TAG "storage"
#define MIB ((int64_t)1 << 20)
#define S3_MIN_PART (5 * MIB)         /* S3's minimum part size (all parts but the last) */
#define S3_MAX_PUT ((int64_t)5 << 30) /* S3's largest single PUT and largest part */
#define S3_MAX_PARTS 10000
#define XML_MAX (16 * MIB)       /* cap on an XML answer held in memory */
#define ERR_BODY_MAX (64 * 1024) /* error bodies beyond this are cut */
#define URL_MAX 8192
#define BACKOFF_CAP_MS 20000

typedef struct S3Store {
    char scheme[8];   /* "http" or "https" */
    char host[600];   /* Host as curl sends it (default port dropped); vhost: bucket.host */
    char prefix[800]; /* canonical path up to the key: [basepath][/bucket] */
    char bucket[256];
    char region[64];
    char access_key[256];
    char secret_key[256];
    char sigv4[96]; /* "aws:amz:<region>:s3" */
    int64_t threshold;
    int64_t part_size;
    int max_retries;
    int retry_base_ms;
    int list_page;
} S3Store;

/* ---- small helpers ------------------------------------------------------------------------- */

typedef struct Buf {
    char *data; /* NUL-terminated */
    size_t len, cap, max;
} Buf;

static int buf_add(Buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *d;
        if (b->len + n + 1 > b->max)
            return REEL_ERR(EFBIG);
        while (cap < b->len + n + 1)
            cap *= 2;
        if (!(d = realloc(b->data, cap)))
            return REEL_ERR(ENOMEM);
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static int buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int buf_printf(Buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return REEL_ERR(ENAMETOOLONG);
    return buf_add(b, tmp, (size_t)n);
}

/* Text of the first <tag>...</tag> in [s, s + n), or NULL. */
static const char *xml_find(const char *s, size_t n, const char *tag, size_t *len)
{
    char open[64], close[64];
    const char *a, *b;
    int lo = snprintf(open, sizeof(open), "<%s>", tag);
    int lc = snprintf(close, sizeof(close), "</%s>", tag);

    if (!s || !(a = memmem(s, n, open, (size_t)lo)))
        return NULL;
    a += lo;
    if (!(b = memmem(a, n - (size_t)(a - s), close, (size_t)lc)))
        return NULL;
    *len = (size_t)(b - a);
    return a;
}

/* Decode XML text (the five entities and numeric references) into out (size bytes). */
static int xml_text(char *out, size_t size, const char *s, size_t n)
{
    static const struct {
        const char *name;
        char c;
    } ents[] = {{"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''}};
    size_t o = 0;

    for (size_t i = 0; i < n;) {
        unsigned char utf[4];
        size_t ul = 0;
        if (s[i] != '&') {
            utf[ul++] = (unsigned char)s[i++];
        } else if (i + 1 < n && s[i + 1] == '#') {
            /* &#NN; or &#xHH; -> UTF-8 */
            size_t j = i + 2;
            int hex = j < n && (s[j] == 'x' || s[j] == 'X');
            unsigned long cp = 0;
            if (hex)
                j++;
            for (; j < n && s[j] != ';' && j - i < 12; j++) {
                int c = s[j], d = c >= '0' && c <= '9'          ? c - '0'
                                  : hex && c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : hex && c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                                : -1;
                if (d < 0)
                    return REEL_ERR(EINVAL);
                cp = cp * (hex ? 16 : 10) + (unsigned long)d;
            }
            if (j >= n || s[j] != ';' || cp == 0 || cp > 0x10FFFF)
                return REEL_ERR(EINVAL);
            if (cp < 0x80) {
                utf[ul++] = (unsigned char)cp;
            } else if (cp < 0x800) {
                utf[ul++] = (unsigned char)(0xC0 | (cp >> 6));
                utf[ul++] = (unsigned char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                utf[ul++] = (unsigned char)(0xE0 | (cp >> 12));
                utf[ul++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                utf[ul++] = (unsigned char)(0x80 | (cp & 0x3F));
            } else {
                utf[ul++] = (unsigned char)(0xF0 | (cp >> 18));
                utf[ul++] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
                utf[ul++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                utf[ul++] = (unsigned char)(0x80 | (cp & 0x3F));
            }
            i = j + 1;
        } else {
            size_t k = 0;
            for (; k < sizeof(ents) / sizeof(ents[0]); k++) {
                size_t el = strlen(ents[k].name);
                if (i + 1 + el <= n && !memcmp(s + i + 1, ents[k].name, el)) {
                    utf[ul++] = (unsigned char)ents[k].c;
                    i += 1 + el;
                    break;
                }
            }
            if (k == sizeof(ents) / sizeof(ents[0]))
                return REEL_ERR(EINVAL);
        }
        if (o + ul >= size)
            return REEL_ERR(ENAMETOOLONG);
        memcpy(out + o, utf, ul);
        o += ul;
    }
    out[o] = '\0';
    return 0;
}

/* Escape &, < and > for XML text. */
static int xml_escape(Buf *b, const char *s)
{
    int ret = 0;
    for (; *s && ret == 0; s++) {
        const char *e = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : NULL;
        ret = e ? buf_add(b, e, strlen(e)) : buf_add(b, s, 1);
    }
    return ret;
}

/* "2023-11-24T15:48:00.000Z" -> seconds since the epoch, 0 if unreadable */
static int64_t parse_iso8601(const char *s)
{
    struct tm tm = {0};
    int y, mo, d, h, mi, sec;

    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) != 6)
        return 0;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    return (int64_t)timegm(&tm);
}

static int make_parents(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int r = mkdir(path, 0755);
        *p = '/';
        if (r < 0 && errno != EEXIST)
            return REEL_ERR(errno);
    }
    return 0;
}

/* ---- curl setup ---------------------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Parse "scheme://host[:port][/base]" into s3 (scheme, host, prefix). */
static int parse_endpoint(S3Store *s3, const char *endpoint, int path_style, char *errmsg)
{
    const char *p = strstr(endpoint, "://"), *auth, *slash;
    char hostport[512], base[256];
    size_t hl, bl;

    if (!p || !((p - endpoint == 4 && !strncasecmp(endpoint, "http", 4)) ||
                (p - endpoint == 5 && !strncasecmp(endpoint, "https", 5))))
        return reel_fail(errmsg, REEL_ERR(EINVAL),
                         "storage: s3 endpoint '%.200s' must start with http:// or https://",
                         endpoint);
    snprintf(s3->scheme, sizeof(s3->scheme), "%s", p - endpoint == 5 ? "https" : "http");
    auth = p + 3;
    slash = strchr(auth, '/');
    hl = slash ? (size_t)(slash - auth) : strlen(auth);
    if (!hl || hl >= sizeof(hostport) || memchr(auth, '@', hl) || memchr(auth, '?', hl) ||
        memchr(auth, '#', hl))
        return reel_fail(errmsg, REEL_ERR(EINVAL),
                         "storage: s3 endpoint '%.200s' has no usable host", endpoint);
    memcpy(hostport, auth, hl);
    hostport[hl] = '\0';
    /* curl leaves a default port out of Host:, and the signature covers Host */
    if (hl > 3 && !strcmp(s3->scheme, "http") && !strcmp(hostport + hl - 3, ":80"))
        hostport[hl - 3] = '\0';
    if (hl > 4 && !strcmp(s3->scheme, "https") && !strcmp(hostport + hl - 4, ":443"))
        hostport[hl - 4] = '\0';
    base[0] = '\0';
    if (slash) {
        bl = strlen(slash);
        while (bl && slash[bl - 1] == '/')
            bl--;
        if (bl >= sizeof(base) || strpbrk(slash, "?#% "))
            return reel_fail(errmsg, REEL_ERR(EINVAL),
                             "storage: s3 endpoint '%.200s': unusable path", endpoint);
        memcpy(base, slash, bl);
        base[bl] = '\0';
    }
    if (path_style)
        hl = (size_t)snprintf(s3->host, sizeof(s3->host), "%s", hostport) >= sizeof(s3->host) ||
             (size_t)snprintf(s3->prefix, sizeof(s3->prefix), "%s/%s", base, s3->bucket) >=
                 sizeof(s3->prefix);
    else
        hl = (size_t)snprintf(s3->host, sizeof(s3->host), "%s.%s", s3->bucket, hostport) >=
                 sizeof(s3->host) ||
             (size_t)snprintf(s3->prefix, sizeof(s3->prefix), "%s", base) >= sizeof(s3->prefix);
    if (hl)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "storage: s3 endpoint '%.200s' is too long",
                         endpoint);
    return 0;
}

static int s3_open(void **priv, const ReelStoreConfig *cfg, char *errmsg)
{
    S3Store *s3;
    int ret;

    *priv = NULL;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "storage: libcurl failed to start: %s",
                         curl_easy_strerror(curl_init_rc));
    if (!cfg->endpoint || !*cfg->endpoint || !cfg->bucket || !*cfg->bucket)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "storage: s3 needs an endpoint and a bucket");
    if (!cfg->access_key || !*cfg->access_key || !cfg->secret_key || !*cfg->secret_key)
        return reel_fail(errmsg, REEL_ERR(EINVAL),
                         "storage: s3 needs an access key and a secret key");
    if (strlen(cfg->bucket) > 63 || strspn(cfg->bucket, "abcdefghijklmnopqrstuvwxyz"
                                                        "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                        "0123456789.-_") != strlen(cfg->bucket))
        return reel_fail(errmsg, REEL_ERR(EINVAL), "storage: s3 bucket name '%.100s' is not valid",
                         cfg->bucket);
    if (strlen(cfg->access_key) >= sizeof(s3->access_key) ||
        strlen(cfg->secret_key) >= sizeof(s3->secret_key) ||
        (cfg->region &&
         (strlen(cfg->region) >= sizeof(s3->region) ||
          strspn(cfg->region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(cfg->region))))
        return reel_fail(errmsg, REEL_ERR(EINVAL), "storage: s3 region or keys are not valid");
    if (cfg->part_size && (cfg->part_size < S3_MIN_PART || cfg->part_size > S3_MAX_PUT))
        return reel_fail(errmsg, REEL_ERR(EINVAL),
                         "storage: s3 part size must be 5 MiB to 5 GiB, not %lld bytes",
                         (long long)cfg->part_size);
    if (cfg->multipart_threshold < 0)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "storage: negative multipart threshold");
    if (!(s3 = calloc(1, sizeof(*s3))))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "storage: out of memory");
    snprintf(s3->bucket, sizeof(s3->bucket), "%s", cfg->bucket);
    snprintf(s3->region, sizeof(s3->region), "%s",
             cfg->region && *cfg->region ? cfg->region : "us-east-1");
    snprintf(s3->access_key, sizeof(s3->access_key), "%s", cfg->access_key);
    snprintf(s3->secret_key, sizeof(s3->secret_key), "%s", cfg->secret_key);
    snprintf(s3->sigv4, sizeof(s3->sigv4), "aws:amz:%s:s3", s3->region);
    s3->part_size = cfg->part_size ? cfg->part_size : 16 * MIB;
    s3->threshold = cfg->multipart_threshold ? cfg->multipart_threshold : 64 * MIB;
    if (s3->threshold > S3_MAX_PUT)
        s3->threshold = S3_MAX_PUT;
    s3->max_retries = cfg->max_retries == 0 ? 4 : cfg->max_retries < 0 ? 0 : cfg->max_retries;
    if (s3->max_retries > 20)
        s3->max_retries = 20;
    s3->retry_base_ms = cfg->retry_base_ms > 0 ? cfg->retry_base_ms : 200;
    if (s3->retry_base_ms > 60000)
        s3->retry_base_ms = 60000;
    s3->list_page = cfg->list_page > 0 && cfg->list_page < 1000 ? cfg->list_page : 1000;
    if ((ret = parse_endpoint(s3, cfg->endpoint, cfg->path_style, errmsg)) < 0) {
        free(s3);
        return ret;
    }
    *priv = s3;
    return 0;
}

static void s3_close(void **priv)
{
    S3Store *s3 = *priv;
    if (s3) {
        /* the secret stays out of freed memory */
        memset(s3->secret_key, 0, sizeof(s3->secret_key));
        free(s3);
    }
    *priv = NULL;
}

/* ---- one request, with retries ------------------------------------------------------------- */

typedef struct Call {
    S3Store *s3;
    CURL *curl;
    char *errmsg;
    char url[URL_MAX];
    char curlerr[CURL_ERROR_SIZE];
} Call;

typedef struct Req {
    const char *method; /* GET PUT POST HEAD DELETE */
    const char *key;    /* NULL: the bucket */
    const char *query;  /* canonical query string without '?', or NULL */
    const char *range;  /* "bytes=a-b" or NULL */
    int accept_404;     /* 404 is success (DELETE) */
    int accept_416;     /* 416 is success (range past the end) */
    /* request body: a file slice, or memory */
    int in_fd;
    int64_t in_off, in_len;
    const char *in_mem;
    size_t in_mem_len;
    int post; /* POST in_mem (possibly empty) */
    /* response body: a file, a caller buffer, or mem (XML) */
    int out_fd;
    char *out_buf;
    size_t out_cap;
    int64_t range_off; /* out_buf: where the range starts (to skip if the server ignores it) */
    int want_mem;      /* keep a 2xx body in mem */
    /* per try */
    int64_t in_pos;
    int64_t out_len;
    int64_t skip;
    int status_seen;
    int stop_ok;     /* out_buf filled: stopping the transfer is success */
    int local_errno; /* local read/write failure, not retried */
    long status;
    long retry_after_s;
    char etag[256];
    Buf mem;
} Req;

static void req_init(Req *r, const char *method, const char *key)
{
    memset(r, 0, sizeof(*r));
    r->method = method;
    r->key = key;
    r->in_fd = -1;
    r->out_fd = -1;
    r->mem.max = XML_MAX;
}

static void req_uninit(Req *r)
{
    free(r->mem.data);
    r->mem.data = NULL;
}

static size_t on_read(char *dst, size_t size, size_t nmemb, void *opaque)
{
    Req *r = opaque;
    size_t want = size * nmemb;

    if (r->in_mem) {
        size_t left = r->in_mem_len - (size_t)r->in_pos;
        size_t n = want < left ? want : left;
        memcpy(dst, r->in_mem + r->in_pos, n);
        r->in_pos += (int64_t)n;
        return n;
    }
    if ((int64_t)want > r->in_len - r->in_pos)
        want = (size_t)(r->in_len - r->in_pos);
    if (!want)
        return 0;
    for (;;) {
        ssize_t n = pread(r->in_fd, dst, want, r->in_off + r->in_pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* a read error, or the file shrank under us */
            r->local_errno = n < 0 ? errno : EIO;
            return CURL_READFUNC_ABORT;
        }
        r->in_pos += n;
        return (size_t)n;
    }
}

static int on_seek(void *opaque, curl_off_t offset, int origin)
{
    Req *r = opaque;
    int64_t len = r->in_mem ? (int64_t)r->in_mem_len : r->in_len;

    if (origin != SEEK_SET || offset < 0 || offset > len)
        return CURL_SEEKFUNC_CANTSEEK;
    r->in_pos = offset;
    return CURL_SEEKFUNC_OK;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *opaque)
{
    Call *c = ((void **)opaque)[0];
    Req *r = ((void **)opaque)[1];
    size_t n = size * nmemb;
    long status = 0;

    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300 || r->want_mem || (r->out_fd < 0 && !r->out_buf)) {
        /* XML answer or error body: errors are kept up to a limit, the rest dropped */
        if (status >= 300 && r->mem.len >= ERR_BODY_MAX)
            return n;
        if (buf_add(&r->mem, data, n) < 0) {
            r->local_errno = EFBIG;
            return 0;
        }
        return n;
    }
    if (r->out_fd >= 0) {
        for (size_t off = 0; off < n;) {
            ssize_t w = pwrite(r->out_fd, data + off, n - off, r->out_len);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                r->local_errno = errno;
                return 0;
            }
            off += (size_t)w;
            r->out_len += w;
        }
        return n;
    }
    /* out_buf: a range. A server that ignores Range answers 200 with the whole
     * object; then skip to the range's start. */
    if (!r->status_seen) {
        r->status_seen = 1;
        r->skip = status == 200 ? r->range_off : 0;
    }
    size_t used = 0;
    if (r->skip) {
        used = (int64_t)n < r->skip ? n : (size_t)r->skip;
        r->skip -= (int64_t)used;
    }
    size_t room = r->out_cap - (size_t)r->out_len, take = n - used < room ? n - used : room;
    memcpy(r->out_buf + r->out_len, data + used, take);
    r->out_len += (int64_t)take;
    if (used + take < n) {
        r->stop_ok = 1; /* have all we asked for: stop the transfer */
        return 0;
    }
    return n;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *opaque)
{
    Req *r = opaque;
    size_t n = size * nmemb, vl;
    const char *v;

    if (n >= 5 && !strncmp(line, "HTTP/", 5)) {
        /* a new response (after 100 Continue, say): forget the previous one's headers */
        r->etag[0] = '\0';
        r->retry_after_s = 0;
        return n;
    }
    if (n > 5 && !strncasecmp(line, "ETag:", 5)) {
        v = line + 5;
    } else if (n > 12 && !strncasecmp(line, "Retry-After:", 12)) {
        long s = strtol(line + 12, NULL, 10);
        r->retry_after_s = s > 0 ? s : 0;
        return n;
    } else {
        return n;
    }
    while (v < line + n && (*v == ' ' || *v == '\t'))
        v++;
    vl = (size_t)(line + n - v);
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    if (vl < sizeof(r->etag)) {
        memcpy(r->etag, v, vl);
        r->etag[vl] = '\0';
    }
    return n;
}

/* Build c->url for r: scheme://host + prefix + /key + ?query */
static int build_url(Call *c, const Req *r)
{
    S3Store *s3 = c->s3;
    size_t len;
    int n = snprintf(c->url, sizeof(c->url), "%s://%s%s", s3->scheme, s3->host, s3->prefix);

    if (n < 0 || (size_t)n >= sizeof(c->url))
        return REEL_ERR(ENAMETOOLONG);
    len = (size_t)n;
    if (r->key) {
        if (len + 2 >= sizeof(c->url))
            return REEL_ERR(ENAMETOOLONG);
        c->url[len++] = '/';
        c->url[len] = '\0';
        if (reel_s3_uri_encode(c->url, sizeof(c->url), &len, r->key, 1) < 0)
            return REEL_ERR(ENAMETOOLONG);
    } else if (!s3->prefix[0]) {
        c->url[len++] = '/'; /* virtual-host bucket root */
        c->url[len] = '\0';
    }
    if (r->query && *r->query) {
        n = snprintf(c->url + len, sizeof(c->url) - len, "?%s", r->query);
        if (n < 0 || (size_t)n >= sizeof(c->url) - len)
            return REEL_ERR(ENAMETOOLONG);
    }
    return 0;
}

static int transient_curl(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

static int curl_errno(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
        return EHOSTUNREACH;
    case CURLE_COULDNT_CONNECT:
        return ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return ETIMEDOUT;
    case CURLE_OUT_OF_MEMORY:
        return ENOMEM;
    default:
        return EIO;
    }
}

static void backoff(Call *c, const Req *r, int attempt, const char *why)
{
    static _Thread_local uint64_t seed;
    int64_t ms = (int64_t)c->s3->retry_base_ms << (attempt < 16 ? attempt : 16);
    struct timespec ts;

    if (ms > BACKOFF_CAP_MS)
        ms = BACKOFF_CAP_MS;
    if (!seed)
        seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&seed ^ 0x9E3779B97F4A7C15ull;
    seed ^= seed << 13; /* xorshift: spread retries of many clients */
    seed ^= seed >> 7;
    seed ^= seed << 17;
    ms = ms / 2 + (int64_t)(seed % (uint64_t)(ms / 2 + 1));
    if (r->retry_after_s && r->retry_after_s * 1000 > ms)
        ms = r->retry_after_s * 1000 > 30000 ? 30000 : r->retry_after_s * 1000;
    reel_log(REEL_LOG_WARNING, LOG_TAG, "%s %s: %s; retry %d/%d in %lld ms", r->method,
             r->key ? r->key : c->s3->bucket, why, attempt + 1, c->s3->max_retries, (long long)ms);
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* The sentence and code for a final HTTP error. */
static int http_error(Call *c, Req *r)
{
    char code[128] = "", message[256] = "";
    const char *p, *what = r->key ? r->key : c->s3->bucket;
    size_t n;
    int err;

    if ((p = xml_find(r->mem.data, r->mem.len, "Code", &n)))
        xml_text(code, sizeof(code), p, n);
    if ((p = xml_find(r->mem.data, r->mem.len, "Message", &n)))
        xml_text(message, sizeof(message), p, n);
    if (r->status == 404 && strcmp(code, "NoSuchBucket") && strcmp(code, "NoSuchUpload")) {
        /* expected often (a probe, a cleanup): not logged */
        snprintf(c->errmsg, REEL_ERRMSG_SIZE, "storage: %.300s: no such object%s%s%s", what,
                 code[0] ? " (" : "", code, code[0] ? ")" : "");
        return REEL_ERR(ENOENT);
    }
    err = r->status == 401 || r->status == 403 ? EACCES
          : r->status == 404                   ? ENXIO /* no such bucket or upload */
          : r->status == 400                   ? EINVAL
          : r->status == 409                   ? EBUSY
          : r->status == 429                   ? EAGAIN
                                               : EIO;
    return reel_fail(c->errmsg, REEL_ERR(err), "storage: %s %.300s: %s (HTTP %ld%s%s%s%s)",
                     r->method, what,
                     err == EACCES  ? "access denied by the store"
                     : err == ENXIO ? "no such bucket or upload"
                                    : "the store refused the request",
                     r->status, code[0] ? " " : "", code, message[0] ? ": " : "", message);
}

static int setup(Call *c, Req *r, struct curl_slist *headers, void **wctx)
{
    CURL *h = c->curl;
    int ret;

    if ((ret = build_url(c, r)) < 0)
        return reel_fail(c->errmsg, ret, "storage: %.300s: URL too long",
                         r->key ? r->key : c->s3->bucket);
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, c->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->curlerr);
    curl_easy_setopt(h, CURLOPT_USERNAME, c->s3->access_key);
    curl_easy_setopt(h, CURLOPT_PASSWORD, c->s3->secret_key);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, c->s3->sigv4);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    /* no total timeout (objects are large); a stalled transfer fails instead */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, wctx);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    if (!strcmp(r->method, "HEAD")) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        curl_easy_setopt(h, CURLOPT_FILETIME, 1L);
    } else if (!strcmp(r->method, "PUT")) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, r);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, r);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
                         (curl_off_t)(r->in_mem ? (int64_t)r->in_mem_len : r->in_len));
    } else if (!strcmp(r->method, "POST")) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->in_mem ? r->in_mem : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->in_mem_len);
    } else if (strcmp(r->method, "GET")) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
    }
    return 0;
}

/*
 * Run r, retrying transient failures. Returns 0 on a 2xx (or an accepted
 * 404/416), else a negative error with the sentence in c->errmsg.
 */
static int perform(Call *c, Req *r)
{
    struct curl_slist *headers = NULL, *t;
    void *wctx[2] = {c, r};
    char range[96];
    int ret = 0;

    /* curl 7.88 signs this header and uses its value as the payload hash */
    if (!(t = curl_slist_append(headers, "x-amz-content-sha256: UNSIGNED-PAYLOAD")))
        goto oom;
    headers = t;
    if (r->range) {
        snprintf(range, sizeof(range), "Range: %s", r->range);
        if (!(t = curl_slist_append(headers, range)))
            goto oom;
        headers = t;
    }
    if (r->post && r->in_mem_len) {
        if (!(t = curl_slist_append(headers, "Content-Type: application/xml")))
            goto oom;
        headers = t;
    }
    for (int attempt = 0;; attempt++) {
        CURLcode rc;
        char why[CURL_ERROR_SIZE + 64];

        r->in_pos = r->out_len = r->skip = 0;
        r->status_seen = r->stop_ok = r->local_errno = 0;
        r->status = r->retry_after_s = 0;
        r->etag[0] = '\0';
        r->mem.len = 0;
        if (r->mem.data)
            r->mem.data[0] = '\0';
        c->curlerr[0] = '\0';
        if (r->out_fd >= 0 && ftruncate(r->out_fd, 0) < 0) {
            ret = reel_fail(c->errmsg, REEL_ERR(errno), "storage: %s: %s", r->key, strerror(errno));
            break;
        }
        if ((ret = setup(c, r, headers, wctx)) < 0)
            break;
        rc = curl_easy_perform(c->curl);
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->status);
        if (rc == CURLE_WRITE_ERROR && r->stop_ok)
            rc = CURLE_OK;
        if (r->local_errno) {
            ret =
                reel_fail(c->errmsg, REEL_ERR(r->local_errno), "storage: %s %.300s: %s", r->method,
                          r->key ? r->key : c->s3->bucket,
                          r->local_errno == EFBIG ? "answer too large" : strerror(r->local_errno));
            break;
        }
        if (rc != CURLE_OK && (rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR) &&
            r->status >= 400 && r->status < 500 && r->status != 429) {
            /* the store refused before the body was all sent, then closed: its answer
             * (403, 400...) is the error, not the broken connection */
            ret = http_error(c, r);
            break;
        }
        if (rc != CURLE_OK) {
            snprintf(why, sizeof(why), "%s", c->curlerr[0] ? c->curlerr : curl_easy_strerror(rc));
            if (transient_curl(rc) && attempt < c->s3->max_retries) {
                backoff(c, r, attempt, why);
                continue;
            }
            ret = reel_fail(c->errmsg, REEL_ERR(curl_errno(rc)), "storage: %s %.300s: %s%s",
                            r->method, r->key ? r->key : c->s3->bucket, why,
                            attempt ? " (after retries)" : "");
            break;
        }
        if ((r->status >= 200 && r->status < 300) || (r->accept_404 && r->status == 404) ||
            (r->accept_416 && r->status == 416)) {
            if (r->accept_404 && r->status == 404 &&
                strstr(r->mem.data ? r->mem.data : "", "<Code>NoSuchBucket</Code>")) {
                ret = http_error(c, r);
                break;
            }
            ret = 0;
            break;
        }
        if ((r->status >= 500 || r->status == 429) && attempt < c->s3->max_retries) {
            snprintf(why, sizeof(why), "HTTP %ld", r->status);
            backoff(c, r, attempt, why);
            continue;
        }
        ret = http_error(c, r);
        break;
    }
    curl_slist_free_all(headers);
    return ret;
oom:
    curl_slist_free_all(headers);
    return reel_fail(c->errmsg, REEL_ERR(ENOMEM), "storage: out of memory");
}

static int call_init(Call **pc, S3Store *s3, char *errmsg)
{
    Call *c = calloc(1, sizeof(*c));

    *pc = NULL;
    if (!c || !(c->curl = curl_easy_init())) {
        free(c);
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "storage: cannot start a transfer");
    }
    c->s3 = s3;
    c->errmsg = errmsg;
    *pc = c;
    return 0;
}

static void call_free(Call **pc)
{
    if (*pc) {
        curl_easy_cleanup((*pc)->curl);
        free(*pc);
        *pc = NULL;
    }
}

/* ---- the operations ------------------------------------------------------------------------ */

static int put_single(Call *c, const char *key, int fd, int64_t size)
{
    Req r;
    int ret;

    req_init(&r, "PUT", key);
    r.in_fd = fd;
    r.in_len = size;
    ret = perform(c, &r);
    req_uninit(&r);
    return ret;
}

/* Best effort: drop the parts of a failed upload. */
static void abort_upload(Call *c, const char *key, const char *qid)
{
    char query[1200], msg[REEL_ERRMSG_SIZE];
    char *saved = c->errmsg;
    Req r;

    snprintf(query, sizeof(query), "uploadId=%s", qid);
    req_init(&r, "DELETE", key);
    r.query = query;
    r.accept_404 = 1;
    c->errmsg = msg; /* keep the sentence of the failure that got us here */
    if (perform(c, &r) < 0)
        reel_log(REEL_LOG_WARNING, LOG_TAG, "could not abort the upload of %s: %s", key, msg);
    c->errmsg = saved;
    req_uninit(&r);
}

static int put_multipart(Call *c, const char *key, int fd, int64_t size)
{
    S3Store *s3 = c->s3;
    int64_t part = s3->part_size;
    char upload_id[512], qid[1100], query[1200];
    char **etags = NULL;
    int nparts, ret;
    size_t n, ql;
    const char *p;
    Buf body = {.max = XML_MAX};
    Req r;

    /* S3 allows 10000 parts: grow the part (to whole MiB) for huge files */
    if ((size + part - 1) / part > S3_MAX_PARTS)
        part = ((size + S3_MAX_PARTS - 1) / S3_MAX_PARTS + MIB - 1) / MIB * MIB;
    nparts = (int)((size + part - 1) / part);

    req_init(&r, "POST", key);
    r.query = "uploads=";
    r.post = 1;
    r.want_mem = 1;
    ret = perform(c, &r);
    if (ret >= 0 && (!(p = xml_find(r.mem.data, r.mem.len, "UploadId", &n)) ||
                     xml_text(upload_id, sizeof(upload_id), p, n) < 0 || !upload_id[0]))
        ret = reel_fail(c->errmsg, REEL_ERR(EIO), "storage: PUT %.300s: no upload id in the answer",
                        key);
    req_uninit(&r);
    if (ret < 0)
        return ret;
    ql = 0;
    if (reel_s3_uri_encode(qid, sizeof(qid), &ql, upload_id, 0) < 0)
        return reel_fail(c->errmsg, REEL_ERR(EIO), "storage: PUT %.300s: upload id too long", key);

    if (!(etags = calloc((size_t)nparts, sizeof(*etags)))) {
        ret = reel_fail(c->errmsg, REEL_ERR(ENOMEM), "storage: out of memory");
        goto abort;
    }
    for (int i = 0; i < nparts; i++) {
        /* canonical order: partNumber before uploadId */
        snprintf(query, sizeof(query), "partNumber=%d&uploadId=%s", i + 1, qid);
        req_init(&r, "PUT", key);
        r.query = query;
        r.in_fd = fd;
        r.in_off = (int64_t)i * part;
        r.in_len = size - r.in_off < part ? size - r.in_off : part;
        ret = perform(c, &r);
        if (ret >= 0 && !r.etag[0])
            ret = reel_fail(c->errmsg, REEL_ERR(EIO), "storage: PUT %.300s: part %d has no ETag",
                            key, i + 1);
        if (ret >= 0 && !(etags[i] = strdup(r.etag)))
            ret = reel_fail(c->errmsg, REEL_ERR(ENOMEM), "storage: out of memory");
        req_uninit(&r);
        if (ret < 0)
            goto abort;
    }

    ret = buf_printf(&body, "<CompleteMultipartUpload>");
    for (int i = 0; i < nparts && ret >= 0; i++) {
        if ((ret = buf_printf(&body, "<Part><PartNumber>%d</PartNumber><ETag>", i + 1)) >= 0 &&
            (ret = xml_escape(&body, etags[i])) >= 0)
            ret = buf_printf(&body, "</ETag></Part>");
    }
    if (ret >= 0)
        ret = buf_printf(&body, "</CompleteMultipartUpload>");
    if (ret < 0) {
        ret = reel_fail(c->errmsg, ret, "storage: PUT %.300s: cannot build the part list", key);
        goto abort;
    }
    snprintf(query, sizeof(query), "uploadId=%s", qid);
    /* S3 may answer 200 and put an <Error> in the body (it has started
     * streaming whitespace to keep the connection); such errors are retried */
    for (int attempt = 0;; attempt++) {
        req_init(&r, "POST", key);
        r.query = query;
        r.post = 1;
        r.in_mem = body.data;
        r.in_mem_len = body.len;
        r.want_mem = 1;
        ret = perform(c, &r);
        if (ret >= 0 && xml_find(r.mem.data, r.mem.len, "Code", &n) &&
            strstr(r.mem.data, "<Error>")) {
            r.status = 500;
            if (attempt < s3->max_retries) {
                backoff(c, &r, attempt, "error in a 200 answer");
                req_uninit(&r);
                continue;
            }
            ret = http_error(c, &r);
        }
        req_uninit(&r);
        break;
    }
    if (ret >= 0)
        goto end;
abort:
    abort_upload(c, key, qid);
end:
    if (etags)
        for (int i = 0; i < nparts; i++)
            free(etags[i]);
    free(etags);
    free(body.data);
    return ret;
}

static int s3_put_file(void *priv, const char *key, const char *path, char *errmsg)
{
    S3Store *s3 = priv;
    struct stat sb;
    Call *c = NULL;
    int fd, ret;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return reel_fail(errmsg, REEL_ERR(errno), "storage: %s: %s", path, strerror(errno));
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        ret = reel_fail(errmsg, REEL_ERR(EINVAL), "storage: %s: not a regular file", path);
        goto end;
    }
    if ((ret = call_init(&c, s3, errmsg)) < 0)
        goto end;
    if (sb.st_size > s3->threshold)
        ret = put_multipart(c, key, fd, sb.st_size);
    else
        ret = put_single(c, key, fd, sb.st_size);
end:
    call_free(&c);
    close(fd);
    return ret;
}

static int s3_get_file(void *priv, const char *key, const char *path, char *errmsg)
{
    char tmp[PATH_MAX + 32];
    Call *c = NULL;
    Req r;
    int fd, ret;

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path) >= sizeof(tmp))
        return reel_fail(errmsg, REEL_ERR(ENAMETOOLONG), "storage: path too long");
    if ((ret = make_parents(tmp)) < 0)
        return reel_fail(errmsg, ret, "storage: cannot create folders for %s", path);
    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0)
        return reel_fail(errmsg, REEL_ERR(errno), "storage: %s: %s", tmp, strerror(errno));
    if ((ret = call_init(&c, priv, errmsg)) < 0)
        goto end;
    req_init(&r, "GET", key);
    r.out_fd = fd;
    ret = perform(c, &r);
    req_uninit(&r);
    if (ret >= 0 && fchmod(fd, 0644) < 0)
        ret = reel_fail(errmsg, REEL_ERR(errno), "storage: %s: %s", path, strerror(errno));
    if (close(fd) < 0 && ret >= 0)
        ret = reel_fail(errmsg, REEL_ERR(errno), "storage: %s: %s", path, strerror(errno));
    fd = -1;
    if (ret >= 0 && rename(tmp, path) < 0)
        ret = reel_fail(errmsg, REEL_ERR(errno), "storage: publish %s: %s", path, strerror(errno));
end:
    call_free(&c);
    if (fd >= 0)
        close(fd);
    if (ret < 0)
        unlink(tmp);
    return ret;
}

static int s3_head(void *priv, const char *key, ReelStoreInfo *info, char *errmsg)
{
    Call *c = NULL;
    curl_off_t len = -1, mtime = -1;
    Req r;
    int ret;

    if ((ret = call_init(&c, priv, errmsg)) < 0)
        return ret;
    req_init(&r, "HEAD", key);
    ret = perform(c, &r);
    if (ret >= 0) {
        curl_easy_getinfo(c->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
        curl_easy_getinfo(c->curl, CURLINFO_FILETIME_T, &mtime);
        if (len < 0)
            ret = reel_fail(errmsg, REEL_ERR(EIO), "storage: HEAD %.300s: no Content-Length", key);
        info->size = len;
        info->mtime = mtime > 0 ? mtime : 0;
    }
    req_uninit(&r);
    call_free(&c);
    return ret;
}

static int64_t s3_get_range(void *priv, const char *key, int64_t offset, void *buf, size_t len,
                            char *errmsg)
{
    char range[64];
    Call *c = NULL;
    Req r;
    int ret;

    if (!len) {
        /* nothing to read, but an absent key is still an error */
        ReelStoreInfo info;
        return (ret = s3_head(priv, key, &info, errmsg)) < 0 ? ret : 0;
    }
    if ((ret = call_init(&c, priv, errmsg)) < 0)
        return ret;
    snprintf(range, sizeof(range), "bytes=%lld-%lld", (long long)offset,
             (long long)(offset + (int64_t)len - 1));
    req_init(&r, "GET", key);
    r.range = range;
    r.accept_416 = 1; /* the range starts at or past the end */
    r.out_buf = buf;
    r.out_cap = len;
    r.range_off = offset;
    ret = perform(c, &r);
    req_uninit(&r);
    call_free(&c);
    if (ret < 0)
        return ret;
    return r.status == 416 ? 0 : r.out_len;
}

static int s3_delete(void *priv, const char *key, char *errmsg)
{
    Call *c = NULL;
    Req r;
    int ret;

    if ((ret = call_init(&c, priv, errmsg)) < 0)
        return ret;
    req_init(&r, "DELETE", key);
    r.accept_404 = 1;
    ret = perform(c, &r);
    req_uninit(&r);
    call_free(&c);
    return ret;
}

/* Call cb for each <Contents> of one ListObjectsV2 page. */
static int list_page(Call *c, const Buf *page, ReelStoreListCb cb, void *opaque, char *key)
{
    const char *s = page->data, *end = page->data + page->len;
    size_t n;

    for (;;) {
        const char *item = xml_find(s, (size_t)(end - s), "Contents", &n), *v;
        size_t vl;
        char num[32], date[64];
        ReelStoreInfo info = {0, 0};
        int ret;

        if (!item)
            return 0;
        if (!(v = xml_find(item, n, "Key", &vl)) ||
            xml_text(key, REEL_STORE_KEY_MAX * 4 + 1, v, vl) < 0)
            return reel_fail(c->errmsg, REEL_ERR(EIO),
                             "storage: list: unreadable key in the answer");
        if ((v = xml_find(item, n, "Size", &vl)) && !xml_text(num, sizeof(num), v, vl))
            info.size = strtoll(num, NULL, 10);
        if ((v = xml_find(item, n, "LastModified", &vl)) && !xml_text(date, sizeof(date), v, vl))
            info.mtime = parse_iso8601(date);
        if ((ret = cb(opaque, key, &info)) != 0)
            return ret;
        s = item + n;
    }
}

static int s3_list(void *priv, const char *prefix, ReelStoreListCb cb, void *opaque, char *errmsg)
{
    S3Store *s3 = priv;
    char *token = NULL, *query = NULL, *key = NULL;
    size_t ql, n;
    const char *p;
    Call *c = NULL;
    Req r;
    int ret;

    req_init(&r, "GET", NULL);
    if (!(query = malloc(URL_MAX)) || !(key = malloc(REEL_STORE_KEY_MAX * 4 + 1)) ||
        !(token = malloc(URL_MAX))) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "storage: out of memory");
        goto end;
    }
    token[0] = '\0';
    if ((ret = call_init(&c, s3, errmsg)) < 0)
        goto end;
    for (;;) {
        /* parameters in canonical (byte) order */
        ql = 0;
        query[0] = '\0';
        if (token[0]) {
            ql = (size_t)snprintf(query, URL_MAX, "continuation-token=");
            if (reel_s3_uri_encode(query, URL_MAX, &ql, token, 0) < 0)
                goto too_long;
            query[ql++] = '&';
        }
        ql += (size_t)snprintf(query + ql, URL_MAX - ql, "list-type=2&max-keys=%d", s3->list_page);
        if (prefix[0]) {
            ql += (size_t)snprintf(query + ql, URL_MAX - ql, "&prefix=");
            if (reel_s3_uri_encode(query, URL_MAX, &ql, prefix, 0) < 0)
                goto too_long;
        }
        r.query = query;
        r.want_mem = 1;
        if ((ret = perform(c, &r)) < 0)
            goto end;
        if ((ret = list_page(c, &r.mem, cb, opaque, key)) != 0)
            goto end;
        if (!(p = xml_find(r.mem.data, r.mem.len, "IsTruncated", &n)) || n != 4 ||
            memcmp(p, "true", 4))
            break;
        if (!(p = xml_find(r.mem.data, r.mem.len, "NextContinuationToken", &n)) ||
            xml_text(token, URL_MAX / 3, p, n) < 0 || !token[0]) {
            ret =
                reel_fail(errmsg, REEL_ERR(EIO),
                          "storage: list %.300s: truncated answer without a usable token", prefix);
            goto end;
        }
    }
    ret = 0;
    goto end;
too_long:
    ret = reel_fail(errmsg, REEL_ERR(ENAMETOOLONG), "storage: list %.300s: query too long", prefix);
end:
    req_uninit(&r);
    call_free(&c);
    free(query);
    free(key);
    free(token);
    return ret;
}

static int s3_presign_get(void *priv, const char *key, int expires_s, int64_t now, char *url,
                          size_t size, char *errmsg)
{
    S3Store *s3 = priv;
    char path[sizeof(s3->prefix) + 3 * REEL_STORE_KEY_MAX + 2];
    size_t len = (size_t)snprintf(path, sizeof(path), "%s/", s3->prefix);
    ReelS3Presign p = {
        .method = "GET",
        .scheme = s3->scheme,
        .host = s3->host,
        .path = path,
        .region = s3->region,
        .access_key = s3->access_key,
        .secret_key = s3->secret_key,
        .now = now,
        .expires_s = expires_s,
    };
    int ret;

    if ((ret = reel_s3_uri_encode(path, sizeof(path), &len, key, 1)) < 0 ||
        (ret = reel_s3_presign(&p, url, size)) < 0)
        return reel_fail(errmsg, ret, "storage: cannot presign %.300s: %s", key,
                         ret == REEL_ERR(ENAMETOOLONG) ? "URL too long" : "signing failed");
    return 0;
}

static int s3_local_path(void *priv, const char *key, char *path, size_t size, char *errmsg)
{
    return REEL_ERR(ENOTSUP);
}

const ReelStoreBackend reel_store_backend_s3 = {
    .name = "s3",
    .open = s3_open,
    .close = s3_close,
    .put_file = s3_put_file,
    .get_file = s3_get_file,
    .get_range = s3_get_range,
    .head = s3_head,
    .del = s3_delete,
    .list = s3_list,
    .presign_get = s3_presign_get,
    .local_path = s3_local_path,
};
