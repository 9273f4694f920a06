/*
 * test_timeline.c - frame counts for any fps and speed, source times, layout with
 * transitions, audio sample ranges, and the crop box: Catmull-Rom and linear
 * interpolation, holding, shrinking, moving inside and rounding.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/job.h"
#include "core/log.h"
#include "core/timeline.h"

static ReelJob *parse_ok(const char *json)
{
    char err[REEL_ERRMSG_SIZE] = "";
    ReelJob *job = NULL;
    if (reel_job_parse(&job, json, NULL, NULL, err) < 0)
        fail_msg("parse: %s", err);
    return job;
}

static ReelClip one_segment(double start, double end, double speed, ReelSegment *seg)
{
    ReelClip c;
    memset(&c, 0, sizeof(c));
    seg->start = start, seg->end = end, seg->speed = speed;
    c.segments = seg;
    c.nb_segments = 1;
    c.trim_start = start;
    c.trim_end = end;
    return c;
}

static int64_t frames_of(const ReelClip *c, double fps)
{
    ReelClipFrames cf;
    assert_int_equal(reel_clip_frames_init(&cf, c, fps), 0);
    int64_t n = cf.nb_frames;
    reel_clip_frames_uninit(&cf);
    return n;
}

static void test_frame_counts(void **state)
{
    ReelSegment s;
    ReelClip c = one_segment(0, 1, 1, &s);
    assert_int_equal(frames_of(&c, 30), 30);
    assert_int_equal(frames_of(&c, 60), 60);
    assert_int_equal(frames_of(&c, 24), 24);
    assert_int_equal(frames_of(&c, 30000.0 / 1001), 30);  /* 29.97 */
    c = one_segment(0, 10, 1, &s);
    assert_int_equal(frames_of(&c, 30000.0 / 1001), 300); /* 299.7 -> 300 */
    c = one_segment(0, 1, 0.25, &s);
    assert_int_equal(frames_of(&c, 30), 120);
    c = one_segment(0, 1, 4, &s);
    assert_int_equal(frames_of(&c, 30), 8);   /* 7.5 rounds half up */
    c = one_segment(0, 1, 3, &s);
    assert_int_equal(frames_of(&c, 30), 10);
    c = one_segment(0, 0.7, 0.5, &s);
    assert_int_equal(frames_of(&c, 25), 35);
    c = one_segment(2.5, 3.1, 1, &s);
    assert_int_equal(frames_of(&c, 30), 18);  /* 0.6 s: float noise must not lose a frame */
}

static void test_cumulative_rounding(void **state)
{
    /* three 0.05 s segments at 30 fps: 1.5 frames each -> ends 2, 3, 5 (not 2, 4, 6) */
    ReelSegment segs[3] = {{0, 0.05, 1}, {0.05, 0.1, 1}, {0.1, 0.15, 1}};
    ReelClip c;
    ReelClipFrames cf;
    memset(&c, 0, sizeof(c));
    c.segments = segs;
    c.nb_segments = 3;
    assert_int_equal(reel_clip_frames_init(&cf, &c, 30), 0);
    assert_int_equal(cf.seg_end[0], 2);
    assert_int_equal(cf.seg_end[1], 3);
    assert_int_equal(cf.seg_end[2], 5);
    reel_clip_frames_uninit(&cf);
}

static void test_source_times(void **state)
{
    /* 0..2 s at 1x, 2..3 s at 0.5x, 3..5 s at 2x; 30 fps */
    ReelSegment segs[3] = {{0, 2, 1}, {2, 3, 0.5}, {3, 5, 2}};
    ReelClip c;
    ReelClipFrames cf;
    int seg;
    memset(&c, 0, sizeof(c));
    c.segments = segs;
    c.nb_segments = 3;
    assert_int_equal(reel_clip_frames_init(&cf, &c, 30), 0);
    assert_int_equal(cf.seg_end[0], 60);
    assert_int_equal(cf.seg_end[1], 120);
    assert_int_equal(cf.nb_frames, 150);
    assert_true(fabs(reel_clip_source_time(&c, &cf, 30, 0, &seg) - 0.0) < 1e-12);
    assert_true(fabs(reel_clip_source_time(&c, &cf, 30, 59, &seg) - 59.0 / 30) < 1e-12);
    assert_true(fabs(reel_clip_source_time(&c, &cf, 30, 61, &seg) - (2 + 0.5 / 30)) < 1e-12);
    assert_int_equal(seg, 1);
    assert_true(fabs(reel_clip_source_time(&c, &cf, 30, 121, &seg) - (3 + 2.0 / 30)) < 1e-12);
    assert_int_equal(seg, 2);
    /* past the end: held at the last frame */
    assert_true(fabs(reel_clip_source_time(&c, &cf, 30, 500, &seg) - (3 + 58.0 / 30)) < 1e-12);
    reel_clip_frames_uninit(&cf);
}

