/*
 * error.c - error codes to text, and reel_fail(): log + record + return.
 */
#include "core/error.h"
#include "core/log.h"

#include <stdio.h>
#include <string.h>

#include <libavutil/error.h>

const char *reel_strerror(int err, char *buf, size_t size)
{
    static const struct {
        int code;
        const char *text;
    } ours[] = {
        {REEL_ERROR_INVALID_JOB, "invalid job"},
        {REEL_ERROR_MODEL, "invalid or unsupported model"},
        {REEL_ERROR_MEDIA, "unreadable or unsupported media"},
        {REEL_ERROR_CANCELLED, "cancelled"},
        {REEL_ERROR_LIMIT, "limit exceeded"},
        {REEL_ERROR_BACKEND, "compute backend failure"},
        {REEL_ERROR_INTERNAL, "internal error"},
    };
    for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++) {
        if (ours[i].code == err) {
            snprintf(buf, size, "%s", ours[i].text);
            return buf;
        }
    }
    /* AVERROR(e) == -e, so libav's describer covers errno and its own tags. */
    if (av_strerror(err, buf, size) < 0)
        snprintf(buf, size, "error %d", err);
    return buf;
}

int reel_fail(char *errmsg, int err, const char *fmt, ...)
{
    char local[REEL_ERRMSG_SIZE];
    char *dst = errmsg ? errmsg : local;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(dst, REEL_ERRMSG_SIZE, fmt, ap);
    va_end(ap);
    reel_log(REEL_LOG_ERROR, "clipreel", "%s", dst);
    return err;
}
