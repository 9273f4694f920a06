/*
 * test_job.c - job parsing: both shapes, every contract rule of DESIGN section 2,
 * and a table of bad inputs, each of which must fail naming its field.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/job.h"
#include "core/log.h"
#include "core/timeline.h"

static ReelJob *parse_ok(const char *json)
{
    char err[REEL_ERRMSG_SIZE] = "";
    ReelJob *job = NULL;
    int ret = reel_job_parse(&job, json, NULL, NULL, err);
    if (ret < 0)
        print_error("unexpected error: %s\n", err);
    assert_int_equal(ret, 0);
    assert_non_null(job);
    return job;
}

/* ---- good jobs ------------------------------------------------------------ */

static void test_app_shape(void **state)
{
    ReelJob *job = parse_ok(
        "{\"clips\":[{\"clipIndex\":0,\"fileName\":\"goal.mp4\",\"clipName\":\"Goal\","
        "\"duration\":12.3,\"sourceWidth\":1920,\"sourceHeight\":1080,"
        "\"segments\":{\"boundaries\":[0,4.2,12.3],\"segmentSpeeds\":{\"1\":0.5},"
        "\"trimRange\":{\"start\":0,\"end\":12.3}},\"trimRange\":{\"start\":0,\"end\":12.3},"
        "\"cropKeyframes\":[{\"time\":0,\"x\":857,\"y\":357,\"width\":205,\"height\":365}]}],"
        "\"globalAspectRatio\":\"9:16\",\"transition\":{\"type\":\"dissolve\",\"duration\":0.5}}");
    const ReelClip *c = &job->clips[0];
    assert_int_equal(job->nb_clips, 1);
    assert_string_equal(c->title, "Goal");
    assert_null(c->source);
    assert_int_equal(c->nb_segments, 2);
    assert_true(c->segments[0].start == 0.0 && c->segments[0].end == 4.2);
    assert_true(c->segments[0].speed == 1.0);
    assert_true(c->segments[1].start == 4.2 && c->segments[1].end == 12.3);
    assert_true(c->segments[1].speed == 0.5);
    assert_int_equal(job->transition, REEL_TRANSITION_DISSOLVE);
    assert_true(job->transition_duration == 0.5);
    assert_int_equal(job->aspect_w, 9);
    assert_int_equal(job->aspect_h, 16);
    assert_int_equal(job->output.fps_num, 30);
    assert_int_equal(job->output.crf, 18);
    assert_string_equal(job->output.preset, "fast");
    assert_int_equal(job->output.upscale_mode, REEL_UPSCALE_AUTO);
    assert_int_equal(job->output.upscale_bf16, 0); /* fp32 unless asked */
    assert_int_equal(job->output.include_audio, 1);

    ReelClipFrames cf;
    assert_int_equal(reel_clip_frames_init(&cf, c, 30.0), 0);
    assert_int_equal(cf.seg_end[0], 126);              /* 4.2 s */
    assert_int_equal(cf.seg_end[1], 126 + 486);        /* + 8.1 s / 0.5 */
    reel_clip_frames_uninit(&cf);

    int w, h;
    reel_job_default_size(job, &w, &h);
    assert_int_equal(w, 808); /* the app's production size for 205x365 */
    assert_int_equal(h, 1440);
    reel_job_free(&job);
    assert_null(job);
}

static void test_boundaries_canonicalised(void **state)
{
    /* without the leading 0 and the trailing duration: the same segments */
    ReelJob *job = parse_ok("{\"clips\":[{\"duration\":12.3,\"segments\":{\"boundaries\":[4.2],"
                            "\"segmentSpeeds\":{\"1\":0.5}}}]}");
    assert_int_equal(job->clips[0].nb_segments, 2);
    assert_true(job->clips[0].segments[0].end == 4.2);
    assert_true(job->clips[0].segments[1].end == 12.3);
    assert_true(job->clips[0].segments[1].speed == 0.5);
    reel_job_free(&job);
    /* with 0 but no duration at the end */
    job = parse_ok("{\"clips\":[{\"duration\":10,\"segments\":{\"boundaries\":[0,5],"
                   "\"segmentSpeeds\":{\"0\":2}}}]}");
    assert_int_equal(job->clips[0].nb_segments, 2);
    assert_true(job->clips[0].segments[0].speed == 2.0);
    assert_true(job->clips[0].segments[1].start == 5.0 && job->clips[0].segments[1].end == 10.0);
    reel_job_free(&job);
}

