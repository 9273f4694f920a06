/*
 * test_storage_unit.c - storage without a real S3 server: key and prefix rules,
 * SigV4 URI encoding, the presigner against AWS's documented example, S3
 * configuration checks, and the S3 client's HTTP behaviour (retries, backoff,
 * error mapping, multipart protocol and abort, ranges) against a scripted
 * HTTP server in a thread of this process.
 *
 * usage: test_storage_unit <scratch folder>
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/error.h"
#include "storage/storage.h"
#include "storage/storage_int.h"
#include "testutil.h"

static char scratch[PATH_MAX];

/* ---- keys ---------------------------------------------------------------------------------- */

static void test_key_rules(void **state)
{
    static const char *good[] = {
        "a",
        "u1/temp/multi_clip_abc/source_0.mp4",
        "u1/working_videos/working_p_1a2b3c4d.mp4",
        "..a/b..", /* dots inside a name are fine */
        "a/.hidden",
        "dir with space/é ü 漢字 +~%&=?.mp4",
        "x.tmp-123456",
    };
    static const char *bad[] = {
        NULL,     "",    "/a",    "a/",   "a//b", ".",    "..",   "../a",  "a/..",
        "a/../b", "./a", "a/./b", "a\\b", "a\tb", "a\nb", "a\rb", "a\x01", "a\x7f",
    };
    char longkey[REEL_STORE_KEY_MAX + 2];

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(reel_store_key_valid(good[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(reel_store_key_valid(bad[i]));
    memset(longkey, 'k', sizeof(longkey));
    longkey[REEL_STORE_KEY_MAX] = '\0';
    assert_true(reel_store_key_valid(longkey));
    longkey[REEL_STORE_KEY_MAX] = 'k';
    longkey[REEL_STORE_KEY_MAX + 1] = '\0';
    assert_false(reel_store_key_valid(longkey));
}

static void test_prefix_rules(void **state)
{
    (void)state;
    assert_true(reel_store_prefix_valid(""));
    assert_true(reel_store_prefix_valid("u1/"));
    assert_true(reel_store_prefix_valid("u1/temp/multi_"));
    assert_true(reel_store_prefix_valid("u1/.")); /* lists u1/.hidden */
    assert_true(reel_store_prefix_valid("a..b/"));
    assert_false(reel_store_prefix_valid(NULL));
    assert_false(reel_store_prefix_valid("/"));
    assert_false(reel_store_prefix_valid("/u1"));
    assert_false(reel_store_prefix_valid(".."));
    assert_false(reel_store_prefix_valid("../"));
    assert_false(reel_store_prefix_valid("u1/.."));
    assert_false(reel_store_prefix_valid("u1/../x"));
    assert_false(reel_store_prefix_valid("u1//"));
    assert_false(reel_store_prefix_valid("./"));
    assert_false(reel_store_prefix_valid("a\\b"));
    assert_false(reel_store_prefix_valid("a\nb"));
}

static void test_uri_encode(void **state)
{
    char out[256];
    size_t len = 0;

    (void)state;
    assert_int_equal(reel_s3_uri_encode(out, sizeof(out), &len, "a b/é+~_-.*", 1), 0);
    assert_string_equal(out, "a%20b/%C3%A9%2B~_-.%2A");
    len = 0;
    assert_int_equal(reel_s3_uri_encode(out, sizeof(out), &len, "a/b=c&d", 0), 0);
    assert_string_equal(out, "a%2Fb%3Dc%26d");
    /* appends at len; refuses to overflow */
    assert_int_equal(reel_s3_uri_encode(out, sizeof(out), &len, "!", 0), 0);
    assert_string_equal(out, "a%2Fb%3Dc%26d%21");
    len = 0;
    assert_int_equal(reel_s3_uri_encode(out, 4, &len, "abcd", 0), REEL_ERR(ENAMETOOLONG));
    len = 0;
    assert_int_equal(reel_s3_uri_encode(out, 5, &len, "ab c", 0), REEL_ERR(ENAMETOOLONG));
}

/* ---- SigV4 presign: AWS's documented example ------------------------------------------------ */

/*
 * "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)",
 * Amazon S3 API reference: GET examplebucket/test.txt (virtual-host style),
 * us-east-1, 2013-05-24T00:00:00Z, 86400 s, AKIAIOSFODNN7EXAMPLE with the
 * documentation's example secret.
 */
#define AWS_EXAMPLE_SIG "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
#define AWS_EXAMPLE_TIME 1369353600 /* 20130524T000000Z */

static ReelStore *open_example(int path_style, const char *endpoint)
{
    ReelStoreConfig cfg = {
        .kind = "s3",
        .endpoint = endpoint,
        .bucket = "examplebucket",
        .region = "us-east-1",
        .access_key = "AKIAIOSFODNN7EXAMPLE",
        .secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        .path_style = path_style,
    };
    ReelStore *st = NULL;
    char err[REEL_ERRMSG_SIZE];

    assert_int_equal(reel_store_open(&st, &cfg, err), 0);
    return st;
}

static void test_presign_aws_example(void **state)
{
    ReelStore *st = open_example(0, "https://s3.amazonaws.com");
    char url[2048];

    (void)state;
    assert_int_equal(
        reel_store_presign_get_at(st, "test.txt", 86400, AWS_EXAMPLE_TIME, url, sizeof(url)), 0);
    assert_string_equal(
        url, "https://examplebucket.s3.amazonaws.com/test.txt"
             "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
             "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
             "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400"
             "&X-Amz-SignedHeaders=host"
             "&X-Amz-Signature=" AWS_EXAMPLE_SIG);
    /* any change of an input changes the signature */
    assert_int_equal(
        reel_store_presign_get_at(st, "test.txt", 86401, AWS_EXAMPLE_TIME, url, sizeof(url)), 0);
    assert_null(strstr(url, AWS_EXAMPLE_SIG));
    assert_int_equal(
        reel_store_presign_get_at(st, "test.txt", 86400, AWS_EXAMPLE_TIME + 1, url, sizeof(url)),
        0);
    assert_null(strstr(url, AWS_EXAMPLE_SIG));
    /* too small a buffer, bad lifetimes */
    assert_int_equal(reel_store_presign_get_at(st, "test.txt", 86400, AWS_EXAMPLE_TIME, url, 100),
                     REEL_ERR(ENAMETOOLONG));
    assert_int_equal(reel_store_presign_get(st, "test.txt", 0, url, sizeof(url)), REEL_ERR(EINVAL));
    assert_int_equal(reel_store_presign_get(st, "test.txt", 604801, url, sizeof(url)),
                     REEL_ERR(EINVAL));
    assert_int_equal(reel_store_presign_get(st, "../x", 60, url, sizeof(url)), REEL_ERR(EINVAL));
    reel_store_close(&st);
}

static void test_presign_shapes(void **state)
{
    ReelStore *st;
    char url[2048];

    (void)state;
    /* path style, explicit default port dropped (curl leaves it out of Host) */
    st = open_example(1, "https://s3.amazonaws.com:443/");
    assert_int_equal(
        reel_store_presign_get_at(st, "dir/a b+é.mp4", 60, AWS_EXAMPLE_TIME, url, sizeof(url)), 0);
    assert_true(
        !strncmp(url, "https://s3.amazonaws.com/examplebucket/dir/a%20b%2B%C3%A9.mp4?", 62));
    assert_non_null(strstr(url, "&X-Amz-Expires=60&"));
    reel_store_close(&st);
    /* a port that is not the default stays, a base path is kept */
    st = open_example(1, "http://127.0.0.1:9000/s3/");
    assert_int_equal(reel_store_presign_get_at(st, "k", 60, AWS_EXAMPLE_TIME, url, sizeof(url)), 0);
    assert_true(!strncmp(url, "http://127.0.0.1:9000/s3/examplebucket/k?X-Amz-Algorithm=", 57));
    reel_store_close(&st);
    /* R2: region auto in the credential scope */
    {
        ReelStoreConfig cfg = {.kind = "s3",
                               .endpoint = "https://acct.r2.cloudflarestorage.com",
                               .bucket = "b",
                               .region = "auto",
                               .access_key = "AK",
                               .secret_key = "SK",
                               .path_style = 1};
        char err[REEL_ERRMSG_SIZE];
        assert_int_equal(reel_store_open(&st, &cfg, err), 0);
        assert_int_equal(reel_store_presign_get_at(st, "k", 60, AWS_EXAMPLE_TIME, url, sizeof(url)),
                         0);
        assert_non_null(strstr(url, "X-Amz-Credential=AK%2F20130524%2Fauto%2Fs3%2Faws4_request"));
        reel_store_close(&st);
    }
}

static void test_s3_config_errors(void **state)
{
    ReelStoreConfig ok = {.kind = "s3",
                          .endpoint = "http://127.0.0.1:1",
                          .bucket = "b",
                          .access_key = "a",
                          .secret_key = "s",
                          .path_style = 1};
    ReelStoreConfig cfg;
    ReelStore *st = NULL;
    char err[REEL_ERRMSG_SIZE], path[64];

    (void)state;
    assert_int_equal(reel_store_open(&st, &ok, err), 0);
    assert_string_equal(reel_store_kind(st), "s3");
    assert_int_equal(reel_store_local_path(st, "a/b", path, sizeof(path)), REEL_ERR(ENOTSUP));
    assert_string_equal(reel_store_errmsg(st), ""); /* a probe, not an error */
    reel_store_close(&st);

    cfg = ok;
    cfg.endpoint = "ftp://host";
    assert_int_equal(reel_store_open(&st, &cfg, err), REEL_ERR(EINVAL));
    assert_non_null(strstr(err, "http"));
    cfg = ok;
    cfg.endpoint = NULL;
    assert_int_equal(reel_store_open(&st, &cfg, err), REEL_ERR(EINVAL));
    cfg = ok;
    cfg.bucket = "";
    assert_int_equal(reel_store_open(&st, &cfg, err), REEL_ERR(EINVAL));
    cfg = ok;
    cfg.bucket = "a/b";
    assert_int_equal(reel_store_open(&st, &cfg, err), REEL_ERR(EINVAL));
    cfg = ok;
    cfg.secret_key = "";
    assert_int_equal(reel_store_open(&st, &cfg, err), REEL_ERR(EINVAL));
    assert_non_null(strstr(err, "secret"));
    cfg = ok;
    cfg.part_size = 1 << 20;
    assert_int_equal(reel_store_open(&st, &cfg, err), REEL_ERR(EINVAL));
    assert_non_null(strstr(err, "5 MiB"));
    cfg = ok;
    cfg.region = "us east";
    assert_int_equal(reel_store_open(&st, &cfg, err), REEL_ERR(EINVAL));
    cfg = ok;
    cfg.endpoint = "http://user@host";
    assert_int_equal(reel_store_open(&st, &cfg, err), REEL_ERR(EINVAL));
    assert_null(st);
}

/* ---- a scripted HTTP server ------------------------------------------------------------------ */

typedef struct FakeReq {
    char method[16];
    char target[1024];
    char range[64];
    char host[128];
    int64_t body_len;
    uint64_t body_sum; /* sum of byte * (position + 1): compares bodies cheaply */
    char body[2048];   /* the first bytes */
    int has_sha_header;
} FakeReq;

typedef struct Fake Fake;
/* Write a whole HTTP response for request number n (0-based) into out. */
typedef void (*FakeHandler)(Fake *f, int n, const FakeReq *rq, char *out, size_t size);

struct Fake {
    int lfd;
    int port;
    pthread_t thread;
    atomic_int stop;
    FakeHandler handler;
    pthread_mutex_t lock;
    FakeReq log[64];
    int n;
    char upload_body[256]; /* what a GET answers with */
};

static void fake_respond(char *out, size_t size, int status, const char *extra, const char *body)
{
    tu_fmt(out, size, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n%s",
           status, body ? strlen(body) : 0, extra ? extra : "", body ? body : "");
}

static int read_line_headers(int fd, char *buf, size_t size, size_t *got)
{
    /* read until the end of the headers; returns header length or -1 */
    while (*got < size - 1) {
        ssize_t n = recv(fd, buf + *got, size - 1 - *got, 0);
        if (n <= 0)
            return -1;
        *got += (size_t)n;
        buf[*got] = '\0';
        char *e = strstr(buf, "\r\n\r\n");
        if (e)
            return (int)(e + 4 - buf);
    }
    return -1;
}

static void fake_serve(Fake *f, int cfd)
{
    char *buf = malloc(1 << 16), *resp = malloc(1 << 16), *p;
    size_t got = 0;
    int hl, n;
    FakeReq rq;
    int64_t clen = 0;

    memset(&rq, 0, sizeof(rq));
    if (!buf || !resp || (hl = read_line_headers(cfd, buf, 1 << 16, &got)) < 0)
        goto end;
    sscanf(buf, "%15s %1023s", rq.method, rq.target);
    for (p = strstr(buf, "\r\n"); p && p < buf + hl; p = strstr(p + 2, "\r\n")) {
        if (!strncasecmp(p + 2, "Content-Length:", 15))
            clen = strtoll(p + 17, NULL, 10);
        else if (!strncasecmp(p + 2, "Host:", 5))
            sscanf(p + 7, " %127[^\r]", rq.host);
        else if (!strncasecmp(p + 2, "Range:", 6))
            sscanf(p + 8, " %63[^\r]", rq.range);
        else if (!strncasecmp(p + 2, "x-amz-content-sha256: UNSIGNED-PAYLOAD", 38))
            rq.has_sha_header = 1;
        else if (!strncasecmp(p + 2, "Expect: 100-continue", 20))
            send(cfd, "HTTP/1.1 100 Continue\r\n\r\n", 25, MSG_NOSIGNAL);
    }
    /* the body: what came with the headers, then the rest */
    for (size_t i = (size_t)hl; i < got && rq.body_len < clen; i++) {
        if (rq.body_len < (int64_t)sizeof(rq.body) - 1)
            rq.body[rq.body_len] = buf[i];
        rq.body_sum += (uint64_t)(unsigned char)buf[i] * (uint64_t)(rq.body_len + 1);
        rq.body_len++;
    }
    while (rq.body_len < clen) {
        ssize_t r = recv(
            cfd, buf, (size_t)(clen - rq.body_len < (1 << 16) ? clen - rq.body_len : (1 << 16)), 0);
        if (r <= 0)
            break;
        for (ssize_t i = 0; i < r; i++) {
            if (rq.body_len < (int64_t)sizeof(rq.body) - 1)
                rq.body[rq.body_len] = buf[i];
            rq.body_sum += (uint64_t)(unsigned char)buf[i] * (uint64_t)(rq.body_len + 1);
            rq.body_len++;
        }
    }
    pthread_mutex_lock(&f->lock);
    n = f->n;
    if (f->n < 64)
        f->log[f->n++] = rq;
    pthread_mutex_unlock(&f->lock);
    f->handler(f, n, &rq, resp, 1 << 16);
    for (size_t off = 0, len = strlen(resp); off < len;) {
        ssize_t w = send(cfd, resp + off, len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
end:
    shutdown(cfd, SHUT_WR);
    close(cfd);
    free(buf);
    free(resp);
}

static void *fake_main(void *arg)
{
    Fake *f = arg;
    while (!f->stop) {
        struct pollfd pfd = {f->lfd, POLLIN, 0};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        int cfd = accept(f->lfd, NULL, NULL);
        if (cfd >= 0)
            fake_serve(f, cfd);
    }
    return NULL;
}

static Fake *fake_start(FakeHandler h)
{
    Fake *f = calloc(1, sizeof(*f));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);

    assert_non_null(f);
    f->handler = h;
    pthread_mutex_init(&f->lock, NULL);
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->lfd >= 0);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(f->lfd, 16), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &al), 0);
    f->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
    return f;
}

static void fake_stop(Fake **pf)
{
    Fake *f = *pf;
    f->stop = 1;
    pthread_join(f->thread, NULL);
    close(f->lfd);
    pthread_mutex_destroy(&f->lock);
    free(f);
    *pf = NULL;
}

static ReelStore *open_fake(Fake *f, int retries)
{
    char endpoint[64];
    ReelStoreConfig cfg = {.kind = "s3",
                           .endpoint = endpoint,
                           .bucket = "bkt",
                           .access_key = "AK",
                           .secret_key = "SK",
                           .path_style = 1,
                           .max_retries = retries,
                           .retry_base_ms = 1,
                           .multipart_threshold = 5 << 20,
                           .part_size = 6 << 20};
    ReelStore *st = NULL;
    char err[REEL_ERRMSG_SIZE];

    tu_fmt(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", f ? f->port : 1);
    assert_int_equal(reel_store_open(&st, &cfg, err), 0);
    return st;
}

static const char *err_xml(const char *code)
{
    static _Thread_local char x[256];
    tu_fmt(x, sizeof(x),
           "<?xml version=\"1.0\"?><Error><Code>%s</Code><Message>Because &amp; "
           "because</Message></Error>",
           code);
    return x;
}

/* HEAD: 503, 503, then 200 with a size */
static void h_head_flaky(Fake *f, int n, const FakeReq *rq, char *out, size_t size)
{
    if (n < 2)
        fake_respond(out, size, 503, NULL, err_xml("SlowDown"));
    else
        tu_fmt(out, size,
               "HTTP/1.1 200 OK\r\nContent-Length: 42\r\nLast-Modified: Fri, 24 May 2013 "
               "00:00:00 GMT\r\nConnection: close\r\n\r\n");
}

static void test_retry_then_ok(void **state)
{
    Fake *f = fake_start(h_head_flaky);
    ReelStore *st = open_fake(f, 4);
    ReelStoreInfo info;

    (void)state;
    assert_int_equal(reel_store_head(st, "dir/a b.mp4", &info), 0);
    assert_int_equal(info.size, 42);
    assert_int_equal(info.mtime, AWS_EXAMPLE_TIME);
    assert_int_equal(f->n, 3);
    assert_string_equal(f->log[0].method, "HEAD");
    assert_string_equal(f->log[0].target, "/bkt/dir/a%20b.mp4");
    assert_true(f->log[0].has_sha_header);
    reel_store_close(&st);
    fake_stop(&f);
}

static void h_always_500(Fake *f, int n, const FakeReq *rq, char *out, size_t size)
{
    fake_respond(out, size, 500, NULL, err_xml("InternalError"));
}

static void test_retry_gives_up(void **state)
{
    Fake *f = fake_start(h_always_500);
    ReelStore *st = open_fake(f, 2);
    unsigned char buf[16];

    (void)state;
    assert_int_equal(reel_store_get_range(st, "k", 0, buf, sizeof(buf)), REEL_ERR(EIO));
    assert_int_equal(f->n, 3); /* the try and 2 retries */
    assert_non_null(strstr(reel_store_errmsg(st), "InternalError"));
    assert_non_null(strstr(reel_store_errmsg(st), "HTTP 500"));
    reel_store_close(&st);
    /* max_retries < 0: no retry at all */
    {
        char endpoint[64];
        ReelStoreConfig cfg = {.kind = "s3",
                               .endpoint = endpoint,
                               .bucket = "bkt",
                               .access_key = "AK",
                               .secret_key = "SK",
                               .path_style = 1,
                               .max_retries = -1};
        tu_fmt(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", f->port);
        assert_int_equal(reel_store_open(&st, &cfg, NULL), 0);
        f->n = 0;
        assert_int_equal(reel_store_delete(st, "k"), REEL_ERR(EIO));
        assert_int_equal(f->n, 1);
        reel_store_close(&st);
    }
    fake_stop(&f);
}

static void h_errors(Fake *f, int n, const FakeReq *rq, char *out, size_t size)
{
    if (strstr(rq->target, "/missing"))
        fake_respond(out, size, 404, NULL, err_xml("NoSuchKey"));
    else if (strstr(rq->target, "/nobucket"))
        fake_respond(out, size, 404, NULL, err_xml("NoSuchBucket"));
    else if (strstr(rq->target, "/denied"))
        fake_respond(out, size, 403, NULL, err_xml("SignatureDoesNotMatch"));
    else if (strstr(rq->target, "/busy"))
        fake_respond(out, size, 429, "Retry-After: 0\r\n", err_xml("SlowDown"));
    else
        fake_respond(out, size, 400, NULL, err_xml("InvalidArgument"));
}

static void test_error_mapping(void **state)
{
    Fake *f = fake_start(h_errors);
    ReelStore *st = open_fake(f, 3);
    char dst[PATH_MAX], dir[PATH_MAX];
    unsigned char buf[8];

    (void)state;
    assert_int_equal(tu_mkdtemp(dir, sizeof(dir), scratch, "fake-get"), 0);
    tu_fmt(dst, sizeof(dst), "%s/out.mp4", dir);
    /* 404: -ENOENT, not retried, no file and no temp file left */
    assert_int_equal(reel_store_get_file(st, "u/missing", dst), REEL_ERR(ENOENT));
    assert_int_equal(f->n, 1);
    assert_int_equal(tu_count_entries(dir, NULL), 0);
    assert_non_null(strstr(reel_store_errmsg(st), "no such object"));
    /* DELETE of an absent key is fine, of a key in an absent bucket not */
    assert_int_equal(reel_store_delete(st, "u/missing"), 0);
    assert_int_equal(reel_store_delete(st, "u/nobucket"), REEL_ERR(ENXIO));
    assert_non_null(strstr(reel_store_errmsg(st), "NoSuchBucket"));
    /* 403: -EACCES with S3's code and message */
    f->n = 0;
    assert_int_equal(reel_store_get_range(st, "u/denied", 0, buf, 8), REEL_ERR(EACCES));
    assert_int_equal(f->n, 1);
    assert_non_null(strstr(reel_store_errmsg(st), "SignatureDoesNotMatch"));
    assert_non_null(strstr(reel_store_errmsg(st), "Because & because"));
    /* 429 is retried */
    f->n = 0;
    assert_int_equal(reel_store_delete(st, "u/busy"), REEL_ERR(EAGAIN));
    assert_int_equal(f->n, 4);
    /* 400 is not */
    f->n = 0;
    assert_int_equal(reel_store_delete(st, "u/other"), REEL_ERR(EINVAL));
    assert_int_equal(f->n, 1);
    reel_store_close(&st);
    fake_stop(&f);
    tu_rm_rf(dir);
}

static void test_connect_refused(void **state)
{
    ReelStore *st;
    ReelStoreInfo info;
    int fd, port;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    char endpoint[64];
    struct timespec t0, t1;

    (void)state;
    /* a port that was free a moment ago */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(fd, (struct sockaddr *)&a, &al);
    port = ntohs(a.sin_port);
    close(fd);
    tu_fmt(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", port);
    {
        ReelStoreConfig cfg = {.kind = "s3",
                               .endpoint = endpoint,
                               .bucket = "bkt",
                               .access_key = "AK",
                               .secret_key = "SK",
                               .path_style = 1,
                               .max_retries = 3,
                               .retry_base_ms = 40};
        assert_int_equal(reel_store_open(&st, &cfg, NULL), 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(reel_store_head(st, "k", &info), REEL_ERR(ECONNREFUSED));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* backoff 40, 80, 160 ms, each jittered to half..full: at least 140 ms */
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    assert_true(ms >= 140.0);
    assert_true(ms < 5000.0);
    assert_non_null(strstr(reel_store_errmsg(st), "after retries"));
    reel_store_close(&st);
}

/* GET with a Range: the server ignores it and sends the whole body */
static void h_ignore_range(Fake *f, int n, const FakeReq *rq, char *out, size_t size)
{
    fake_respond(out, size, 200, NULL, "0123456789abcdefghij");
}

static void h_range_ok(Fake *f, int n, const FakeReq *rq, char *out, size_t size)
{
    long a = 0, b = 0;
    sscanf(rq->range, "bytes=%ld-%ld", &a, &b);
    if (a >= 20) {
        fake_respond(out, size, 416, NULL, err_xml("InvalidRange"));
        return;
    }
    if (b > 19)
        b = 19;
    tu_fmt(out, size,
           "HTTP/1.1 206 Partial\r\nContent-Length: %ld\r\nContent-Range: bytes %ld-%ld/20\r\n"
           "Connection: close\r\n\r\n%.*s",
           b - a + 1, a, b, (int)(b - a + 1), "0123456789abcdefghij" + a);
}

static void test_ranges(void **state)
{
    Fake *f = fake_start(h_ignore_range);
    ReelStore *st = open_fake(f, 1);
    char buf[32];

    (void)state;
    memset(buf, 0, sizeof(buf));
    assert_int_equal(reel_store_get_range(st, "k", 3, buf, 4), 4);
    assert_string_equal(buf, "3456");
    assert_string_equal(f->log[0].range, "bytes=3-6");
    memset(buf, 0, sizeof(buf));
    assert_int_equal(reel_store_get_range(st, "k", 18, buf, 8), 2);
    assert_string_equal(buf, "ij");
    reel_store_close(&st);
    fake_stop(&f);

    f = fake_start(h_range_ok);
    st = open_fake(f, 1);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(reel_store_get_range(st, "k", 10, buf, 4), 4);
    assert_string_equal(buf, "abcd");
    memset(buf, 0, sizeof(buf));
    assert_int_equal(reel_store_get_range(st, "k", 17, buf, 10), 3);
    assert_string_equal(buf, "hij");
    assert_int_equal(reel_store_get_range(st, "k", 20, buf, 10), 0); /* 416: past the end */
    reel_store_close(&st);
    fake_stop(&f);
}

/* PUT: the first try is refused after its whole body arrived; the retry resends it */
static void h_put_flaky(Fake *f, int n, const FakeReq *rq, char *out, size_t size)
{
    fake_respond(out, size, n == 0 ? 503 : 200, "ETag: \"e\"\r\n",
                 n == 0 ? err_xml("SlowDown") : "");
}

static void test_put_retry_resends(void **state)
{
    Fake *f = fake_start(h_put_flaky);
    ReelStore *st = open_fake(f, 2);
    char src[PATH_MAX];

    (void)state;
    tu_fmt(src, sizeof(src), "%s/put-retry.bin", scratch);
    assert_int_equal(tu_write_file(src, 21, 3 << 20), 0);
    assert_int_equal(reel_store_put_file(st, "u/a.mp4", src), 0);
    assert_int_equal(f->n, 2);
    assert_string_equal(f->log[1].method, "PUT");
    assert_string_equal(f->log[1].target, "/bkt/u/a.mp4");
    assert_int_equal(f->log[0].body_len, 3 << 20);
    assert_int_equal(f->log[1].body_len, 3 << 20);
    assert_true(f->log[0].body_sum == f->log[1].body_sum);
    assert_true(tu_check_buf(f->log[1].body, 21, 0, 1024));
    reel_store_close(&st);
    fake_stop(&f);
    unlink(src);
}

/* Multipart: initiate, 3 parts, complete; the first complete answers 200 with an <Error> */
static void h_multipart(Fake *f, int n, const FakeReq *rq, char *out, size_t size)
{
    if (!strcmp(rq->method, "POST") && strstr(rq->target, "?uploads=")) {
        fake_respond(out, size, 200, NULL,
                     "<InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>k</Key>"
                     "<UploadId>up/id+1&amp;2</UploadId></InitiateMultipartUploadResult>");
    } else if (!strcmp(rq->method, "PUT")) {
        char etag[64];
        int part = atoi(strstr(rq->target, "partNumber=") + 11);
        tu_fmt(etag, sizeof(etag), "ETag: \"etag-%d\"\r\n", part);
        fake_respond(out, size, 200, etag, "");
    } else if (!strcmp(rq->method, "POST")) {
        static int completes;
        if (completes++ == 0)
            fake_respond(out, size, 200, NULL, "\n\n<Error><Code>InternalError</Code></Error>");
        else
            fake_respond(out, size, 200, NULL,
                         "<CompleteMultipartUploadResult><ETag>\"x-3\"</ETag>"
                         "</CompleteMultipartUploadResult>");
    } else {
        fake_respond(out, size, 204, NULL, NULL);
    }
}

static void test_multipart_protocol(void **state)
{
    Fake *f = fake_start(h_multipart);
    ReelStore *st = open_fake(f, 2);
    char src[PATH_MAX];
    const char *q = "uploadId=up%2Fid%2B1%262";

    (void)state;
    tu_fmt(src, sizeof(src), "%s/multi.bin", scratch);
    assert_int_equal(tu_write_file(src, 22, 13 << 20), 0);
    assert_int_equal(reel_store_put_file(st, "u/big file.mp4", src), 0);
    assert_int_equal(f->n, 6); /* initiate, 3 parts, complete twice */
    assert_string_equal(f->log[0].target, "/bkt/u/big%20file.mp4?uploads=");
    for (int i = 1; i <= 3; i++) {
        char t[256];
        tu_fmt(t, sizeof(t), "/bkt/u/big%%20file.mp4?partNumber=%d&%s", i, q);
        assert_string_equal(f->log[i].method, "PUT");
        assert_string_equal(f->log[i].target, t);
        assert_int_equal(f->log[i].body_len, i < 3 ? 6 << 20 : 1 << 20);
        /* each part is the right slice of the file */
        assert_true(tu_check_buf(f->log[i].body, 22, (int64_t)(i - 1) * (6 << 20), 1024));
    }
    assert_string_equal(f->log[4].method, "POST");
    assert_non_null(strstr(f->log[4].target, q));
    assert_string_equal(f->log[4].body,
                        "<CompleteMultipartUpload>"
                        "<Part><PartNumber>1</PartNumber><ETag>\"etag-1\"</ETag></Part>"
                        "<Part><PartNumber>2</PartNumber><ETag>\"etag-2\"</ETag></Part>"
                        "<Part><PartNumber>3</PartNumber><ETag>\"etag-3\"</ETag></Part>"
                        "</CompleteMultipartUpload>");
    assert_string_equal(f->log[5].body, f->log[4].body);
    reel_store_close(&st);
    fake_stop(&f);
    unlink(src);
}

/* Multipart where part 2 always fails: the upload must be aborted */
static void h_multipart_fail(Fake *f, int n, const FakeReq *rq, char *out, size_t size)
{
    if (!strcmp(rq->method, "POST"))
        fake_respond(out, size, 200, NULL,
                     "<InitiateMultipartUploadResult><UploadId>U1</UploadId>"
                     "</InitiateMultipartUploadResult>");
    else if (!strcmp(rq->method, "PUT") && strstr(rq->target, "partNumber=2"))
        fake_respond(out, size, 500, NULL, err_xml("InternalError"));
    else if (!strcmp(rq->method, "PUT"))
        fake_respond(out, size, 200, "ETag: \"p\"\r\n", "");
    else
        fake_respond(out, size, 204, NULL, NULL);
}

static void test_multipart_abort(void **state)
{
    Fake *f = fake_start(h_multipart_fail);
    ReelStore *st = open_fake(f, 1);
    char src[PATH_MAX];

    (void)state;
    tu_fmt(src, sizeof(src), "%s/multi-fail.bin", scratch);
    assert_int_equal(tu_write_file(src, 23, 13 << 20), 0);
    assert_int_equal(reel_store_put_file(st, "u/x.mp4", src), REEL_ERR(EIO));
    /* the error names the failed part's problem, not the abort */
    assert_non_null(strstr(reel_store_errmsg(st), "InternalError"));
    /* initiate, part 1, part 2 twice (a retry), then the abort; no part 3, no complete */
    assert_int_equal(f->n, 5);
    assert_string_equal(f->log[4].method, "DELETE");
    assert_string_equal(f->log[4].target, "/bkt/u/x.mp4?uploadId=U1");
    reel_store_close(&st);
    fake_stop(&f);
    unlink(src);
}

/* ListObjectsV2: two pages, entities in keys */
static void h_list(Fake *f, int n, const FakeReq *rq, char *out, size_t size)
{
    if (!strstr(rq->target, "continuation-token="))
        fake_respond(out, size, 200, NULL,
                     "<ListBucketResult><IsTruncated>true</IsTruncated>"
                     "<Contents><Key>p/a &amp; b</Key><LastModified>2013-05-24T00:00:00.000Z"
                     "</LastModified><Size>5</Size></Contents>"
                     "<Contents><Key>p/&#xE9;&#233;</Key><Size>6</Size></Contents>"
                     "<NextContinuationToken>tok/=+</NextContinuationToken></ListBucketResult>");
    else
        fake_respond(out, size, 200, NULL,
                     "<ListBucketResult><IsTruncated>false</IsTruncated>"
                     "<Contents><Key>p/z</Key><Size>7</Size></Contents></ListBucketResult>");
}

typedef struct Keys {
    char k[8][64];
    int64_t size[8], mtime[8];
    int n;
} Keys;

static int keys_cb(void *opaque, const char *key, const ReelStoreInfo *info)
{
    Keys *k = opaque;
    if (k->n < 8) {
        tu_fmt(k->k[k->n], sizeof(k->k[0]), "%s", key);
        k->size[k->n] = info->size;
        k->mtime[k->n] = info->mtime;
    }
    k->n++;
    return 0;
}

static void test_list_pages(void **state)
{
    Fake *f = fake_start(h_list);
    ReelStore *st = open_fake(f, 1);
    Keys k = {0};

    (void)state;
    assert_int_equal(reel_store_list(st, "p/", keys_cb, &k), 0);
    assert_int_equal(k.n, 3);
    assert_string_equal(k.k[0], "p/a & b");
    assert_int_equal(k.size[0], 5);
    assert_int_equal(k.mtime[0], AWS_EXAMPLE_TIME);
    assert_string_equal(k.k[1], "p/\xC3\xA9\xC3\xA9");
    assert_string_equal(k.k[2], "p/z");
    assert_int_equal(f->n, 2);
    /* canonical order, encoded values */
    assert_string_equal(f->log[0].target, "/bkt?list-type=2&max-keys=1000&prefix=p%2F");
    assert_string_equal(f->log[1].target,
                        "/bkt?continuation-token=tok%2F%3D%2B&list-type=2&max-keys=1000"
                        "&prefix=p%2F");
    reel_store_close(&st);
    fake_stop(&f);
}

/* Virtual-host style: the bucket goes into the host name, the path is the key */
static void h_ok(Fake *f, int n, const FakeReq *rq, char *out, size_t size)
{
    fake_respond(out, size, 200, "ETag: \"v\"\r\n",
                 strchr(rq->target, '?') ? "<ListBucketResult><IsTruncated>false</IsTruncated>"
                                           "</ListBucketResult>"
                                         : "");
}

static void test_virtual_host(void **state)
{
    Fake *f = fake_start(h_ok);
    char endpoint[64], host[64], url[2048];
    ReelStore *st;
    Keys k = {0};
    ReelStoreInfo info;

    (void)state;
    /* curl resolves *.localhost to the loopback address itself */
    tu_fmt(endpoint, sizeof(endpoint), "http://s3.localhost:%d/", f->port);
    tu_fmt(host, sizeof(host), "bkt.s3.localhost:%d", f->port);
    {
        ReelStoreConfig cfg = {.kind = "s3",
                               .endpoint = endpoint,
                               .bucket = "bkt",
                               .access_key = "AK",
                               .secret_key = "SK",
                               .path_style = 0};
        assert_int_equal(reel_store_open(&st, &cfg, NULL), 0);
    }
    assert_int_equal(reel_store_head(st, "d/a b", &info), 0);
    assert_string_equal(f->log[0].host, host);
    assert_string_equal(f->log[0].target, "/d/a%20b");
    assert_int_equal(reel_store_list(st, "d/", keys_cb, &k), 0);
    assert_string_equal(f->log[1].host, host);
    assert_string_equal(f->log[1].target, "/?list-type=2&max-keys=1000&prefix=d%2F");
    assert_int_equal(reel_store_presign_get(st, "d/a b", 60, url, sizeof(url)), 0);
    tu_fmt(endpoint, sizeof(endpoint), "http://%s/d/a%%20b?X-Amz-", host);
    assert_true(!strncmp(url, endpoint, strlen(endpoint)));
    reel_store_close(&st);
    fake_stop(&f);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_rules),
        cmocka_unit_test(test_prefix_rules),
        cmocka_unit_test(test_uri_encode),
        cmocka_unit_test(test_presign_aws_example),
        cmocka_unit_test(test_presign_shapes),
        cmocka_unit_test(test_s3_config_errors),
        cmocka_unit_test(test_retry_then_ok),
        cmocka_unit_test(test_retry_gives_up),
        cmocka_unit_test(test_error_mapping),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_put_retry_resends),
        cmocka_unit_test(test_multipart_protocol),
        cmocka_unit_test(test_multipart_abort),
        cmocka_unit_test(test_list_pages),
        cmocka_unit_test(test_virtual_host),
    };

    tu_fmt(scratch, sizeof(scratch), "%s", argc > 1 ? argv[1] : "/tmp");
    mkdir(scratch, 0755);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
