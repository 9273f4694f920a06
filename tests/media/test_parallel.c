/*
 * test_parallel.c - parallel mode (reel_export_part + reel_export_assemble)
 * against the whole-reel export of the same job: same frame count, duration,
 * chapters and .vtt, same audio length and audio, frames within PSNR >= 45 dB
 * (DESIGN section 7). Also: a part is a lossless NUT with the clip's exact
 * frames (lossless yuv420p) and samples; a part needs only its own clip's source; parts that do
 * not fit the job are refused by name and nothing is written.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <libavutil/log.h>

#include "core/error.h"
#include "core/job.h"
#include "core/log.h"
#include "core/timeline.h"
#include "media/export.h"
#include "media_util.h"

/* 3 clips: 30 fps with 44.1 kHz audio and a 0.5x segment, 60 fps rotated, and
 * a 25 fps clip without audio; dissolves; 29.97 fps output so that samples per
 * frame are not whole and every clip starts at a fractional sample. */
static const char *JOB =
    "{\"clips\":["
    "{\"clipIndex\":0,\"source\":\"pa30.mp4\",\"clipName\":\"Alpha\","
    "\"trimRange\":{\"start\":0.3,\"end\":2.2},"
    "\"segments\":{\"boundaries\":[0,1,1.6,3],\"segmentSpeeds\":{\"1\":0.5}},"
    "\"cropKeyframes\":[{\"time\":0.3,\"x\":10,\"y\":10,\"width\":90,\"height\":160},"
    "{\"time\":1.2,\"x\":120,\"y\":40,\"width\":100,\"height\":178},"
    "{\"time\":2.2,\"x\":200,\"y\":60,\"width\":90,\"height\":160}]},"
    "{\"clipIndex\":4,\"source\":\"pb60.mp4\",\"clipName\":\"Beta\",\"rotation\":90,"
    "\"segments\":{\"boundaries\":[0,0.5,2],\"segmentSpeeds\":{\"1\":2}}},"
    "{\"clipIndex\":7,\"source\":\"pc25.mp4\",\"fileName\":\"gamma.mp4\","
    "\"interpolation\":\"linear\",\"cropKeyframes\":["
    "{\"time\":0,\"x\":0,\"y\":0,\"width\":60,\"height\":107},"
    "{\"time\":1.5,\"x\":100,\"y\":13,\"width\":60,\"height\":107}]}],"
    "\"transition\":{\"type\":\"dissolve\",\"duration\":0.4},"
    "\"output\":{\"width\":180,\"height\":320,\"fps\":29.97,\"upscale\":{\"mode\":\"off\"}}}";

static void sources(void)
{
    gen("pa30.mp4", "testsrc2=size=320x240:rate=30", "sine=frequency=440:sample_rate=44100", 3);
    gen("pb60.mp4", "testsrc=size=240x160:rate=60", "sine=frequency=660:sample_rate=48000", 2);
    gen("pc25.mp4", "mandelbrot=size=176x144:rate=25", NULL, 1.5);
}