static void test_trim_precedence_and_inside_segments(void **state)
{
    /* top-level trimRange wins over segments.trimRange */
    ReelJob *job = parse_ok(
        "{\"clips\":[{\"duration\":12.3,\"segments\":{\"boundaries\":[0,4.2,12.3],"
        "\"segmentSpeeds\":{\"1\":0.5},\"trimRange\":{\"start\":1,\"end\":3}},"
        "\"trimRange\":{\"start\":2,\"end\":8}}]}");
    const ReelClip *c = &job->clips[0];
    assert_true(c->trim_start == 2.0 && c->trim_end == 8.0);
    assert_int_equal(c->nb_segments, 2);
    assert_true(c->segments[0].start == 2.0 && c->segments[0].end == 4.2);
    assert_true(c->segments[1].start == 4.2 && c->segments[1].end == 8.0);
    ReelClipFrames cf;
    assert_int_equal(reel_clip_frames_init(&cf, c, 30.0), 0);
    assert_int_equal(cf.seg_end[0], 66);   /* 2.2 s */
    assert_int_equal(cf.nb_frames, 294);   /* 66 + 3.8 / 0.5 * 30 */
    /* frame 66 is the first of segment 1, at source time 4.2 */
    int seg;
    double t = reel_clip_source_time(c, &cf, 30.0, 66, &seg);
    assert_int_equal(seg, 1);
    assert_true(t > 4.2 - 1e-9 && t < 4.2 + 1e-9);
    t = reel_clip_source_time(c, &cf, 30.0, 67, &seg);
    assert_true(t > 4.2 + 0.5 / 30 - 1e-9 && t < 4.2 + 0.5 / 30 + 1e-9);
    reel_clip_frames_uninit(&cf);
    reel_job_free(&job);

    /* segments.trimRange alone applies; a trim inside one segment keeps one */
    job = parse_ok("{\"clips\":[{\"duration\":12,\"segments\":{\"boundaries\":[0,4,12],"
                   "\"trimRange\":{\"start\":5,\"end\":7}}}]}");
    assert_int_equal(job->clips[0].nb_segments, 1);
    assert_true(job->clips[0].segments[0].start == 5.0);
    reel_job_free(&job);
}

static void test_alternative_segment_form(void **state)
{
    ReelJob *job = parse_ok("{\"clips\":[{\"duration\":10,\"segments\":{\"trim_start\":1,"
                            "\"trim_end\":9,\"segments\":[{\"start\":0,\"end\":3,\"speed\":1},"
                            "{\"start\":3,\"end\":6,\"speed\":2},{\"start\":6,\"end\":10,"
                            "\"speed\":1}]}}]}");
    const ReelClip *c = &job->clips[0];
    assert_true(c->trim_start == 1.0 && c->trim_end == 9.0);
    assert_int_equal(c->nb_segments, 3);
    assert_true(c->segments[0].start == 1.0 && c->segments[1].speed == 2.0);
    assert_true(c->segments[2].end == 9.0);
    reel_job_free(&job);
}

static void test_clip_order_titles_transition(void **state)
{
    ReelJob *job = parse_ok(
        "{\"clips\":[{\"clipIndex\":5,\"duration\":2,\"fileName\":\"dir/last.clip.mp4\"},"
        "{\"clipIndex\":0,\"duration\":2,\"clipName\":\"First\"},"
        "{\"clipIndex\":2,\"duration\":2}],\"transition\":{\"type\":\"FaDe\"}}");
    assert_int_equal(job->clips[0].clip_index, 0);
    assert_int_equal(job->clips[1].clip_index, 2);
    assert_int_equal(job->clips[2].clip_index, 5);
    assert_string_equal(job->clips[0].title, "First");
    assert_string_equal(job->clips[1].title, "Clip 3"); /* third in the job as written */
    assert_string_equal(job->clips[2].title, "last.clip");
    assert_int_equal(job->transition, REEL_TRANSITION_FADE);
    assert_true(job->transition_duration == 0.5);
    reel_job_free(&job);

    job = parse_ok("{\"clips\":[{\"duration\":2}]}");
    assert_int_equal(job->transition, REEL_TRANSITION_CUT);
    reel_job_free(&job);
}

