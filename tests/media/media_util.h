/*
 * media_util.h - helpers shared by the media tests (cmocka): the data folder
 * ($REEL_TEST_DATA), shell commands that must succeed, sources generated once
 * with ffmpeg's lavfi, jobs from JSON, ffprobe output as JSON.
 */
#ifndef REEL_TESTS_MEDIA_UTIL_H
#define REEL_TESTS_MEDIA_UTIL_H

#include <jansson.h>

#include "core/job.h"

extern char data_dir[1024];

/** data_dir/name (one of 8 rotating buffers). */
const char *data(const char *name);
/** Run a shell command; the test fails if it does. */
void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/** Generate a source once: name, lavfi video graph, optional lavfi audio, seconds. */
void gen(const char *name, const char *video, const char *audio, double secs);
/** Parse a job (relative sources in data_dir); the test fails on an error. */
ReelJob *job_of(const char *json);
/** ffprobe -count_frames -show_streams -show_chapters -show_format, parsed. */
json_t *ffprobe(const char *path);
/** The first stream of a codec_type ("video", "audio") in a probe, or NULL. */
json_t *stream_of(json_t *probe, const char *type);
/** A number (or numeric string) member of an object. */
double jnum(json_t *o, const char *key);
/** A small file's text (static buffer, 64 KiB), or NULL. */
char *slurp(const char *path);
/* Copy the file src to dst (same container) with its video stream marked to be
 * shown turned ccw degrees counter-clockwise (a display matrix, as phones write
 * for portrait video). */
void remux_turned(const char *src, const char *dst, double ccw);

#endif
