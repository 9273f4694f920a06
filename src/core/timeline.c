/*
 * timeline.c - frame, sample and crop arithmetic (DESIGN section 3, "Exact
 * conventions"). Everything here is pure; see timeline.h for the contract.
 *
 * Rounding: the contract rounds half up. Sums of seconds / speed are computed in
 * double, so a value that is mathematically k + 0.5 may come out a hair below;
 * REEL_ROUND_EPS nudges such values up. It is far below any real frame or
 * sample difference (1e-9 of a frame).
 */
#include "core/timeline.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "core/error.h"

#define REEL_ROUND_EPS 1e-9

int64_t reel_round_half_up(double x)
{
    return (int64_t)floor(x + 0.5 + REEL_ROUND_EPS);
}

int reel_clip_frames_init(ReelClipFrames *cf, const ReelClip *clip, double fps)
{
    double seconds = 0.0;

    cf->nb_segments = clip->nb_segments;
    cf->nb_frames = 0;
    cf->seg_end = calloc(clip->nb_segments > 0 ? (size_t)clip->nb_segments : 1,
                         sizeof(*cf->seg_end));
    if (!cf->seg_end)
        return REEL_ERR(ENOMEM);
    for (int i = 0; i < clip->nb_segments; i++) {
        const ReelSegment *s = &clip->segments[i];
        seconds += (s->end - s->start) / s->speed;
        cf->seg_end[i] = reel_round_half_up(fps * seconds);
    }
    if (clip->nb_segments > 0)
        cf->nb_frames = cf->seg_end[clip->nb_segments - 1];
    return 0;
}

void reel_clip_frames_uninit(ReelClipFrames *cf)
{
    free(cf->seg_end);
    cf->seg_end = NULL;
    cf->nb_segments = 0;
    cf->nb_frames = 0;
}