static void test_engine_shape(void **state)
{
    char err[REEL_ERRMSG_SIZE];
    ReelJob *job = NULL;
    const char *json =
        "{\"clips\":[{\"source\":\"a.mp4\",\"rotation\":-90,\"interpolation\":\"linear\"}],"
        "\"globalAspectRatio\":\"16:9\",\"output\":{\"width\":640,\"height\":360,\"fps\":29.97,"
        "\"include_audio\":false,\"crf\":23,\"preset\":\"veryfast\",\"audio_bitrate\":128000,"
        "\"chapters\":false,\"upscale\":{\"model\":\"RealESRGAN_x4plus\",\"mode\":\"off\","
        "\"tile\":64,\"precision\":\"bf16\"}}}";
    assert_int_equal(reel_job_parse(&job, json, "/data/jobs", NULL, err), 0);
    const ReelClip *c = &job->clips[0];
    assert_string_equal(c->source, "/data/jobs/a.mp4");
    assert_true(c->rotation == 270.0);
    assert_int_equal(c->interp, REEL_INTERP_LINEAR);
    assert_true(c->trim_end < 0);      /* open until the source is probed */
    assert_int_equal(c->nb_segments, 0);
    assert_int_equal(job->output.width, 640);
    assert_int_equal(job->output_size_given, 1);
    assert_int_equal(job->output.fps_num, 30000);
    assert_int_equal(job->output.fps_den, 1001);
    assert_int_equal(job->output.include_audio, 0);
    assert_int_equal(job->output.chapters, 0);
    assert_string_equal(job->output.upscale_model, "x4plus");
    assert_int_equal(job->output.upscale_mode, REEL_UPSCALE_OFF);
    assert_int_equal(job->output.upscale_tile, 64);
    assert_int_equal(job->output.upscale_bf16, 1);
    assert_string_equal(c->title, "Clip 1");

    /* the probe completes the open trim */
    assert_int_equal(reel_job_apply_probe(job, 0, 1920, 1080, 4.0, err), 0);
    assert_int_equal(job->clips[0].nb_segments, 1);
    assert_true(job->clips[0].trim_end == 4.0);
    reel_job_free(&job);
}

static void test_default_size(void **state)
{
    int w, h;
    ReelJob *job = parse_ok("{\"globalAspectRatio\":\"16:9\",\"clips\":[{\"duration\":3,"
                            "\"cropKeyframes\":[{\"time\":0,\"x\":0,\"y\":0,\"width\":640,"
                            "\"height\":360}]}]}");
    reel_job_default_size(job, &w, &h);
    assert_int_equal(w, 2560);
    assert_int_equal(h, 1440);
    reel_job_free(&job);
    /* min width and min height are taken independently, over all clips */
    job = parse_ok("{\"clips\":[{\"duration\":3,\"cropKeyframes\":["
                   "{\"time\":0,\"x\":0,\"y\":0,\"width\":100,\"height\":301},"
                   "{\"time\":1,\"x\":0,\"y\":0,\"width\":151,\"height\":200}]},"
                   "{\"duration\":3,\"cropKeyframes\":[{\"time\":0,\"x\":0,\"y\":0,"
                   "\"width\":181,\"height\":181}]}]}");
    reel_job_default_size(job, &w, &h);
    assert_int_equal(w, 400);
    assert_int_equal(h, 724);
    reel_job_free(&job);
    job = parse_ok("{\"clips\":[{\"duration\":3}]}");
    reel_job_default_size(job, &w, &h);
    assert_int_equal(w, 1080);
    assert_int_equal(h, 1920);
    reel_job_free(&job);
    job = parse_ok("{\"globalAspectRatio\":\"16:9\",\"clips\":[{\"duration\":3}]}");
    reel_job_default_size(job, &w, &h);
    assert_int_equal(w, 1920);
    assert_int_equal(h, 1080);
    reel_job_free(&job);
}