static void test_layout(void **state)
{
    ReelLayout lay;
    /* three 2 s clips at 30 fps: 60 frames each */
    ReelJob *job = parse_ok("{\"clips\":[{\"duration\":2},{\"duration\":2},{\"duration\":2}],"
                            "\"transition\":{\"type\":\"dissolve\",\"duration\":0.5}}");
    assert_int_equal(reel_layout_init(&lay, job), 0);
    assert_int_equal(lay.clips[0].start, 0);
    assert_int_equal(lay.clips[1].start, 45);
    assert_int_equal(lay.clips[2].start, 90);
    assert_int_equal(lay.nb_frames, 150);
    assert_int_equal(lay.clips[0].d_in, 0);
    assert_int_equal(lay.clips[0].d_out, 15);
    assert_int_equal(lay.clips[1].d_in, 15);
    assert_int_equal(lay.clips[2].d_out, 0);
    assert_int_equal(lay.clips[1].audio_start, 45 * 1600);
    assert_int_equal(lay.clips[1].audio_end, 105 * 1600);
    assert_int_equal(lay.nb_samples, 150 * 1600);
    /* weights across a dissolve sum to one */
    for (int m = 0; m < 15; m++) {
        double a = reel_clip_weight(&lay.clips[0], 45 + m), b = reel_clip_weight(&lay.clips[1], m);
        assert_true(fabs(a + b - 1.0) < 1e-12);
    }
    assert_true(reel_clip_weight(&lay.clips[1], 0) == 0.0);
    assert_true(reel_clip_weight(&lay.clips[1], 30) == 1.0);
    reel_layout_uninit(&lay);
    reel_job_free(&job);

    job = parse_ok("{\"clips\":[{\"duration\":2},{\"duration\":2}],"
                   "\"transition\":{\"type\":\"fade\",\"duration\":0.5}}");
    assert_int_equal(reel_layout_init(&lay, job), 0);
    assert_int_equal(lay.nb_frames, 120); /* fade keeps the length */
    assert_int_equal(lay.clips[1].start, 60);
    assert_true(reel_clip_weight(&lay.clips[1], 0) == 0.0); /* first frame black */
    assert_true(fabs(reel_clip_weight(&lay.clips[0], 59) - 1.0 / 15) < 1e-12);
    reel_layout_uninit(&lay);
    reel_job_free(&job);

    /* d clamped to half the shorter neighbour: 20 frames -> 10 */
    job = parse_ok("{\"clips\":[{\"duration\":2},{\"duration\":0.6666667}],"
                   "\"transition\":{\"type\":\"dissolve\",\"duration\":1}}");
    assert_int_equal(reel_layout_init(&lay, job), 0);
    assert_int_equal(lay.clips[1].nb_frames, 20);
    assert_int_equal(lay.clips[0].d_out, 10);
    assert_int_equal(lay.nb_frames, 70);
    reel_layout_uninit(&lay);
    reel_job_free(&job);

    job = parse_ok("{\"clips\":[{\"duration\":1},{\"duration\":1}],\"output\":{\"fps\":24}}");
    assert_int_equal(reel_layout_init(&lay, job), 0);
    assert_int_equal(lay.nb_frames, 48);
    assert_int_equal(lay.clips[1].start, 24);
    assert_int_equal(lay.clips[1].audio_start, 48000);
    assert_int_equal(lay.clips[0].d_out, 0);
    reel_layout_uninit(&lay);
    reel_job_free(&job);
}

static void test_samples_29_97(void **state)
{
    int64_t a, b;
    reel_frames_to_samples(30000.0 / 1001, 0, 1, &a, &b);
    assert_int_equal(a, 0);
    assert_int_equal(b, 1602); /* 1601.6 */
    reel_frames_to_samples(30000.0 / 1001, 5, 10, &a, &b);
    assert_int_equal(a, 8008);
    assert_int_equal(b, 16016);
}

static ReelClip kf_clip(ReelKeyframe *k, int n, ReelInterp interp)
{
    ReelClip c;
    memset(&c, 0, sizeof(c));
    c.keyframes = k;
    c.nb_keyframes = n;
    c.interp = interp;
    return c;
}

