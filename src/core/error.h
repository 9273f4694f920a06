/*
 * error.h - clipreel's error codes and the error-message convention.
 *
 * Fallible functions return int: >= 0 success, < 0 error. System errors are
 * REEL_ERR(errno) = -errno. Project errors are negative FOURCC tags, in the
 * same space as FFmpeg's AVERROR values, so an AVERROR from libav passes up
 * unchanged. Objects that live long (a job, an upscaler, an export) keep the
 * human sentence in their own errmsg buffer; that sentence is what a user sees.
 *
 * Thread-safety: everything here is pure or works on caller storage.
 */
#ifndef REEL_CORE_ERROR_H
#define REEL_CORE_ERROR_H

#include <stdarg.h>
#include <stddef.h>

#define REEL_ERR(e) (-(e))
#define REEL_TAG(a, b, c, d) ((int)((unsigned)(a) | ((unsigned)(b) << 8) | ((unsigned)(c) << 16) | ((unsigned)(d) << 24)))
#define REEL_MKERR(a, b, c, d) (-REEL_TAG(a, b, c, d))

#define REEL_ERROR_INVALID_JOB REEL_MKERR('J', 'O', 'B', '!')  /**< job JSON failed validation */
#define REEL_ERROR_MODEL REEL_MKERR('M', 'O', 'D', 'L')        /**< model file bad/unsupported */
#define REEL_ERROR_MEDIA REEL_MKERR('M', 'D', 'I', 'A')        /**< source unreadable/unsupported */
#define REEL_ERROR_CANCELLED REEL_MKERR('C', 'N', 'C', 'L')    /**< stopped on request */
#define REEL_ERROR_LIMIT REEL_MKERR('L', 'I', 'M', 'T')        /**< a configured limit was hit */
#define REEL_ERROR_BACKEND REEL_MKERR('B', 'A', 'C', 'K')      /**< compute backend failure */
#define REEL_ERROR_INTERNAL REEL_MKERR('I', 'N', 'T', 'L')     /**< bug: should never happen */

#define REEL_ERRMSG_SIZE 512

/** Describe an error code (ours, errno or AVERROR) in buf; returns buf. */
const char *reel_strerror(int err, char *buf, size_t size);

/**
 * Format a message into errmsg (REEL_ERRMSG_SIZE bytes, may be NULL), log it at
 * error level and return err unchanged, so callers can write
 * `return reel_fail(errmsg, REEL_ERR(EINVAL), "clips[%d]: ...", i);`.
 */
int reel_fail(char *errmsg, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
