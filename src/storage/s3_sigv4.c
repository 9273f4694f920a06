/*
 * s3_sigv4.c - AWS Signature Version 4 query-string signing (presigned URLs)
 * and the URI encoding SigV4 defines. libcurl signs our header-authenticated
 * requests itself (CURLOPT_AWS_SIGV4) but cannot presign, so this file does
 * the AWS algorithm with OpenSSL's one-shot HMAC() and SHA256():
 *
 *   canonical request = METHOD \n URI \n sorted query \n host:<host> \n \n host \n UNSIGNED-PAYLOAD
 *   string to sign    = AWS4-HMAC-SHA256 \n <amzdate> \n <date>/<region>/s3/aws4_request \n
 *                       hex(sha256(canonical request))
 *   signing key       = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), "s3"), "aws4_request")
 *   signature         = hex(HMAC(signing key, string to sign))
 *
 * tests/storage checks it against AWS's documented example.
 * Thread-safety: pure functions on caller storage.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "core/error.h"
#include "storage/storage_int.h"

int reel_s3_uri_encode(char *out, size_t size, size_t *len, const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = *len;

    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~' ||
                    (keep_slash && *p == '/');
        if (n + (plain ? 1 : 3) >= size)
            return REEL_ERR(ENAMETOOLONG);
        if (plain) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
    *len = n;
    return 0;
}

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    unsigned int olen = 0;
    return HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out,
                &olen) &&
                   olen == 32
               ? 0
               : REEL_ERR(ENOMEM);
}

/* Append printf output to buf at *len; REEL_ERR(ENAMETOOLONG) if it does not fit. */
static int append(char *buf, size_t size, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int append(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*len >= size)
        return REEL_ERR(ENAMETOOLONG);
    va_start(ap, fmt);
    n = vsnprintf(buf + *len, size - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size - *len)
        return REEL_ERR(ENAMETOOLONG);
    *len += (size_t)n;
    return 0;
}

int reel_s3_presign(const ReelS3Presign *p, char *url, size_t size)
{
    char amzdate[32], date[16], scope[256], cred[512], query[1024], sig[65], hash_hex[65];
    char canon[8192], sts[512];
    unsigned char k[32], h[32];
    size_t ql = 0, cl = 0, sl = 0, cr = 0, ul = 0;
    struct tm tm;
    time_t t = (time_t)p->now;
    int ret;

    if (p->now < 0 || !gmtime_r(&t, &tm))
        return REEL_ERR(EINVAL);
    strftime(amzdate, sizeof(amzdate), "%Y%m%dT%H%M%SZ", &tm);
    strftime(date, sizeof(date), "%Y%m%d", &tm);
    if ((size_t)snprintf(scope, sizeof(scope), "%s/%s/s3/aws4_request", date, p->region) >=
        sizeof(scope))
        return REEL_ERR(ENAMETOOLONG);

    /* the query, parameters in byte order, values encoded ('/' too) */
    if ((ret = append(cred, sizeof(cred), &cr, "%s/%s", p->access_key, scope)) < 0 ||
        (ret = append(query, sizeof(query), &ql,
                      "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=")) < 0 ||
        (ret = reel_s3_uri_encode(query, sizeof(query), &ql, cred, 0)) < 0 ||
        (ret = append(query, sizeof(query), &ql,
                      "&X-Amz-Date=%s&X-Amz-Expires=%d&X-Amz-SignedHeaders=host", amzdate,
                      p->expires_s)) < 0)
        return ret;

    if ((ret = append(canon, sizeof(canon), &cl, "%s\n%s\n%s\nhost:%s\n\nhost\nUNSIGNED-PAYLOAD",
                      p->method, p->path, query, p->host)) < 0)
        return ret;
    if (!SHA256((const unsigned char *)canon, cl, h))
        return REEL_ERR(ENOMEM);
    to_hex(h, 32, hash_hex);
    if ((ret = append(sts, sizeof(sts), &sl, "AWS4-HMAC-SHA256\n%s\n%s\n%s", amzdate, scope,
                      hash_hex)) < 0)
        return ret;

    /* signing key; "AWS4" + secret is built in cred, reused as scratch */
    cr = 0;
    if ((ret = append(cred, sizeof(cred), &cr, "AWS4%s", p->secret_key)) < 0 ||
        (ret = hmac(cred, cr, date, k)) < 0 || (ret = hmac(k, 32, p->region, k)) < 0 ||
        (ret = hmac(k, 32, "s3", k)) < 0 || (ret = hmac(k, 32, "aws4_request", k)) < 0 ||
        (ret = hmac(k, 32, sts, h)) < 0)
        goto end;
    to_hex(h, 32, sig);

    ret = append(url, size, &ul, "%s://%s%s?%s&X-Amz-Signature=%s", p->scheme, p->host, p->path,
                 query, sig);
end:
    /* the derived key and the secret copy are credentials: do not leave them on the stack */
    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(cred, sizeof(cred));
    return ret;
}