/* ---- bad jobs -------------------------------------------------------------- */

static const struct {
    const char *json;
    const char *expect; /* a substring of the error: the field path and the problem */
} bad_jobs[] = {
    {"not json", "job: invalid JSON at line 1"},
    {"[]", "job: must be a JSON object"},
    {"{}", "clips: required"},
    {"{\"clips\":[]}", "clips: at least one clip"},
    {"{\"clips\":{}}", "clips: required, an array"},
    {"{\"clips\":[1]}", "clips[0]: must be an object"},
    {"{\"clips\":[{\"duration\":1,\"clipIndex\":\"a\"}]}", "clips[0].clipIndex: must be a number"},
    {"{\"clips\":[{\"duration\":1,\"clipIndex\":1.5}]}", "clips[0].clipIndex: must be an integer"},
    {"{\"clips\":[{\"duration\":1,\"clipIndex\":-1}]}", "clips[0].clipIndex: -1 out of range"},
    {"{\"clips\":[{\"duration\":1,\"clipIndex\":3},{\"duration\":1,\"clipIndex\":3}]}",
     "clips: clipIndex 3 is used twice"},
    {"{\"clips\":[{\"duration\":-3}]}", "clips[0].duration: must be > 0"},
    {"{\"clips\":[{\"duration\":\"long\"}]}", "clips[0].duration: must be a number"},
    {"{\"clips\":[{\"duration\":2},{\"duration\":10,\"segments\":{\"boundaries\":[0,2,4,10],"
     "\"segmentSpeeds\":{\"2\":9}}}]}",
     "clips[1].segments.segmentSpeeds.2: speed 9 out of range 0.25-4"},
    {"{\"clips\":[{\"duration\":10,\"segments\":{\"boundaries\":[5],\"segmentSpeeds\":{\"0\":0.1}}}]}",
     "clips[0].segments.segmentSpeeds.0: speed 0.1 out of range 0.25-4"},
    {"{\"clips\":[{\"duration\":10,\"segments\":{\"boundaries\":[5],\"segmentSpeeds\":{\"x\":1}}}]}",
     "clips[0].segments.segmentSpeeds.x: key must be a segment number"},
    {"{\"clips\":[{\"duration\":10,\"segments\":{\"boundaries\":[5],\"segmentSpeeds\":{\"5\":1}}}]}",
     "clips[0].segments.segmentSpeeds.5: no segment 5"},
    {"{\"clips\":[{\"duration\":10,\"segments\":{\"segmentSpeeds\":{\"0\":\"fast\"}}}]}",
     "clips[0].segments.segmentSpeeds.0: speed must be a number"},
    {"{\"clips\":[{\"duration\":10,\"segments\":{\"boundaries\":[0,6,4,10]}}]}",
     "clips[0].segments.boundaries[2]: 4 is not after the previous boundary 6"},
    {"{\"clips\":[{\"duration\":10,\"segments\":{\"boundaries\":[0,11]}}]}",
     "clips[0].segments.boundaries[1]: 11 is beyond the clip duration 10"},
    {"{\"clips\":[{\"duration\":10,\"segments\":{\"boundaries\":[-1,5]}}]}",
     "clips[0].segments.boundaries[0]: -1 must be >= 0"},
    {"{\"clips\":[{\"duration\":10,\"segments\":{\"boundaries\":\"0,5\"}}]}",
     "clips[0].segments.boundaries: must be an array"},
    {"{\"clips\":[{\"duration\":10,\"segments\":{\"boundaries\":[0,\"5\"]}}]}",
     "clips[0].segments.boundaries[1]: must be a number"},
    {"{\"clips\":[{\"duration\":10,\"trimRange\":{\"start\":5,\"end\":2}}]}",
     "clips[0].trimRange: end 2 must be after start 5"},
    {"{\"clips\":[{\"duration\":10,\"trimRange\":{\"start\":-1,\"end\":2}}]}",
     "clips[0].trimRange.start: must be >= 0"},
    {"{\"clips\":[{\"duration\":10,\"trimRange\":{\"start\":12}}]}",
     "clips[0].trimRange.start: 12 is beyond the clip duration 10"},
    {"{\"clips\":[{\"duration\":10,\"trimRange\":{\"start\":1,\"end\":10.5}}]}",
     "clips[0].trimRange.end: 10.5 is beyond the clip duration 10"},
    {"{\"clips\":[{\"duration\":10,\"trimRange\":{\"start\":3,\"end\":3}}]}",
     "clips[0].trimRange: end 3 must be after start 3"},
    {"{\"clips\":[{\"duration\":10,\"trimRange\":{\"start\":3,\"end\":3.01}}]}",
     "clips[0].trimRange: 0.01 s is shorter than one output frame"},
    {"{\"clips\":[{\"duration\":10,\"segments\":{\"trimRange\":{\"start\":\"a\"}}}]}",
     "clips[0].segments.trimRange.start: must be a number"},
    {"{\"clips\":[{\"duration\":10,\"cropKeyframes\":[{\"time\":0,\"x\":0,\"y\":0,\"width\":0,"
     "\"height\":10}]}]}",
     "clips[0].cropKeyframes[0].width: must be > 0"},
    {"{\"clips\":[{\"duration\":10,\"cropKeyframes\":[{\"time\":0,\"x\":0,\"y\":0,\"width\":10,"
     "\"height\":-4}]}]}",
     "clips[0].cropKeyframes[0].height: must be > 0"},
    {"{\"clips\":[{\"duration\":10,\"cropKeyframes\":[{\"x\":0,\"y\":0,\"width\":10,"
     "\"height\":10}]}]}",
     "clips[0].cropKeyframes[0].time: required"},
    {"{\"clips\":[{\"duration\":10,\"cropKeyframes\":[{\"time\":0,\"x\":\"left\",\"y\":0,"
     "\"width\":10,\"height\":10}]}]}",
     "clips[0].cropKeyframes[0].x: must be a number"},
    {"{\"clips\":[{\"duration\":10,\"cropKeyframes\":[{\"time\":-2,\"x\":0,\"y\":0,"
     "\"width\":10,\"height\":10}]}]}",
     "clips[0].cropKeyframes[0].time: must be >= 0"},
    {"{\"clips\":[{\"duration\":10,\"cropKeyframes\":[7]}]}",
     "clips[0].cropKeyframes[0]: must be an object"},
    {"{\"clips\":[{\"duration\":10,\"cropKeyframes\":{}}]}",
     "clips[0].cropKeyframes: must be an array"},
    {"{\"clips\":[{\"duration\":10,\"sourceWidth\":100,\"sourceHeight\":100,\"cropKeyframes\":["
     "{\"time\":0,\"x\":150,\"y\":0,\"width\":10,\"height\":10}]}]}",
     "clips[0].cropKeyframes: box 10x10 at 150,0 lies outside the 100x100 frame"},
    {"{\"clips\":[{\"duration\":10,\"cropKeyframes\":[{\"time\":0,\"x\":0,\"y\":0,"
     "\"width\":1e9,\"height\":10}]}]}",
     "clips[0].cropKeyframes[0]: box 1e+09x10 at 0,0 is larger than any video frame"},
    {"{\"clips\":[{\"duration\":10}],\"transition\":{\"type\":\"wipe\"}}",
     "transition.type: unknown transition 'wipe' (expected cut, fade or dissolve)"},
    {"{\"clips\":[{\"duration\":10}],\"transition\":{\"type\":\"fade\",\"duration\":-1}}",
     "transition.duration: -1 out of range 0-10 s"},
    {"{\"clips\":[{\"duration\":10}],\"transition\":\"dissolve\"}",
     "transition: must be an object"},
    {"{\"clips\":[{\"duration\":10}],\"globalAspectRatio\":\"wide\"}",
     "globalAspectRatio: 'wide' is not a ratio"},
    {"{\"clips\":[{\"duration\":10}],\"output\":{\"width\":641,\"height\":360}}",
     "output.width: 641x360 must be even"},
    {"{\"clips\":[{\"duration\":10}],\"output\":{\"width\":640}}",
     "output.height: width and height must be given together"},
    {"{\"clips\":[{\"duration\":10}],\"output\":{\"width\":99999,\"height\":360}}",
     "output.width: 99999 out of range 16-7680"},
    {"{\"clips\":[{\"duration\":10}],\"output\":{\"fps\":0}}", "output.fps: 0 out of range 1-240"},
    {"{\"clips\":[{\"duration\":10}],\"output\":{\"crf\":99}}", "output.crf: 99 out of range 0-51"},
    {"{\"clips\":[{\"duration\":10}],\"output\":{\"preset\":\"warp\"}}",
     "output.preset: unknown x264 preset 'warp'"},
    {"{\"clips\":[{\"duration\":10}],\"output\":{\"video_codec\":\"vp9\"}}",
     "output.video_codec: 'vp9' is not supported"},
    {"{\"clips\":[{\"duration\":10}],\"output\":{\"colour\":1}}", "output.colour: unknown field"},
    {"{\"clips\":[{\"duration\":10}],\"output\":{\"include_audio\":\"yes\"}}",
     "output.include_audio: must be true or false"},
    {"{\"clips\":[{\"duration\":10}],\"output\":{\"upscale\":{\"mode\":\"sometimes\"}}}",
     "output.upscale.mode: unknown mode 'sometimes'"},
    {"{\"clips\":[{\"duration\":10}],\"output\":{\"upscale\":{\"model\":\"waifu2x\"}}}",
     "output.upscale.model: unknown model 'waifu2x'"},
    {"{\"clips\":[{\"duration\":10}],\"output\":{\"upscale\":{\"tile\":-5}}}",
     "output.upscale.tile: -5 out of range -1-4096"},
    {"{\"clips\":[{\"duration\":10}],\"output\":{\"upscale\":{\"precision\":\"fp16\"}}}",
     "output.upscale.precision: unknown precision 'fp16'"},
    {"{\"clips\":[{\"duration\":10}],\"output\":{\"upscale\":{\"precision\":16}}}",
     "output.upscale.precision: must be a string"},
    {"{\"clips\":[{\"duration\":10,\"duration\":11}]}", "job: invalid JSON"},
    {"{\"clips\":[{\"duration\":10,\"interpolation\":\"cubic\"}]}",
     "clips[0].interpolation: unknown 'cubic'"},
    {"{\"clips\":[{\"duration\":10,\"segments\":{\"segments\":[{\"start\":0,\"end\":5},"
     "{\"start\":4,\"end\":8}]}}]}",
     "clips[0].segments.segments[1].start: 4 overlaps the previous segment"},
    {"{\"clips\":[{\"duration\":10,\"segments\":{\"segments\":[{\"start\":3,\"end\":3}]}}]}",
     "clips[0].segments.segments[0].end: 3 must be after start 3"},
    {"{\"clips\":[{\"duration\":10,\"segments\":{\"segments\":[{\"start\":0,\"end\":5,"
     "\"speed\":5}]}}]}",
     "clips[0].segments.segments[0]: speed 5 out of range 0.25-4"},
    {"{\"clips\":[{\"duration\":10,\"rotation\":\"left\"}]}",
     "clips[0].rotation: must be a number"},
    {"{\"clips\":[{\"duration\":10,\"sourceWidth\":0}]}", "clips[0].sourceWidth: 0 out of range"},
    {"{\"clips\":[{\"duration\":10,\"source\":\"\"}]}", "clips[0].source: must not be empty"},
    {"{\"clips\":[{\"duration\":10,\"fileName\":7}]}", "clips[0].fileName: must be a string"},
    {"{\"clips\":[{\"duration\":1e400}]}", "job: invalid JSON"},
};