static void test_crop_interpolation(void **state)
{
    ReelKeyframe k[2] = {{0, 0, 0, 100, 100}, {1, 100, 40, 100, 100}};
    ReelClip lin = kf_clip(k, 2, REEL_INTERP_LINEAR), cr = kf_clip(k, 2, REEL_INTERP_CATMULL_ROM);
    ReelRect r;

    r = reel_crop_at(&lin, 0.25, 1000, 1000, 9, 16);
    assert_int_equal(r.x, 25);
    assert_int_equal(r.y, 10);
    /* Catmull-Rom with clamped ends eases in: 0.796875 * 0 + 0.203125 * 100 */
    r = reel_crop_at(&cr, 0.25, 1000, 1000, 9, 16);
    assert_int_equal(r.x, 20);
    assert_int_equal(r.y, 8); /* 8.125 */
    r = reel_crop_at(&cr, 0.5, 1000, 1000, 9, 16);
    assert_int_equal(r.x, 50);
    assert_int_equal(r.y, 20);
    /* held before the first and after the last keyframe */
    r = reel_crop_at(&cr, -1, 1000, 1000, 9, 16);
    assert_int_equal(r.x, 0);
    r = reel_crop_at(&cr, 7, 1000, 1000, 9, 16);
    assert_int_equal(r.x, 100);
    assert_int_equal(r.y, 40);
    assert_int_equal(r.width, 100);

    /* four keyframes: interior spans use the real neighbours */
    ReelKeyframe k4[4] = {{0, 0, 0, 10, 10}, {1, 10, 0, 10, 10}, {2, 30, 0, 10, 10},
                          {3, 60, 0, 10, 10}};
    ReelClip c4 = kf_clip(k4, 4, REEL_INTERP_CATMULL_ROM);
    /* span 1..2 at u=0.5: 0.5*(2*10 + (30-0)*.5 + (0-50+120-60)*.25 + (0+30-90+60)*.125) = 19.375 */
    r = reel_crop_at(&c4, 1.5, 1000, 1000, 9, 16);
    assert_int_equal(r.x, 19);
    r = reel_crop_at(&c4, 2.0, 1000, 1000, 9, 16);
    assert_int_equal(r.x, 30);
}

static void test_crop_clamping(void **state)
{
    ReelKeyframe big = {0, -50, -20, 3000, 200};
    ReelClip c = kf_clip(&big, 1, REEL_INTERP_CATMULL_ROM);
    ReelRect r = reel_crop_at(&c, 0, 1920, 1080, 9, 16);
    /* wider than the frame: shrunk to it, then moved inside */
    assert_int_equal(r.width, 1920);
    assert_int_equal(r.x, 0);
    assert_int_equal(r.y, 0);
    assert_int_equal(r.height, 200);

    ReelKeyframe off = {0, 1900, 1000, 100, 100.4};
    c = kf_clip(&off, 1, REEL_INTERP_LINEAR);
    r = reel_crop_at(&c, 0, 1920, 1080, 9, 16);
    assert_int_equal(r.x, 1820);
    assert_int_equal(r.height, 100);
    assert_int_equal(r.y, 980); /* 979.6 rounds to 980 */

    ReelKeyframe half = {0, 10.5, 20.5, 99.5, 49.5};
    c = kf_clip(&half, 1, REEL_INTERP_LINEAR);
    r = reel_crop_at(&c, 0, 1920, 1080, 9, 16);
    assert_int_equal(r.x, 11);
    assert_int_equal(r.y, 21);
    assert_int_equal(r.width, 100);
    assert_int_equal(r.height, 50);
}

static void test_default_crop(void **state)
{
    ReelClip c = kf_clip(NULL, 0, REEL_INTERP_CATMULL_ROM);
    ReelRect r = reel_crop_at(&c, 0, 1920, 1080, 9, 16);
    assert_int_equal(r.height, 1080);
    assert_int_equal(r.width, 608);  /* 607.5 */
    assert_int_equal(r.x, 656);      /* 656.25 */
    r = reel_crop_at(&c, 0, 1080, 1920, 16, 9);
    assert_int_equal(r.width, 1080);
    assert_int_equal(r.height, 608);
    assert_int_equal(r.y, 656);
    r = reel_crop_at(&c, 0, 640, 360, 16, 9);
    assert_int_equal(r.width, 640);
    assert_int_equal(r.height, 360);
    assert_int_equal(r.x, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_counts),
        cmocka_unit_test(test_cumulative_rounding),
        cmocka_unit_test(test_source_times),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_samples_29_97),
        cmocka_unit_test(test_crop_interpolation),
        cmocka_unit_test(test_crop_clamping),
        cmocka_unit_test(test_default_crop),
    };
    reel_log_set_level(REEL_LOG_QUIET);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
