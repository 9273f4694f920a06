/*
 * job.c - parse, validate and normalise an export job (DESIGN section 2).
 *
 * One walk over the JSON with a field path kept alongside, so every error names
 * the exact field: `clips[1].segments.segmentSpeeds.2: speed 9 out of range
 * 0.25-4`. The first error stops the walk; nothing is allocated that outlives a
 * failed parse.
 *
 * Decisions where the contract is silent (also in docs/job-format.md):
 * - unknown keys are ignored in the editor's fields (it sends many we don't
 *   use) but rejected inside `output`, the engine's own schema, where a typo
 *   would otherwise be silently ignored;
 * - a missing `transition` means `cut`;
 * - a clip without `clipIndex` takes its array position;
 * - an end beyond the declared duration by less than 1 ms is clamped to it.
 */
#include "core/job.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <libavutil/rational.h>

#include "core/error.h"
#include "core/timeline.h"

#define SPEED_MIN 0.25
#define SPEED_MAX 4.0
#define TIME_EPS 1e-3 /* tolerance when comparing to a declared duration */
#define OPEN_END -1.0 /* trim or segment end not known until the source is probed */
#define MAX_JOB_BYTES (16 << 20)

/* A raw speed segment before the trim is applied; end may be OPEN_END. */
typedef struct RawSegment {
    double start, end, speed;
} RawSegment;

typedef struct ParseCtx {
    char *errmsg;
    const ReelJobLimits *limits;
    const char *base_dir;
} ParseCtx;

/* The private part of a clip: what reel_job_apply_probe needs to redo the trim. */
typedef struct ClipPriv {
    RawSegment *raw;
    int nb_raw;
} ClipPriv;

typedef struct JobPriv {
    ReelJob pub;
    ClipPriv *priv; /* one per clip, same order */
} JobPriv;