static void test_bad_jobs(void **state)
{
    for (size_t i = 0; i < sizeof(bad_jobs) / sizeof(bad_jobs[0]); i++) {
        char err[REEL_ERRMSG_SIZE] = "";
        ReelJob *job = (ReelJob *)(uintptr_t)1;
        int ret = reel_job_parse(&job, bad_jobs[i].json, NULL, NULL, err);
        if (ret >= 0 || !strstr(err, bad_jobs[i].expect))
            fail_msg("bad job %zu: %s\n  expected error containing: %s\n  got (%d): %s", i,
                     bad_jobs[i].json, bad_jobs[i].expect, ret, err);
        assert_null(job);
    }
}

static void test_limits(void **state)
{
    char err[REEL_ERRMSG_SIZE];
    ReelJobLimits lim;
    ReelJob *job = NULL;
    reel_job_limits_default(&lim);
    lim.max_clips = 2;
    assert_int_equal(reel_job_parse(&job, "{\"clips\":[{\"duration\":1},{\"duration\":1},"
                                          "{\"duration\":1}]}",
                                    NULL, &lim, err),
                     REEL_ERROR_LIMIT);
    assert_non_null(strstr(err, "clips: 3 clips, the limit is 2"));
    lim.max_clips = 10;
    lim.max_clip_seconds = 5;
    assert_int_equal(reel_job_parse(&job, "{\"clips\":[{\"duration\":10}]}", NULL, &lim, err),
                     REEL_ERROR_LIMIT);
    assert_non_null(strstr(err, "clips[0].trimRange: 10 s is longer than the limit of 5 s"));
    assert_null(job);
}