double reel_clip_source_time(const ReelClip *clip, const ReelClipFrames *cf, double fps,
                             int64_t n, int *segment)
{
    int64_t first = 0;
    int i;

    if (cf->nb_segments == 0) {
        if (segment)
            *segment = 0;
        return clip->trim_start;
    }
    if (n >= cf->nb_frames)
        n = cf->nb_frames - 1;
    if (n < 0)
        n = 0;
    /* Segments that round to zero frames are skipped: n lands in the first
     * segment whose end is beyond it. */
    for (i = 0; i < cf->nb_segments - 1 && n >= cf->seg_end[i]; i++)
        first = cf->seg_end[i];
    if (segment)
        *segment = i;
    return clip->segments[i].start + (double)(n - first) / fps * clip->segments[i].speed;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

int reel_layout_init(ReelLayout *layout, const ReelJob *job)
{
    double fps = reel_job_fps(job);
    int64_t start = 0;
    int ret = 0;

    layout->fps = fps;
    layout->nb_clips = job->nb_clips;
    layout->nb_frames = 0;
    layout->nb_samples = 0;
    layout->clips = calloc(job->nb_clips > 0 ? (size_t)job->nb_clips : 1,
                           sizeof(*layout->clips));
    if (!layout->clips)
        return REEL_ERR(ENOMEM);

    for (int k = 0; k < job->nb_clips; k++) {
        ReelClipFrames cf;
        if ((ret = reel_clip_frames_init(&cf, &job->clips[k], fps)) < 0)
            goto fail;
        layout->clips[k].nb_frames = cf.nb_frames;
        reel_clip_frames_uninit(&cf);
    }

    for (int k = 0; k < job->nb_clips; k++) {
        ReelClipPlace *p = &layout->clips[k];
        p->start = start;
        if (k + 1 < job->nb_clips && job->transition != REEL_TRANSITION_CUT) {
            int64_t d = reel_round_half_up(job->transition_duration * fps);
            d = min64(d, min64(p->nb_frames / 2, layout->clips[k + 1].nb_frames / 2));
            p->d_out = d;
            layout->clips[k + 1].d_in = d;
        }
        start += p->nb_frames;
        if (job->transition == REEL_TRANSITION_DISSOLVE)
            start -= p->d_out;
        reel_frames_to_samples(fps, p->start, p->start + p->nb_frames, &p->audio_start,
                               &p->audio_end);
    }
    if (job->nb_clips > 0) {
        const ReelClipPlace *last = &layout->clips[job->nb_clips - 1];
        layout->nb_frames = last->start + last->nb_frames;
    }
    reel_frames_to_samples(fps, 0, layout->nb_frames, &(int64_t){0}, &layout->nb_samples);
    return 0;

fail:
    reel_layout_uninit(layout);
    return ret;
}

void reel_layout_uninit(ReelLayout *layout)
{
    free(layout->clips);
    layout->clips = NULL;
    layout->nb_clips = 0;
}

double reel_clip_weight(const ReelClipPlace *place, int64_t n)
{
    double w = 1.0;

    if (place->d_in > 0 && (double)n / (double)place->d_in < w)
        w = (double)n / (double)place->d_in;
    if (place->d_out > 0 && (double)(place->nb_frames - n) / (double)place->d_out < w)
        w = (double)(place->nb_frames - n) / (double)place->d_out;
    return w < 0.0 ? 0.0 : w;
}

void reel_frames_to_samples(double fps, int64_t f0, int64_t f1, int64_t *first, int64_t *end)
{
    double r = REEL_AUDIO_RATE / fps;

    *first = reel_round_half_up((double)f0 * r);
    *end = reel_round_half_up((double)f1 * r);
}

/* ---- crop ---------------------------------------------------------------- */

static double catmull_rom(double p0, double p1, double p2, double p3, double u)
{
    return 0.5 * (2.0 * p1 + (-p0 + p2) * u + (2.0 * p0 - 5.0 * p1 + 4.0 * p2 - p3) * u * u +
                  (-p0 + 3.0 * p1 - 3.0 * p2 + p3) * u * u * u);
}

static double clampd(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Interpolate the raw (unclamped) box of a clip with keyframes at time t. */
static void interpolate_box(const ReelClip *clip, double t, double box[4])
{
    const ReelKeyframe *kf = clip->keyframes;
    int n = clip->nb_keyframes;
    int i;

    if (t <= kf[0].time || n == 1) {
        box[0] = kf[0].x, box[1] = kf[0].y, box[2] = kf[0].width, box[3] = kf[0].height;
        return;
    }
    if (t >= kf[n - 1].time) {
        box[0] = kf[n - 1].x, box[1] = kf[n - 1].y;
        box[2] = kf[n - 1].width, box[3] = kf[n - 1].height;
        return;
    }
    /* kf[i].time <= t < kf[i + 1].time; zero-length spans are never chosen */
    for (i = 0; i + 1 < n && kf[i + 1].time <= t; i++)
        ;
    const ReelKeyframe *k0 = &kf[i > 0 ? i - 1 : 0], *k1 = &kf[i], *k2 = &kf[i + 1];
    const ReelKeyframe *k3 = &kf[i + 2 < n ? i + 2 : n - 1];
    double u = (t - k1->time) / (k2->time - k1->time);
    const double a[4][4] = {
        {k0->x, k1->x, k2->x, k3->x},
        {k0->y, k1->y, k2->y, k3->y},
        {k0->width, k1->width, k2->width, k3->width},
        {k0->height, k1->height, k2->height, k3->height},
    };
    for (int c = 0; c < 4; c++) {
        if (clip->interp == REEL_INTERP_LINEAR)
            box[c] = a[c][1] + (a[c][2] - a[c][1]) * u;
        else
            box[c] = catmull_rom(a[c][0], a[c][1], a[c][2], a[c][3], u);
    }
}

ReelRect reel_crop_at(const ReelClip *clip, double t, int W, int H, int aw, int ah)
{
    double box[4];
    ReelRect r;

    if (clip->nb_keyframes > 0) {
        interpolate_box(clip, t, box);
    } else {
        /* largest centred box of aspect aw:ah */
        if ((double)W * ah >= (double)H * aw) {
            box[3] = H;
            box[2] = (double)H * aw / ah;
        } else {
            box[2] = W;
            box[3] = (double)W * ah / aw;
        }
        box[0] = (W - box[2]) / 2.0;
        box[1] = (H - box[3]) / 2.0;
    }
    /* shrink to the frame, move inside, round half up, clamp again */
    box[2] = clampd(box[2], 1.0, W);
    box[3] = clampd(box[3], 1.0, H);
    box[0] = clampd(box[0], 0.0, W - box[2]);
    box[1] = clampd(box[1], 0.0, H - box[3]);
    r.width = (int)clampd((double)reel_round_half_up(box[2]), 1.0, W);
    r.height = (int)clampd((double)reel_round_half_up(box[3]), 1.0, H);
    r.x = (int)clampd((double)reel_round_half_up(box[0]), 0.0, W - r.width);
    r.y = (int)clampd((double)reel_round_half_up(box[1]), 0.0, H - r.height);
    return r;
}

void reel_job_default_size(const ReelJob *job, int *width, int *height)
{
    double min_w = INFINITY, min_h = INFINITY;

    for (int c = 0; c < job->nb_clips; c++) {
        for (int k = 0; k < job->clips[c].nb_keyframes; k++) {
            const ReelKeyframe *kf = &job->clips[c].keyframes[k];
            min_w = fmin(min_w, kf->width);
            min_h = fmin(min_h, kf->height);
        }
    }
    if (!isfinite(min_w)) {
        int portrait = job->aspect_w * 16 == job->aspect_h * 9;
        *width = portrait ? 1080 : 1920;
        *height = portrait ? 1920 : 1080;
        return;
    }
    double w = min_w * 4.0, h = min_h * 4.0;
    double scale = fmin(1.0, fmin(2560.0 / w, 1440.0 / h));
    int iw = (int)(w * scale), ih = (int)(h * scale);
    *width = iw - (iw & 1);
    *height = ih - (ih & 1);
    if (*width < 2)
        *width = 2;
    if (*height < 2)
        *height = 2;
}