static int bad(ParseCtx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(ParseCtx *ctx, const char *fmt, ...)
{
    char buf[REEL_ERRMSG_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return reel_fail(ctx->errmsg, REEL_ERROR_INVALID_JOB, "%s", buf);
}

void reel_job_limits_default(ReelJobLimits *limits)
{
    limits->max_clips = 100;
    limits->max_clip_seconds = 3600.0;
    limits->max_width = 7680;
    limits->max_height = 4320;
    limits->max_keyframes = 100000;
}

double reel_job_fps(const ReelJob *job)
{
    return (double)job->output.fps_num / job->output.fps_den;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* ---- typed getters: each checks the type and names the path ------------- */

/* A finite number at obj[key]; *found = 0 when absent or null. */
static int get_number(ParseCtx *ctx, json_t *obj, const char *key, const char *path,
                      double *out, int *found)
{
    json_t *v = json_object_get(obj, key);

    *found = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return bad(ctx, "%s.%s: must be a number", path, key);
    *out = json_number_value(v);
    if (!isfinite(*out))
        return bad(ctx, "%s.%s: must be a finite number", path, key);
    *found = 1;
    return 0;
}

static int get_string(ParseCtx *ctx, json_t *obj, const char *key, const char *path,
                      const char **out)
{
    json_t *v = json_object_get(obj, key);

    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return bad(ctx, "%s.%s: must be a string", path, key);
    *out = json_string_value(v);
    return 0;
}

static int get_object(ParseCtx *ctx, json_t *obj, const char *key, const char *path,
                      json_t **out)
{
    json_t *v = json_object_get(obj, key);

    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return bad(ctx, "%s.%s: must be an object", path, key);
    *out = v;
    return 0;
}

static int get_bool(ParseCtx *ctx, json_t *obj, const char *key, const char *path, int *out)
{
    json_t *v = json_object_get(obj, key);

    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return bad(ctx, "%s.%s: must be true or false", path, key);
    *out = json_is_true(v);
    return 0;
}

/* An integer in [lo, hi] (a real with no fraction is accepted). */
static int get_int(ParseCtx *ctx, json_t *obj, const char *key, const char *path, int lo,
                   int hi, int *out, int *found)
{
    double d = 0.0;
    int ret = get_number(ctx, obj, key, path, &d, found);

    if (ret < 0 || !*found)
        return ret;
    if (d != floor(d))
        return bad(ctx, "%s.%s: must be an integer", path, key);
    if (d < lo || d > hi)
        return bad(ctx, "%s.%s: %g out of range %d-%d", path, key, d, lo, hi);
    *out = (int)d;
    return 0;
}

/* ---- trim and segments --------------------------------------------------- */

/* A {start, end} range object into start and end (end unchanged when absent). */
static int parse_range(ParseCtx *ctx, json_t *range, const char *path, double *start,
                       double *end)
{
    double v;
    int found, ret;

    if ((ret = get_number(ctx, range, "start", path, &v, &found)) < 0)
        return ret;
    if (found) {
        if (v < 0)
            return bad(ctx, "%s.start: must be >= 0", path);
        *start = v;
    }
    if ((ret = get_number(ctx, range, "end", path, &v, &found)) < 0)
        return ret;
    if (found) {
        if (v <= 0)
            return bad(ctx, "%s.end: must be > 0", path);
        *end = v;
    }
    return 0;
}

static int append_raw(ClipPriv *cp, double start, double end, double speed)
{
    RawSegment *n = realloc(cp->raw, (size_t)(cp->nb_raw + 1) * sizeof(*n));
    if (!n)
        return REEL_ERR(ENOMEM);
    cp->raw = n;
    cp->raw[cp->nb_raw++] = (RawSegment){start, end, speed};
    return 0;
}

static int check_speed(ParseCtx *ctx, json_t *v, const char *path, double *speed)
{
    if (!json_is_number(v))
        return bad(ctx, "%s: speed must be a number", path);
    *speed = json_number_value(v);
    if (!isfinite(*speed) || *speed < SPEED_MIN || *speed > SPEED_MAX)
        return bad(ctx, "%s: speed %g out of range 0.25-4", path, *speed);
    return 0;
}

/* The editor's form: boundaries + segmentSpeeds with string keys. */
static int parse_boundaries(ParseCtx *ctx, json_t *segs, const char *path, double duration,
                            ClipPriv *cp)
{
    json_t *b = json_object_get(segs, "boundaries"), *speeds, *v;
    double *pts = NULL;
    size_t n = 0, cap;
    const char *key;
    int ret;

    if (b && !json_is_null(b) && !json_is_array(b))
        return bad(ctx, "%s.boundaries: must be an array of seconds", path);
    cap = (b && json_is_array(b) ? json_array_size(b) : 0) + 2;
    if (!(pts = malloc(cap * sizeof(*pts))))
        return REEL_ERR(ENOMEM);
    /* canonicalise to [0, ...splits, duration] */
    pts[n++] = 0.0;
    for (size_t i = 0; b && json_is_array(b) && i < json_array_size(b); i++) {
        json_t *e = json_array_get(b, i);
        double t;
        if (!json_is_number(e) || !isfinite(t = json_number_value(e))) {
            ret = bad(ctx, "%s.boundaries[%zu]: must be a number", path, i);
            goto end;
        }
        if (t < 0) {
            ret = bad(ctx, "%s.boundaries[%zu]: %g must be >= 0", path, i, t);
            goto end;
        }
        if (duration > 0 && t > duration + TIME_EPS) {
            ret = bad(ctx, "%s.boundaries[%zu]: %g is beyond the clip duration %g", path, i,
                      t, duration);
            goto end;
        }
        if (t == 0.0 && n == 1)
            continue; /* the leading 0 */
        if (duration > 0 && fabs(t - duration) <= TIME_EPS && i + 1 == json_array_size(b))
            continue; /* the trailing duration */
        if (t <= pts[n - 1]) {
            ret = bad(ctx, "%s.boundaries[%zu]: %g is not after the previous boundary %g",
                      path, i, t, pts[n - 1]);
            goto end;
        }
        pts[n++] = t;
    }
    pts[n++] = duration > 0 ? duration : OPEN_END;

    for (size_t i = 0; i + 1 < n; i++)
        if ((ret = append_raw(cp, pts[i], pts[i + 1], 1.0)) < 0)
            goto end;

    ret = 0;
    if ((ret = get_object(ctx, segs, "segmentSpeeds", path, &speeds)) < 0)
        goto end;
    json_object_foreach(speeds, key, v) {
        char sub[256];
        char *endp;
        long idx = strtol(key, &endp, 10);
        snprintf(sub, sizeof(sub), "%s.segmentSpeeds.%s", path, key);
        if (!*key || *endp || idx < 0) {
            ret = bad(ctx, "%s: key must be a segment number", sub);
            goto end;
        }
        if (idx >= cp->nb_raw) {
            ret = bad(ctx, "%s: no segment %ld (the boundaries make %d)", sub, idx, cp->nb_raw);
            goto end;
        }
        if ((ret = check_speed(ctx, v, sub, &cp->raw[idx].speed)) < 0)
            goto end;
    }
end:
    free(pts);
    return ret;
}

/* The alternative form: {trim_start, trim_end, segments: [{start, end, speed}]}. */
static int parse_segment_list(ParseCtx *ctx, json_t *list, const char *path, double duration,
                              ClipPriv *cp)
{
    double cursor = 0.0;
    int ret;

    if (!json_is_array(list))
        return bad(ctx, "%s.segments: must be an array", path);
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *s = json_array_get(list, i);
        char sub[256];
        double start = 0, end = 0, speed = 1.0;
        int fs, fe;
        snprintf(sub, sizeof(sub), "%s.segments[%zu]", path, i);
        if (!json_is_object(s))
            return bad(ctx, "%s: must be an object", sub);
        if ((ret = get_number(ctx, s, "start", sub, &start, &fs)) < 0 ||
            (ret = get_number(ctx, s, "end", sub, &end, &fe)) < 0)
            return ret;
        if (!fs || !fe)
            return bad(ctx, "%s: start and end are required", sub);
        if (json_object_get(s, "speed") &&
            (ret = check_speed(ctx, json_object_get(s, "speed"), sub, &speed)) < 0)
            return ret;
        if (start < cursor - TIME_EPS)
            return bad(ctx, "%s.start: %g overlaps the previous segment", sub, start);
        if (end <= start)
            return bad(ctx, "%s.end: %g must be after start %g", sub, end, start);
        if (duration > 0 && end > duration + TIME_EPS)
            return bad(ctx, "%s.end: %g is beyond the clip duration %g", sub, end, duration);
        if (start > cursor + TIME_EPS && (ret = append_raw(cp, cursor, start, 1.0)) < 0)
            return ret; /* a gap plays at normal speed */
        if ((ret = append_raw(cp, fmax(start, cursor), end, speed)) < 0)
            return ret;
        cursor = end;
    }
    if (duration > 0 && cursor < duration - TIME_EPS)
        return append_raw(cp, cursor, duration, 1.0);
    if (duration <= 0)
        return append_raw(cp, cursor, OPEN_END, 1.0);
    return 0;
}

/* Apply the trim to the raw segments: the clip's public segment list. */
static int apply_trim(ParseCtx *ctx, ReelClip *clip, const ClipPriv *cp, const char *path,
                      double fps)
{
    ReelSegment *segs;
    int n = 0;

    free(clip->segments);
    clip->segments = NULL;
    clip->nb_segments = 0;
    if (clip->trim_end < 0)
        return 0; /* resolved by reel_job_apply_probe */
    if (!(segs = calloc((size_t)cp->nb_raw + 1, sizeof(*segs))))
        return REEL_ERR(ENOMEM);
    for (int i = 0; i < cp->nb_raw; i++) {
        double end = cp->raw[i].end < 0 ? clip->trim_end : cp->raw[i].end;
        double s = fmax(cp->raw[i].start, clip->trim_start);
        double e = fmin(end, clip->trim_end);
        if (e - s > 1e-9)
            segs[n++] = (ReelSegment){s, e, cp->raw[i].speed};
    }
    clip->segments = segs;
    clip->nb_segments = n;
    if (n == 0)
        return bad(ctx, "%s.trimRange: covers no part of the clip", path);
    if (clip->trim_end - clip->trim_start > ctx->limits->max_clip_seconds)
        return reel_fail(ctx->errmsg, REEL_ERROR_LIMIT,
                         "%s.trimRange: %g s is longer than the limit of %g s", path,
                         clip->trim_end - clip->trim_start, ctx->limits->max_clip_seconds);
    {
        ReelClipFrames cf;
        int ret = reel_clip_frames_init(&cf, clip, fps);
        int64_t frames = cf.nb_frames;
        if (ret < 0)
            return ret;
        reel_clip_frames_uninit(&cf);
        if (frames < 1)
            return bad(ctx, "%s.trimRange: %g s is shorter than one output frame", path,
                       clip->trim_end - clip->trim_start);
    }
    return 0;
}

/* ---- one clip -------------------------------------------------------------- */

static int parse_keyframes(ParseCtx *ctx, json_t *arr, const char *path, ReelClip *clip)
{
    size_t n;

    if (!json_is_array(arr))
        return bad(ctx, "%s.cropKeyframes: must be an array", path);
    n = json_array_size(arr);
    if (n > (size_t)ctx->limits->max_keyframes)
        return reel_fail(ctx->errmsg, REEL_ERROR_LIMIT,
                         "%s.cropKeyframes: %zu keyframes, the limit is %d", path, n,
                         ctx->limits->max_keyframes);
    if (n == 0)
        return 0;
    if (!(clip->keyframes = calloc(n, sizeof(*clip->keyframes))))
        return REEL_ERR(ENOMEM);
    for (size_t i = 0; i < n; i++) {
        json_t *k = json_array_get(arr, i);
        ReelKeyframe *kf = &clip->keyframes[i];
        static const char *const names[] = {"time", "x", "y", "width", "height"};
        double *dst[] = {&kf->time, &kf->x, &kf->y, &kf->width, &kf->height};
        char sub[256];
        int found, ret;

        snprintf(sub, sizeof(sub), "%s.cropKeyframes[%zu]", path, i);
        if (!json_is_object(k))
            return bad(ctx, "%s: must be an object", sub);
        for (int f = 0; f < 5; f++) {
            if ((ret = get_number(ctx, k, names[f], sub, dst[f], &found)) < 0)
                return ret;
            if (!found)
                return bad(ctx, "%s.%s: required", sub, names[f]);
        }
        if (kf->time < 0)
            return bad(ctx, "%s.time: must be >= 0", sub);
        if (kf->width <= 0)
            return bad(ctx, "%s.width: must be > 0", sub);
        if (kf->height <= 0)
            return bad(ctx, "%s.height: must be > 0", sub);
        if (kf->width > 65536 || kf->height > 65536 || fabs(kf->x) > 65536 ||
            fabs(kf->y) > 65536)
            return bad(ctx, "%s: box %gx%g at %g,%g is larger than any video frame", sub,
                       kf->width, kf->height, kf->x, kf->y);
        clip->nb_keyframes++;
    }
    /* stable insertion sort by time: keyframes usually arrive sorted */
    for (int i = 1; i < clip->nb_keyframes; i++) {
        ReelKeyframe k = clip->keyframes[i];
        int j = i;
        for (; j > 0 && clip->keyframes[j - 1].time > k.time; j--)
            clip->keyframes[j] = clip->keyframes[j - 1];
        clip->keyframes[j] = k;
    }
    return 0;
}

/* Does a keyframe box intersect a W x H frame? */
static int check_boxes(ParseCtx *ctx, const ReelClip *clip, const char *path, int W, int H)
{
    for (int i = 0; i < clip->nb_keyframes; i++) {
        const ReelKeyframe *k = &clip->keyframes[i];
        if (k->x >= W || k->y >= H || k->x + k->width <= 0 || k->y + k->height <= 0)
            return bad(ctx, "%s.cropKeyframes: box %gx%g at %g,%g lies outside the %dx%d frame",
                       path, k->width, k->height, k->x, k->y, W, H);
    }
    return 0;
}

static int parse_interp(ParseCtx *ctx, json_t *obj, const char *path, ReelInterp *out)
{
    const char *s;
    int ret = get_string(ctx, obj, "interpolation", path, &s);

    if (ret < 0 || !s)
        return ret;
    if (!strcasecmp(s, "linear"))
        *out = REEL_INTERP_LINEAR;
    else if (!strcasecmp(s, "catmull-rom") || !strcasecmp(s, "catmullrom") ||
             !strcasecmp(s, "spline"))
        *out = REEL_INTERP_CATMULL_ROM;
    else
        return bad(ctx, "%s.interpolation: unknown '%s' (expected catmull-rom or linear)", path,
                   s);
    return 0;
}

static char *title_from(const char *clip_name, const char *file_name, int ordinal)
{
    char buf[256];

    if (clip_name && *clip_name)
        return dup_str(clip_name);
    if (file_name && *file_name) {
        const char *base = strrchr(file_name, '/');
        base = base ? base + 1 : file_name;
        snprintf(buf, sizeof(buf), "%s", base);
        char *dot = strrchr(buf, '.');
        if (dot && dot != buf)
            *dot = '\0';
        if (*buf)
            return dup_str(buf);
    }
    snprintf(buf, sizeof(buf), "Clip %d", ordinal);
    return dup_str(buf);
}

static int parse_clip(ParseCtx *ctx, json_t *c, int pos, ReelClip *clip, ClipPriv *cp,
                      ReelInterp job_interp, double fps)
{
    char path[64];
    json_t *segs, *trim, *kfs;
    const char *file_name, *clip_name, *source;
    double v, trim_start = 0.0, trim_end = OPEN_END;
    int found, ret;

    snprintf(path, sizeof(path), "clips[%d]", pos);
    if (!json_is_object(c))
        return bad(ctx, "%s: must be an object", path);

    clip->clip_index = pos;
    if ((ret = get_int(ctx, c, "clipIndex", path, 0, 1000000, &clip->clip_index, &found)) < 0)
        return ret;
    if ((ret = get_string(ctx, c, "fileName", path, &file_name)) < 0 ||
        (ret = get_string(ctx, c, "clipName", path, &clip_name)) < 0 ||
        (ret = get_string(ctx, c, "source", path, &source)) < 0)
        return ret;
    if (source) {
        if (!*source)
            return bad(ctx, "%s.source: must not be empty", path);
        if (source[0] != '/' && ctx->base_dir && *ctx->base_dir) {
            size_t n = strlen(ctx->base_dir) + strlen(source) + 2;
            if (!(clip->source = malloc(n)))
                return REEL_ERR(ENOMEM);
            snprintf(clip->source, n, "%s/%s", ctx->base_dir, source);
        } else if (!(clip->source = dup_str(source))) {
            return REEL_ERR(ENOMEM);
        }
    }
    if (file_name && !(clip->file_name = dup_str(file_name)))
        return REEL_ERR(ENOMEM);

    if ((ret = get_number(ctx, c, "duration", path, &v, &found)) < 0)
        return ret;
    if (found) {
        if (v <= 0)
            return bad(ctx, "%s.duration: must be > 0", path);
        clip->duration = v;
    }
    if ((ret = get_int(ctx, c, "sourceWidth", path, 1, 65536, &clip->source_width, &found)) < 0 ||
        (ret = get_int(ctx, c, "sourceHeight", path, 1, 65536, &clip->source_height, &found)) <
            0)
        return ret;
    if ((ret = get_number(ctx, c, "rotation", path, &v, &found)) < 0)
        return ret;
    if (found)
        clip->rotation = fmod(fmod(v, 360.0) + 360.0, 360.0);
    clip->interp = job_interp;
    if ((ret = parse_interp(ctx, c, path, &clip->interp)) < 0)
        return ret;

    /* segments: boundaries/segmentSpeeds, or the {trim_start, segments:[]} form */
    if ((ret = get_object(ctx, c, "segments", path, &segs)) < 0)
        return ret;
    if (segs) {
        char sub[96];
        snprintf(sub, sizeof(sub), "%s.segments", path);
        json_t *list = json_object_get(segs, "segments");
        if (list && !json_is_null(list))
            ret = parse_segment_list(ctx, list, sub, clip->duration, cp);
        else
            ret = parse_boundaries(ctx, segs, sub, clip->duration, cp);
        if (ret < 0)
            return ret;
        /* trim inside segments (lower precedence than the top level) */
        if ((ret = get_number(ctx, segs, "trim_start", sub, &v, &found)) < 0)
            return ret;
        if (found)
            trim_start = v;
        if ((ret = get_number(ctx, segs, "trim_end", sub, &v, &found)) < 0)
            return ret;
        if (found)
            trim_end = v;
        if ((ret = get_object(ctx, segs, "trimRange", sub, &trim)) < 0)
            return ret;
        if (trim) {
            char tpath[128];
            snprintf(tpath, sizeof(tpath), "%s.trimRange", sub);
            if ((ret = parse_range(ctx, trim, tpath, &trim_start, &trim_end)) < 0)
                return ret;
        }
    } else if ((ret = append_raw(cp, 0.0, clip->duration > 0 ? clip->duration : OPEN_END,
                                 1.0)) < 0) {
        return ret;
    }
    if ((ret = get_object(ctx, c, "trimRange", path, &trim)) < 0)
        return ret;
    if (trim) {
        char tpath[96];
        snprintf(tpath, sizeof(tpath), "%s.trimRange", path);
        if ((ret = parse_range(ctx, trim, tpath, &trim_start, &trim_end)) < 0)
            return ret;
    }
    if (trim_start < 0)
        return bad(ctx, "%s.trimRange.start: must be >= 0", path);
    if (trim_end >= 0 && trim_end <= trim_start)
        return bad(ctx, "%s.trimRange: end %g must be after start %g", path, trim_end,
                   trim_start);
    if (clip->duration > 0) {
        if (trim_start >= clip->duration)
            return bad(ctx, "%s.trimRange.start: %g is beyond the clip duration %g", path,
                       trim_start, clip->duration);
        if (trim_end > clip->duration + TIME_EPS)
            return bad(ctx, "%s.trimRange.end: %g is beyond the clip duration %g", path,
                       trim_end, clip->duration);
        if (trim_end < 0 || trim_end > clip->duration)
            trim_end = clip->duration;
    }
    clip->trim_start = trim_start;
    clip->trim_end = trim_end;
    if ((ret = apply_trim(ctx, clip, cp, path, fps)) < 0)
        return ret;

    kfs = json_object_get(c, "cropKeyframes");
    if (kfs && !json_is_null(kfs) && (ret = parse_keyframes(ctx, kfs, path, clip)) < 0)
        return ret;
    if (clip->source_width > 0 && clip->source_height > 0 &&
        (ret = check_boxes(ctx, clip, path, clip->source_width, clip->source_height)) < 0)
        return ret;

    if (!(clip->title = title_from(clip_name, file_name, pos + 1)))
        return REEL_ERR(ENOMEM);
    return 0;
}

/* ---- job level ------------------------------------------------------------- */

static int parse_transition(ParseCtx *ctx, json_t *root, ReelJob *job)
{
    json_t *t;
    const char *type;
    double d;
    int found, ret;

    job->transition = REEL_TRANSITION_CUT;
    job->transition_duration = 0.5;
    if ((ret = get_object(ctx, root, "transition", "job", &t)) < 0)
        return bad(ctx, "transition: must be an object {type, duration}");
    if (!t)
        return 0;
    if ((ret = get_string(ctx, t, "type", "transition", &type)) < 0)
        return ret;
    if (!type || !strcasecmp(type, "cut") || !strcasecmp(type, "none"))
        job->transition = REEL_TRANSITION_CUT;
    else if (!strcasecmp(type, "fade"))
        job->transition = REEL_TRANSITION_FADE;
    else if (!strcasecmp(type, "dissolve"))
        job->transition = REEL_TRANSITION_DISSOLVE;
    else
        return bad(ctx, "transition.type: unknown transition '%s' (expected cut, fade or dissolve)",
                   type);
    if ((ret = get_number(ctx, t, "duration", "transition", &d, &found)) < 0)
        return ret;
    if (found) {
        if (d < 0 || d > 10)
            return bad(ctx, "transition.duration: %g out of range 0-10 s", d);
        job->transition_duration = d;
    }
    return 0;
}

static int parse_aspect(ParseCtx *ctx, json_t *root, ReelJob *job)
{
    const char *s;
    int ret, n, w, h;

    job->aspect_w = 9;
    job->aspect_h = 16;
    if ((ret = get_string(ctx, root, "globalAspectRatio", "job", &s)) < 0)
        return bad(ctx, "globalAspectRatio: must be a string like \"9:16\"");
    if (!s)
        return 0;
    if (sscanf(s, "%d:%d%n", &w, &h, &n) != 2 || s[n] || w <= 0 || h <= 0 || w > 100 ||
        h > 100)
        return bad(ctx, "globalAspectRatio: '%s' is not a ratio like \"9:16\"", s);
    job->aspect_w = w;
    job->aspect_h = h;
    return 0;
}

static int parse_upscale(ParseCtx *ctx, json_t *up, ReelOutputSettings *o)
{
    static const char *const known[] = {"model", "mode", "tile", "precision", NULL};
    const char *key, *s;
    json_t *v;
    int found, ret;

    json_object_foreach(up, key, v) {
        int ok = 0;
        for (int i = 0; known[i]; i++)
            ok |= !strcmp(key, known[i]);
        if (!ok)
            return bad(ctx, "output.upscale.%s: unknown field (expected model, mode, tile, precision)",
                       key);
    }
    if ((ret = get_string(ctx, up, "model", "output.upscale", &s)) < 0)
        return ret;
    if (s) {
        if (!strcmp(s, "realesr-general-x4v3") || !strcmp(s, "x4fast") ||
            !strcmp(s, "realesrgan-x4fast"))
            snprintf(o->upscale_model, sizeof(o->upscale_model), "x4fast");
        else if (!strcmp(s, "RealESRGAN_x4plus") || !strcmp(s, "x4plus") ||
                 !strcmp(s, "realesrgan-x4plus"))
            snprintf(o->upscale_model, sizeof(o->upscale_model), "x4plus");
        else
            return bad(ctx, "output.upscale.model: unknown model '%s' (expected "
                            "realesr-general-x4v3 or RealESRGAN_x4plus)", s);
    }
    if ((ret = get_string(ctx, up, "mode", "output.upscale", &s)) < 0)
        return ret;
    if (s) {
        if (!strcasecmp(s, "auto"))
            o->upscale_mode = REEL_UPSCALE_AUTO;
        else if (!strcasecmp(s, "always"))
            o->upscale_mode = REEL_UPSCALE_ALWAYS;
        else if (!strcasecmp(s, "off"))
            o->upscale_mode = REEL_UPSCALE_OFF;
        else
            return bad(ctx, "output.upscale.mode: unknown mode '%s' (expected auto, always or off)",
                       s);
    }
    if ((ret = get_string(ctx, up, "precision", "output.upscale", &s)) < 0)
        return ret;
    if (s) {
        if (!strcasecmp(s, "fp32"))
            o->upscale_bf16 = 0;
        else if (!strcasecmp(s, "bf16"))
            o->upscale_bf16 = 1;
        else
            return bad(ctx, "output.upscale.precision: unknown precision '%s' (expected fp32 or bf16)",
                       s);
    }
    return get_int(ctx, up, "tile", "output.upscale", -1, 4096, &o->upscale_tile, &found);
}

static int parse_output(ParseCtx *ctx, json_t *root, ReelJob *job)
{
    static const char *const known[] = {"width", "height", "fps", "include_audio", "video_codec",
                                        "crf", "preset", "audio_bitrate", "upscale", "chapters",
                                        NULL};
    static const char *const presets[] = {"ultrafast", "superfast", "veryfast", "faster", "fast",
                                          "medium", "slow", "slower", "veryslow", NULL};
    ReelOutputSettings *o = &job->output;
    json_t *out, *v, *up;
    const char *key, *s;
    double fps;
    int fw, fh, found, ret;

    if ((ret = get_object(ctx, root, "output", "job", &out)) < 0)
        return bad(ctx, "output: must be an object");
    if (!out)
        return 0;
    json_object_foreach(out, key, v) {
        int ok = 0;
        for (int i = 0; known[i]; i++)
            ok |= !strcmp(key, known[i]);
        if (!ok)
            return bad(ctx, "output.%s: unknown field", key);
    }
    if ((ret = get_int(ctx, out, "width", "output", 16, ctx->limits->max_width, &o->width,
                       &fw)) < 0 ||
        (ret = get_int(ctx, out, "height", "output", 16, ctx->limits->max_height, &o->height,
                       &fh)) < 0)
        return ret;
    if (fw != fh)
        return bad(ctx, "output.%s: width and height must be given together",
                   fw ? "height" : "width");
    if (fw && ((o->width | o->height) & 1))
        return bad(ctx, "output.width: %dx%d must be even for yuv420p", o->width, o->height);
    job->output_size_given = fw;
    if ((ret = get_number(ctx, out, "fps", "output", &fps, &found)) < 0)
        return ret;
    if (found) {
        if (fps < 1 || fps > 240)
            return bad(ctx, "output.fps: %g out of range 1-240", fps);
        /* 23.976, 29.97 and 59.94 mean the NTSC rates x/1001 */
        AVRational q = av_d2q(fps, 1001000);
        for (int k = 24; k <= 60; k += k == 24 ? 6 : 30) {
            if (fabs(fps - k * 1000.0 / 1001) < 0.005)
                q = (AVRational){k * 1000, 1001};
        }
        o->fps_num = q.num;
        o->fps_den = q.den;
    }
    if ((ret = get_bool(ctx, out, "include_audio", "output", &o->include_audio)) < 0 ||
        (ret = get_bool(ctx, out, "chapters", "output", &o->chapters)) < 0)
        return ret;
    if ((ret = get_int(ctx, out, "crf", "output", 0, 51, &o->crf, &found)) < 0 ||
        (ret = get_int(ctx, out, "audio_bitrate", "output", 32000, 512000, &o->audio_bitrate,
                       &found)) < 0)
        return ret;
    if ((ret = get_string(ctx, out, "preset", "output", &s)) < 0)
        return ret;
    if (s) {
        int ok = 0;
        for (int i = 0; presets[i]; i++)
            ok |= !strcmp(s, presets[i]);
        if (!ok)
            return bad(ctx, "output.preset: unknown x264 preset '%s'", s);
        snprintf(o->preset, sizeof(o->preset), "%s", s);
    }
    if ((ret = get_string(ctx, out, "video_codec", "output", &s)) < 0)
        return ret;
    if (s) {
        if (strcmp(s, "libx264") && strcmp(s, "h264"))
            return bad(ctx, "output.video_codec: '%s' is not supported (expected libx264)", s);
        snprintf(o->video_codec, sizeof(o->video_codec), "libx264");
    }
    if ((ret = get_object(ctx, out, "upscale", "output", &up)) < 0)
        return ret;
    if (up && (ret = parse_upscale(ctx, up, o)) < 0)
        return ret;
    return 0;
}

static void output_defaults(ReelOutputSettings *o)
{
    memset(o, 0, sizeof(*o));
    o->fps_num = 30;
    o->fps_den = 1;
    o->include_audio = 1;
    o->crf = 18;
    snprintf(o->preset, sizeof(o->preset), "fast");
    o->audio_bitrate = 192000;
    snprintf(o->video_codec, sizeof(o->video_codec), "libx264");
    o->chapters = 1;
    snprintf(o->upscale_model, sizeof(o->upscale_model), "x4fast");
    o->upscale_mode = REEL_UPSCALE_AUTO;
}

static void clip_uninit(ReelClip *c)
{
    free(c->source);
    free(c->file_name);
    free(c->title);
    free(c->segments);
    free(c->keyframes);
}

void reel_job_free(ReelJob **pjob)
{
    JobPriv *jp;

    if (!pjob || !*pjob)
        return;
    jp = (JobPriv *)*pjob;
    for (int i = 0; i < jp->pub.nb_clips; i++) {
        clip_uninit(&jp->pub.clips[i]);
        free(jp->priv[i].raw);
    }
    free(jp->pub.clips);
    free(jp->priv);
    free(jp);
    *pjob = NULL;
}

static void *dup_mem(const void *p, size_t size)
{
    void *d;
    if (!p || size == 0)
        return NULL;
    if ((d = malloc(size)))
        memcpy(d, p, size);
    return d;
}

/* Deep copy of one clip and its private part; 0 or ENOMEM (dst then freeable). */
static int clip_copy(ReelClip *dst, ClipPriv *dpriv, const ReelClip *src, const ClipPriv *spriv)
{
    *dst = *src;
    dst->source = src->source ? dup_str(src->source) : NULL;
    dst->file_name = src->file_name ? dup_str(src->file_name) : NULL;
    dst->title = src->title ? dup_str(src->title) : NULL;
    dst->segments = dup_mem(src->segments, (size_t)src->nb_segments * sizeof(*src->segments));
    dst->keyframes = dup_mem(src->keyframes, (size_t)src->nb_keyframes * sizeof(*src->keyframes));
    dpriv->nb_raw = spriv->nb_raw;
    dpriv->raw = dup_mem(spriv->raw, (size_t)spriv->nb_raw * sizeof(*spriv->raw));
    if ((src->source && !dst->source) || (src->file_name && !dst->file_name) ||
        (src->title && !dst->title) || (src->nb_segments && !dst->segments) ||
        (src->nb_keyframes && !dst->keyframes) || (spriv->nb_raw && !dpriv->raw))
        return REEL_ERR(ENOMEM);
    return 0;
}

int reel_job_clone(ReelJob **out, const ReelJob *job, int only_clip)
{
    const JobPriv *sp = (const JobPriv *)job;
    int n = only_clip >= 0 ? 1 : job->nb_clips;
    JobPriv *jp;

    *out = NULL;
    if (only_clip >= job->nb_clips)
        return REEL_ERR(EINVAL);
    if (!(jp = calloc(1, sizeof(*jp))))
        return REEL_ERR(ENOMEM);
    jp->pub = *job;
    jp->pub.nb_clips = 0;
    jp->pub.clips = calloc((size_t)n, sizeof(*jp->pub.clips));
    jp->priv = calloc((size_t)n, sizeof(*jp->priv));
    if (!jp->pub.clips || !jp->priv) {
        reel_job_free((ReelJob **)&jp);
        return REEL_ERR(ENOMEM);
    }
    for (int i = 0; i < n; i++) {
        int from = only_clip >= 0 ? only_clip : i;
        jp->pub.nb_clips++;
        if (clip_copy(&jp->pub.clips[i], &jp->priv[i], &job->clips[from], &sp->priv[from]) < 0) {
            reel_job_free((ReelJob **)&jp);
            return REEL_ERR(ENOMEM);
        }
    }
    *out = &jp->pub;
    return 0;
}

int reel_job_parse(ReelJob **out, const char *json, const char *base_dir,
                   const ReelJobLimits *limits, char *errmsg)
{
    ReelJobLimits deflimits;
    ParseCtx ctx = {errmsg, limits, base_dir};
    json_error_t jerr;
    json_t *root = NULL, *clips, *v;
    JobPriv *jp = NULL;
    ReelInterp interp = REEL_INTERP_CATMULL_ROM;
    size_t n;
    int ret;

    *out = NULL;
    if (!limits) {
        reel_job_limits_default(&deflimits);
        ctx.limits = &deflimits;
    }
    if (!json)
        return bad(&ctx, "job: empty");
    root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return bad(&ctx, "job: invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                   jerr.text);
    if (!json_is_object(root)) {
        ret = bad(&ctx, "job: must be a JSON object");
        goto fail;
    }
    if (!(jp = calloc(1, sizeof(*jp)))) {
        ret = REEL_ERR(ENOMEM);
        goto fail;
    }
    output_defaults(&jp->pub.output);
    if ((ret = parse_output(&ctx, root, &jp->pub)) < 0 ||
        (ret = parse_transition(&ctx, root, &jp->pub)) < 0 ||
        (ret = parse_aspect(&ctx, root, &jp->pub)) < 0 ||
        (ret = parse_interp(&ctx, root, "job", &interp)) < 0)
        goto fail;

    clips = json_object_get(root, "clips");
    if (!clips || !json_is_array(clips)) {
        ret = bad(&ctx, "clips: required, an array of clips");
        goto fail;
    }
    n = json_array_size(clips);
    if (n == 0) {
        ret = bad(&ctx, "clips: at least one clip is required");
        goto fail;
    }
    if (n > (size_t)ctx.limits->max_clips) {
        ret = reel_fail(errmsg, REEL_ERROR_LIMIT, "clips: %zu clips, the limit is %d", n,
                        ctx.limits->max_clips);
        goto fail;
    }
    jp->pub.clips = calloc(n, sizeof(*jp->pub.clips));
    jp->priv = calloc(n, sizeof(*jp->priv));
    if (!jp->pub.clips || !jp->priv) {
        ret = REEL_ERR(ENOMEM);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        v = json_array_get(clips, i);
        jp->pub.nb_clips++;
        ret = parse_clip(&ctx, v, (int)i, &jp->pub.clips[i], &jp->priv[i], interp,
                         reel_job_fps(&jp->pub));
        if (ret < 0)
            goto fail;
    }
    /* order by clipIndex (stable), indices unique */
    for (int i = 1; i < jp->pub.nb_clips; i++) {
        ReelClip c = jp->pub.clips[i];
        ClipPriv p = jp->priv[i];
        int j = i;
        for (; j > 0 && jp->pub.clips[j - 1].clip_index > c.clip_index; j--) {
            jp->pub.clips[j] = jp->pub.clips[j - 1];
            jp->priv[j] = jp->priv[j - 1];
        }
        jp->pub.clips[j] = c;
        jp->priv[j] = p;
    }
    for (int i = 1; i < jp->pub.nb_clips; i++) {
        if (jp->pub.clips[i].clip_index == jp->pub.clips[i - 1].clip_index) {
            ret = bad(&ctx, "clips: clipIndex %d is used twice", jp->pub.clips[i].clip_index);
            goto fail;
        }
    }
    json_decref(root);
    *out = &jp->pub;
    return 0;

fail:
    json_decref(root);
    if (jp) {
        ReelJob *job = &jp->pub;
        reel_job_free(&job);
    }
    return ret;
}

int reel_job_load(ReelJob **out, const char *path, const ReelJobLimits *limits, char *errmsg)
{
    char *text = NULL, *dir = NULL, *slash;
    FILE *f;
    long size;
    int ret;

    *out = NULL;
    if (!(f = fopen(path, "rb")))
        return reel_fail(errmsg, REEL_ERR(errno), "%s: cannot open the job file: %s", path,
                         strerror(errno));
    if (fseek(f, 0, SEEK_END) < 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0) {
        ret = reel_fail(errmsg, REEL_ERR(EIO), "%s: cannot read the job file", path);
        goto end;
    }
    if (size > MAX_JOB_BYTES) {
        ret = reel_fail(errmsg, REEL_ERROR_LIMIT, "%s: job file larger than %d bytes", path,
                        MAX_JOB_BYTES);
        goto end;
    }
    if (!(text = malloc((size_t)size + 1)) || !(dir = dup_str(path))) {
        ret = REEL_ERR(ENOMEM);
        goto end;
    }
    if (fread(text, 1, (size_t)size, f) != (size_t)size) {
        ret = reel_fail(errmsg, REEL_ERR(EIO), "%s: cannot read the job file", path);
        goto end;
    }
    text[size] = '\0';
    slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        dir[0] = '\0';
    ret = reel_job_parse(out, text, slash ? dir : NULL, limits, errmsg);
    if (ret < 0)
        goto end;
    for (int i = 0; i < (*out)->nb_clips; i++) {
        if (!(*out)->clips[i].source) {
            reel_job_free(out);
            ret = reel_fail(errmsg, REEL_ERROR_INVALID_JOB,
                            "clips[%d].source: required in a job file (a path to the video)", i);
            goto end;
        }
    }
end:
    fclose(f);
    free(text);
    free(dir);
    return ret;
}

int reel_job_apply_probe(ReelJob *job, int i, int width, int height, double duration,
                         char *errmsg)
{
    JobPriv *jp = (JobPriv *)job;
    ReelJobLimits deflimits;
    ParseCtx ctx = {errmsg, &deflimits, NULL};
    ReelClip *clip = &job->clips[i];
    char path[64];
    int ret;

    reel_job_limits_default(&deflimits);
    /* report by the clip's position in the job as written: its index */
    snprintf(path, sizeof(path), "clips[clipIndex=%d]", clip->clip_index);
    if (width <= 0 || height <= 0 || !(duration > 0))
        return bad(&ctx, "%s.source: the video has no usable frames", path);
    clip->source_width = width;
    clip->source_height = height;
    if (clip->trim_start >= duration)
        return bad(&ctx, "%s.trimRange.start: %g is beyond the end of the source (%.3f s)",
                   path, clip->trim_start, duration);
    if (clip->trim_end < 0 || clip->trim_end > duration)
        clip->trim_end = duration;
    for (int s = 0; s < jp->priv[i].nb_raw; s++) {
        RawSegment *r = &jp->priv[i].raw[s];
        if (r->end < 0 || r->end > duration)
            r->end = duration;
        if (r->start > duration)
            r->start = duration;
    }
    if ((ret = apply_trim(&ctx, clip, &jp->priv[i], path, reel_job_fps(job))) < 0)
        return ret;
    return check_boxes(&ctx, clip, path, width, height);
}