static int parts_of(ReelJob *job, const char *stem, char paths[][1200], char *err)
{
    for (int k = 0; k < job->nb_clips; k++) {
        char name[64];
        ReelExportOptions o = {0};
        snprintf(name, sizeof(name), "%s%d.nut", stem, k + 1);
        snprintf(paths[k], 1200, "%s", data(name));
        o.output_path = paths[k];
        int ret = reel_export_part(job, k, &o, NULL, err);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* Min and average PSNR of two videos' frames, by ffmpeg's psnr filter. */
static void psnr_of(const char *a, const char *b, double *min, double *avg)
{
    char cmd[4096], line[1024];
    const char *log = data("psnr.log");
    FILE *f;

    snprintf(cmd, sizeof(cmd),
             "ffmpeg -nostdin -hide_banner -i %s -i %s -lavfi '[0:v][1:v]psnr' -f null - "
             "2> %s",
             a, b, log);
    assert_int_equal(system(cmd), 0);
    *min = *avg = -1;
    assert_non_null(f = fopen(log, "r"));
    while (fgets(line, sizeof(line), f)) {
        const char *p = strstr(line, "average:"), *q = strstr(line, "min:");
        if (p && q) {
            *avg = strncmp(p + 8, "inf", 3) ? atof(p + 8) : INFINITY;
            *min = strncmp(q + 4, "inf", 3) ? atof(q + 4) : INFINITY;
        }
    }
    fclose(f);
    assert_true(*min >= 0 && *avg >= 0);
}

/* Decoded audio (the first stream) as interleaved stereo float, via ffmpeg. */
static float *pcm_of(const char *path, size_t *n)
{
    char cmd[2048];
    const char *raw = data("pcm.f32");
    snprintf(cmd, sizeof(cmd), "ffmpeg -nostdin -v error -y -i %s -map 0:a:0 -f f32le -ac 2 %s",
             path, raw);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(raw, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *buf = malloc((size_t)size + 4);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size / sizeof(float);
    return buf;
}

static const char *tag_title(json_t *chapter)
{
    return json_string_value(json_object_get(json_object_get(chapter, "tags"), "title"));
}

static void test_parallel_matches_single(void **state)
{
    char err[REEL_ERRMSG_SIZE] = "", parts[3][1200], single[1200], par[1200];
    ReelExportOptions o = {0};
    ReelJob *job;

    sources();
    snprintf(single, sizeof(single), "%s", data("single.mp4"));
    snprintf(par, sizeof(par), "%s", data("assembled.mp4"));
    job = job_of(JOB);
    o.output_path = single;
    if (reel_export_run(job, &o, NULL, err) < 0)
        fail_msg("single: %s", err);
    reel_job_free(&job);

    job = job_of(JOB); /* a fresh job, as a worker parses it */
    if (parts_of(job, "part", parts, err) < 0)
        fail_msg("part: %s", err);
    reel_job_free(&job);

    job = job_of(JOB);
    for (int k = 0; k < job->nb_clips; k++) { /* the assembler never opens sources */
        free(job->clips[k].source);
        job->clips[k].source = NULL;
    }
    const char *const pp[3] = {parts[0], parts[1], parts[2]};
    ReelExportStats st;
    o.output_path = par;
    if (reel_export_assemble(job, pp, &o, &st, err) < 0)
        fail_msg("assemble: %s", err);
    assert_int_equal(st.upscaled_clips, 0);

    /* structure: frames, duration, size, chapters */
    json_t *ps = ffprobe(single), *pa = ffprobe(par);
    json_t *vs = stream_of(ps, "video"), *va = stream_of(pa, "video");
    json_t *as = stream_of(ps, "audio"), *aa = stream_of(pa, "audio");
    assert_non_null(vs);
    assert_non_null(va);
    assert_non_null(as);
    assert_non_null(aa);
    assert_int_equal((int)jnum(va, "nb_read_frames"), (int)jnum(vs, "nb_read_frames"));
    assert_int_equal((int)jnum(va, "nb_read_frames"), (int)st.frames);
    assert_true(fabs(jnum(va, "duration") - jnum(vs, "duration")) < 1e-6);
    assert_int_equal((int)jnum(va, "width"), 180);
    assert_int_equal((int)jnum(va, "height"), 320);
    assert_string_equal(json_string_value(json_object_get(va, "r_frame_rate")), "30000/1001");
    assert_true(fabs(jnum(aa, "duration") - jnum(as, "duration")) < 1e-6);
    json_t *cs = json_object_get(ps, "chapters"), *ca = json_object_get(pa, "chapters");
    assert_int_equal(json_array_size(ca), 3);
    assert_int_equal(json_array_size(cs), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *x = json_array_get(cs, i), *y = json_array_get(ca, i);
        assert_string_equal(tag_title(x), tag_title(y));
        assert_true(fabs(jnum(x, "start_time") - jnum(y, "start_time")) < 1e-6);
        assert_true(fabs(jnum(x, "end_time") - jnum(y, "end_time")) < 1e-6);
    }
    assert_string_equal(tag_title(json_array_get(ca, 2)), "gamma");
    json_decref(ps);
    json_decref(pa);
    char *vtt = strdup(slurp(data("single.chapters.vtt")));
    assert_string_equal(vtt, slurp(data("assembled.chapters.vtt")));
    free(vtt);

    /* frames: the spec asks PSNR >= 45 dB; the encoder's input is identical,
     * only libx264's thread timing may move a few values */
    double min, avg;
    psnr_of(single, par, &min, &avg);
    print_message("parallel vs single: PSNR min %.2f dB, average %.2f dB\n", min, avg);
    assert_true(min >= 45.0);

    /* audio: same length to the sample, same signal */
    size_t ns, na;
    float *s = pcm_of(single, &ns), *a = pcm_of(par, &na);
    assert_int_equal(na, ns);
    double e = 0, p = 0;
    for (size_t i = 0; i < ns; i++) {
        e += (double)(s[i] - a[i]) * (s[i] - a[i]);
        p += (double)s[i] * s[i];
    }
    print_message("audio: %zu samples, difference %.2e of the signal's energy\n", ns / 2,
                  p > 0 ? e / p : 0);
    assert_true(p > 0);
    assert_true(e <= 1e-4 * p);
    free(s);
    free(a);
    reel_job_free(&job);
}

/* The md5 of a file's encoded video packets. */
static void video_md5(const char *path, char *out, size_t size)
{
    char cmd[2048];
    FILE *p;
    snprintf(cmd, sizeof(cmd), "ffmpeg -nostdin -v error -i %s -map 0:v -c copy -f md5 -", path);
    assert_non_null(p = popen(cmd, "r"));
    assert_non_null(fgets(out, (int)size, p));
    assert_int_equal(pclose(p), 0);
}

/* The same job exported again in the same process (as a server or a worker
 * does) gives the same bytes: parallel mode and retries rely on it. Debian's
 * libx264 with its AVX-512 kernels did not (docs/decisions.md). */
static void test_same_bytes_again(void **state)
{
    char err[REEL_ERRMSG_SIZE] = "", md5[3][128];
    (void)state;

    sources();
    for (int i = 0; i < 3; i++) {
        char name[32];
        ReelExportOptions o = {0};
        ReelJob *job = job_of(JOB);
        snprintf(name, sizeof(name), "again%d.mp4", i);
        o.output_path = data(name);
        if (reel_export_run(job, &o, NULL, err) < 0)
            fail_msg("export %d: %s", i, err);
        video_md5(o.output_path, md5[i], sizeof(md5[i]));
        reel_job_free(&job);
    }
    assert_string_equal(md5[1], md5[0]);
    assert_string_equal(md5[2], md5[0]);
}

static void test_part_is_the_clip(void **state)
{
    char err[REEL_ERRMSG_SIZE] = "";
    ReelExportOptions o = {0};
    ReelExportStats st;
    ReelJob *job;
    ReelLayout lay;

    sources();
    job = job_of(JOB);
    /* only clip 2's source is needed: the others do not exist here */
    free(job->clips[0].source);
    job->clips[0].source = strdup("/nonexistent/a.mp4");
    free(job->clips[2].source);
    job->clips[2].source = NULL;
    char only2[1200];
    snprintf(only2, sizeof(only2), "%s", data("only2.nut"));
    o.output_path = only2;
    if (reel_export_part(job, 1, &o, &st, err) < 0)
        fail_msg("part 2: %s", err);
    /* clip 2: 0.5 s at 1x + 1.5 s at 2x = 1.25 s of output at 29.97 fps */
    int64_t n = reel_round_half_up(1.25 * 30000.0 / 1001.0);
    assert_int_equal(st.frames, n);
    json_t *p = ffprobe(o.output_path);
    json_t *v = stream_of(p, "video"), *a = stream_of(p, "audio");
    assert_non_null(v);
    assert_non_null(a);
    assert_string_equal(json_string_value(json_object_get(json_object_get(p, "format"),
                                                          "format_name")),
                        "nut");
    assert_string_equal(json_string_value(json_object_get(v, "pix_fmt")), "yuv420p");
    assert_string_equal(json_string_value(json_object_get(a, "codec_name")), "pcm_f32le");
    assert_int_equal((int)jnum(v, "nb_read_frames"), (int)n);
    assert_int_equal((int)jnum(v, "width"), 180);
    assert_int_equal((int)jnum(v, "height"), 320);
    assert_int_equal(json_array_size(json_object_get(p, "chapters")), 0);
    json_decref(p);
    size_t ns;
    float *s = pcm_of(o.output_path, &ns);
    int64_t first, end;
    reel_frames_to_samples(30000.0 / 1001.0, 0, n, &first, &end);
    assert_int_equal((int64_t)ns / 2, end - first); /* the clip's samples, exactly */
    free(s);
    /* the reel's layout agrees on the clip's length */
    reel_job_free(&job);
    job = job_of(JOB);
    o.output_path = data("layout-probe.mp4");
    assert_int_equal(reel_export_run(job, &o, NULL, err), 0);
    assert_int_equal(reel_layout_init(&lay, job), 0);
    assert_int_equal(lay.clips[1].nb_frames, n);
    reel_layout_uninit(&lay);
    reel_job_free(&job);
}

static int leftovers(const char *stem)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "ls %s | grep -q '^%s'", data_dir, stem);
    return system(cmd) == 0;
}

static void test_bad_parts(void **state)
{
    char err[REEL_ERRMSG_SIZE] = "", parts[3][1200], out[1200], small[1200];
    ReelExportOptions o = {0};
    ReelJob *job;

    sources();
    job = job_of(JOB);
    if (parts_of(job, "bpart", parts, err) < 0)
        fail_msg("part: %s", err);
    snprintf(out, sizeof(out), "%s", data("badasm.mp4"));
    snprintf(small, sizeof(small), "%s", data("small.nut"));
    o.output_path = out;

    /* parts in the wrong order: clip 1's part where clip 2's belongs */
    const char *const swapped[3] = {parts[1], parts[0], parts[2]};
    assert_true(reel_export_assemble(job, swapped, &o, NULL, err) < 0);
    if (!strstr(err, "parts[0]") || !strstr(err, "frames"))
        fail_msg("expected a frame count error naming parts[0], got: %s", err);

    /* a missing part and a file that is not a part */
    const char *const missing[3] = {parts[0], data("nope.nut"), parts[2]};
    assert_true(reel_export_assemble(job, missing, &o, NULL, err) < 0);
    assert_non_null(strstr(err, "parts[1]"));
    assert_non_null(strstr(err, "nope.nut"));
    const char *const notpart[3] = {parts[0], parts[1], data("pa30.mp4")};
    assert_true(reel_export_assemble(job, notpart, &o, NULL, err) < 0);
    assert_non_null(strstr(err, "parts[2]"));
    assert_non_null(strstr(err, "not a clipreel part"));

    /* a part of another size */
    ReelJob *other = job_of(
        "{\"clips\":[{\"source\":\"pc25.mp4\"}],"
        "\"output\":{\"width\":160,\"height\":90,\"fps\":29.97,\"upscale\":{\"mode\":\"off\"}}}");
    ReelExportOptions po = {0};
    po.output_path = small;
    assert_int_equal(reel_export_part(other, 0, &po, NULL, err), 0);
    const char *const wrong_size[3] = {parts[0], parts[1], po.output_path};
    int ret = reel_export_assemble(job, wrong_size, &o, NULL, err);
    assert_true(ret < 0);
    assert_non_null(strstr(err, "parts[2]"));
    assert_non_null(strstr(err, "160x90"));
    reel_job_free(&other);

    /* a clip number out of range */
    assert_int_equal(reel_export_part(job, 3, &po, NULL, err), REEL_ERR(EINVAL));
    assert_int_equal(reel_export_part(job, -1, &po, NULL, err), REEL_ERR(EINVAL));
    assert_false(leftovers("badasm"));
    reel_job_free(&job);
}

int main(void)
{
    const char *d = getenv("REEL_TEST_DATA");
    snprintf(data_dir, sizeof(data_dir), "%s", d ? d : "parallel-data");
    mkdir(data_dir, 0755);
    reel_log_set_level(REEL_LOG_QUIET);
    av_log_set_level(AV_LOG_QUIET);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parallel_matches_single),
        cmocka_unit_test(test_same_bytes_again),
        cmocka_unit_test(test_part_is_the_clip),
        cmocka_unit_test(test_bad_parts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