static void test_probe_errors(void **state)
{
    char err[REEL_ERRMSG_SIZE];
    ReelJob *job = parse_ok("{\"clips\":[{\"source\":\"/x.mp4\",\"trimRange\":{\"start\":5},"
                            "\"cropKeyframes\":[{\"time\":0,\"x\":700,\"y\":0,\"width\":10,"
                            "\"height\":10}]}]}");
    assert_int_equal(reel_job_apply_probe(job, 0, 640, 360, 4.0, err), REEL_ERROR_INVALID_JOB);
    assert_non_null(strstr(err, "trimRange.start: 5 is beyond the end of the source"));
    assert_int_equal(reel_job_apply_probe(job, 0, 640, 360, 8.0, err), REEL_ERROR_INVALID_JOB);
    assert_non_null(strstr(err, "cropKeyframes: box 10x10 at 700,0 lies outside the 640x360"));
    assert_int_equal(reel_job_apply_probe(job, 0, 800, 360, 8.0, err), 0);
    reel_job_free(&job);
}

static void test_load_file(void **state)
{
    char err[REEL_ERRMSG_SIZE], path[] = "/tmp/reel_job_XXXXXX";
    ReelJob *job = NULL;
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "{\"clips\":[{\"duration\":2,\"source\":\"v.mp4\"},{\"duration\":2}]}";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(reel_job_load(&job, path, NULL, err), REEL_ERROR_INVALID_JOB);
    assert_non_null(strstr(err, "clips[1].source: required in a job file"));
    assert_null(job);
    unlink(path);
    assert_true(reel_job_load(&job, "/nonexistent/job.json", NULL, err) < 0);
    assert_non_null(strstr(err, "/nonexistent/job.json: cannot open the job file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_app_shape),
        cmocka_unit_test(test_boundaries_canonicalised),
        cmocka_unit_test(test_trim_precedence_and_inside_segments),
        cmocka_unit_test(test_alternative_segment_form),
        cmocka_unit_test(test_clip_order_titles_transition),
        cmocka_unit_test(test_engine_shape),
        cmocka_unit_test(test_default_size),
        cmocka_unit_test(test_bad_jobs),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_probe_errors),
        cmocka_unit_test(test_load_file),
    };
    reel_log_set_level(REEL_LOG_QUIET);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
