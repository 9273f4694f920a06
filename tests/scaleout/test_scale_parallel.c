/*
 * test_scale_parallel.c - parallel mode end to end (DESIGN section 7, docs/scaleout.md):
 * real redis-server, a real S3-compatible store (s3rver), real `clipreel
 * worker` processes.
 *
 *  - 3 workers, 4 exports, one of them planned parallel (the planner's
 *    thresholds lowered by a config file, as the service's CLIPREEL_PLAN_CONFIG
 *    does): all complete; the parallel reel matches `clipreel export` of the
 *    same job in one process (duration, frame count, chapters, audio length,
 *    the chapters file, PSNR >= 45 dB); its progress frames, from several
 *    workers, are monotonic and name the clips rendering; no temporary
 *    objects, no stray Redis keys, no pending entries.
 *  - kill -9 of a worker in the middle of a part: another worker reclaims the
 *    part after the claim idle time and the export completes; one output, no
 *    temporary objects left.
 *  - a recorded part gone from the store: rendered again, then assembled.
 *
 * usage: test_scale_parallel <node prefix> <s3rver.js> <node> <npm>; skips (77)
 * without node/npm/s3rver, unless CI=true.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/error.h"
#include "core/job.h"
#include "core/log.h"
#include "jobs/planner.h"
#include "jobs/redisq.h"
#include "storage/storage.h"
#include "redis_helper.h"
#include "s3_helper.h"

#define CLAIM_IDLE "1500"

static TestRedis srv;
static TestS3 s3;
static const char *node_prefix, *s3_script, *node_bin, *npm_bin;
static char data_dir[1024], work_root[1100], plan_cfg[1100];
static ReelStore *store;

static const char *data(const char *name)
{
    static char bufs[8][1200];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", data_dir, name);
    return b;
}

static void sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (system(cmd) != 0)
        fail_msg("command failed: %s", cmd);
}

/* The first line a shell command prints (trailing newline removed). */
static void sh_out(char *out, size_t size, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    FILE *p;
    size_t n;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    out[0] = 0;
    assert_non_null(p = popen(cmd, "r"));
    n = fread(out, 1, size - 1, p);
    out[n] = 0;
    pclose(p);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = 0;
}

static void gen(const char *name, const char *video, int freq, double secs)
{
    struct stat sb;
    if (stat(data(name), &sb) == 0)
        return;
    sh("ffmpeg -v error -y -f lavfi -i \"%s\" -f lavfi -i sine=frequency=%d:sample_rate=48000 "
       "-t %g -c:v libx264 -preset veryfast -crf 12 -pix_fmt yuv420p -c:a aac -shortest %s",
       video, freq, secs, data(name));
}

typedef struct Worker {
    pid_t pid;
    char log[1200];
} Worker;

/* Workers still running when a test fails are killed by its teardown, so that
 * the next test starts alone. */
static pid_t live[16];

static void live_add(pid_t pid)
{
    for (int i = 0; i < 16; i++)
        if (!live[i]) {
            live[i] = pid;
            return;
        }
}

static void live_remove(pid_t pid)
{
    for (int i = 0; i < 16; i++)
        if (live[i] == pid)
            live[i] = 0;
}

static int kill_live(void **state)
{
    (void)state;
    for (int i = 0; i < 16; i++)
        if (live[i] > 0) {
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
            live[i] = 0;
        }
    return 0;
}

static void worker_start(Worker *w, int n)
{
    snprintf(w->log, sizeof(w->log), "%s/pworker%d.log", data_dir, n);
    w->pid = fork();
    assert_true(w->pid >= 0);
    if (w->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (!freopen(w->log, "w", stderr))
            _exit(126);
        setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
        setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
        execl(CLIPREEL_BIN, "clipreel", "worker", "--redis", srv.url, "--gpu-class", "t4",
              "--s3-endpoint", s3.endpoint, "--s3-bucket", "test", "--s3-region", "us-east-1",
              "--upscale", "off", "--claim-idle-ms", CLAIM_IDLE, "--max-attempts", "3",
              "--work-dir", work_root, "--threads", "1", "-v", (char *)NULL);
        _exit(127);
    }
    live_add(w->pid);
}

/* SIGTERM, wait, return the completed= counter of its stats line. */
static long worker_stop(Worker *w)
{
    int status = 0;
    char line[512];
    long completed = -1;
    FILE *f;

    kill(w->pid, SIGTERM);
    waitpid(w->pid, &status, 0);
    live_remove(w->pid);
    w->pid = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_non_null(f = fopen(w->log, "r"));
    while (fgets(line, sizeof(line), f)) {
        const char *c = strstr(line, "completed=");
        if (c)
            completed = strtol(c + 10, NULL, 10);
    }
    fclose(f);
    assert_true(completed >= 0);
    return completed;
}

static void put_source(const char *user, const char *id, int clip, const char *file)
{
    char key[512];
    snprintf(key, sizeof(key), "%s/temp/multi_clip_%s/source_%d.mp4", user, id, clip);
    assert_int_equal(reel_store_put_file(store, key, data(file)), 0);
}

/* Plan the job as the service does (lowered thresholds) and enqueue it; returns parts. */
static int enqueue(ReelRedisq *q, const char *user, const char *id, const char *job_json)
{
    char sources[2048], err[REEL_ERRMSG_SIZE];
    size_t n = 0;
    ReelPlanConfig cfg;
    ReelPlan plan;
    ReelJob *job = NULL;
    ReelRedisqExport e = {.gpu_class = "t4",
                          .user = user,
                          .export_id = id,
                          .project_id = id,
                          .project_name = "Test",
                          .job_json = job_json,
                          .sources_json = sources};

    reel_plan_config_default(&cfg);
    assert_int_equal(reel_plan_config_load(&cfg, plan_cfg, err), 0);
    if (reel_job_parse(&job, job_json, NULL, NULL, err) < 0)
        fail_msg("%s", err);
    assert_int_equal(reel_plan_make(job, &cfg, &plan, err), 0);
    e.gpu_class = plan.gpu->name;
    e.parts = plan.parallel ? job->nb_clips : 0;
    n += (size_t)snprintf(sources + n, sizeof(sources) - n, "[");
    for (int i = 0; i < job->nb_clips; i++)
        n += (size_t)snprintf(sources + n, sizeof(sources) - n,
                              "%s{\"clip\":%d,\"key\":\"%s/temp/multi_clip_%s/source_%d.mp4\"}",
                              i ? "," : "", i, user, id, i);
    snprintf(sources + n, sizeof(sources) - n, "]");
    reel_job_free(&job);
    assert_int_equal(reel_redisq_enqueue(q, &e, NULL), 0);
    return e.parts;
}

static int count_cb(void *opaque, const char *key, const ReelStoreInfo *info)
{
    (void)key;
    (void)info;
    (*(int *)opaque)++;
    return 0;
}

static int count_keys(const char *prefix)
{
    int n = 0;
    int ret = reel_store_list(store, prefix, count_cb, &n);
    assert_true(ret >= 0 || ret == REEL_ERR(ENOENT));
    return n;
}

static void wait_done(ReelRedisq *q, const char *user, const char *id, int timeout_s,
                      ReelRedisqState *st)
{
    for (int i = 0; i < timeout_s * 10; i++) {
        int r = reel_redisq_get_state(q, user, id, st);
        assert_true(r >= 0);
        if (!strcmp(st->state, "complete") || !strcmp(st->state, "error") ||
            !strcmp(st->state, "cancelled"))
            return;
        reel_redisq_state_uninit(st);
        test_sleep_ms(100);
    }
    fail_msg("export %s/%s did not finish in %d s", user, id, timeout_s);
}

/* Every clipreel:* key is an export hash (expiring), a newest frame (expiring) or the stream. */
static void check_redis_keys(int exports)
{
    redisContext *c = redisConnect("127.0.0.1", srv.port);
    redisReply *r = redisCommand(c, "KEYS clipreel:*");
    int hashes = 0, latest = 0;
    assert_non_null(r);
    for (size_t i = 0; i < r->elements; i++) {
        const char *k = r->element[i]->str;
        redisReply *t = redisCommand(c, "TTL %s", k);
        if (!strncmp(k, "clipreel:export:", 16)) {
            assert_true(t->integer > 0);
            hashes++;
        } else if (strstr(k, ":latest") && !strncmp(k, "clipreel:progress:", 18)) {
            assert_true(t->integer > 0);
            latest++;
        } else if (strcmp(k, "clipreel:jobs:t4")) {
            fail_msg("unexpected key %s", k);
        }
        freeReplyObject(t);
    }
    assert_int_equal(hashes, exports);
    assert_int_equal(latest, exports);
    freeReplyObject(r);
    r = redisCommand(c, "XPENDING clipreel:jobs:t4 workers");
    assert_int_equal(r->element[0]->integer, 0);
    freeReplyObject(r);
    redisFree(c);
}

static int dir_entries(const char *path)
{
    char buf[64];
    sh_out(buf, sizeof(buf), "find '%s' -mindepth 1 2>/dev/null | wc -l", path);
    return (int)strtol(buf, NULL, 10);
}

/* ---- progress frames of one export, as a subscriber sees them ---------------------------- */

typedef struct Frames {
    pthread_t thread;
    char channel[256];
    atomic_int stop;
    int ready;
    char **items;
    int nb;
} Frames;

static void *frames_main(void *arg)
{
    Frames *f = arg;
    struct timeval tv = {0, 300000};
    redisContext *c = redisConnect("127.0.0.1", srv.port);
    redisReply *r;

    if (!c || c->err)
        return NULL;
    r = redisCommand(c, "SUBSCRIBE %s", f->channel);
    freeReplyObject(r);
    redisSetTimeout(c, tv);
    __atomic_store_n(&f->ready, 1, __ATOMIC_SEQ_CST);
    while (!atomic_load(&f->stop)) {
        void *reply = NULL;
        if (redisGetReply(c, &reply) != REDIS_OK) {
            if (c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                /* timeout: hiredis marks the context unusable; reconnect */
                redisFree(c);
                c = redisConnect("127.0.0.1", srv.port);
                if (!c || c->err)
                    break;
                r = redisCommand(c, "SUBSCRIBE %s", f->channel);
                freeReplyObject(r);
                redisSetTimeout(c, tv);
                continue;
            }
            break;
        }
        r = reply;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[2]->str &&
            !strcmp(r->element[0]->str, "message")) {
            char **items = realloc(f->items, (size_t)(f->nb + 1) * sizeof(*items));
            if (items) {
                f->items = items;
                f->items[f->nb++] = strdup(r->element[2]->str);
            }
        }
        freeReplyObject(r);
    }
    if (c)
        redisFree(c);
    return NULL;
}

static void frames_start(Frames *f, const char *user, const char *id)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->channel, sizeof(f->channel), "clipreel:progress:%s:%s", user, id);
    assert_int_equal(pthread_create(&f->thread, NULL, frames_main, f), 0);
    for (int i = 0; i < 100 && !__atomic_load_n(&f->ready, __ATOMIC_SEQ_CST); i++)
        test_sleep_ms(20);
}

static void frames_stop(Frames *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->thread, NULL);
}

static void frames_free(Frames *f)
{
    for (int i = 0; i < f->nb; i++)
        free(f->items[i]);
    free(f->items);
}

/*
 * The app's frame shape, one monotonic percent although several workers
 * publish, the rendering clips named, a complete frame last. Frames missed
 * during a reconnect of the subscriber are fine (pub/sub is lossy).
 */
static void check_frames(const Frames *f, int nb_clips)
{
    double last = -1;
    int rendering = 0, several = 0;

    assert_true(f->nb >= 3);
    for (int i = 0; i < f->nb; i++) {
        json_t *o = json_loads(f->items[i], 0, NULL);
        const char *status, *msg;
        double pct;
        if (!o)
            fail_msg("frame %d is not JSON: %s", i, f->items[i]);
        status = json_string_value(json_object_get(o, "status"));
        msg = json_string_value(json_object_get(o, "message"));
        pct = json_number_value(json_object_get(o, "progress"));
        assert_non_null(status);
        assert_non_null(msg);
        assert_true(json_is_number(json_object_get(o, "progress")));
        assert_non_null(json_object_get(o, "projectId"));
        assert_non_null(json_object_get(o, "projectName"));
        assert_non_null(json_object_get(o, "phase"));
        assert_string_equal(json_string_value(json_object_get(o, "type")), "multi_clip");
        if (pct < last)
            fail_msg("progress went back from %.1f to %.1f at frame %d: %s", last, pct, i,
                     f->items[i]);
        last = pct;
        if (strstr(msg, "Rendering clip")) {
            rendering++;
            assert_int_equal(json_integer_value(json_object_get(o, "total_clips")), nb_clips);
        }
        if (strstr(msg, "Rendering clips "))
            several++;
        if (i == f->nb - 1) {
            assert_string_equal(status, "complete");
            assert_true(pct == 100);
        } else {
            assert_string_equal(status, "processing");
            assert_true(pct < 100);
        }
        json_decref(o);
    }
    print_message("%d frames, %d naming a rendering clip, %d several at once\n", f->nb, rendering,
                  several);
    assert_true(rendering >= 1);
}

/* ---- the reels ----------------------------------------------------------------------------- */

static const char *sources_of[] = {"pa.mp4", "pb.mp4", "pc.mp4"};

/*
 * clips x about 1 s, a moving crop, a 0.5x segment on the second clip,
 * dissolves, chapters. with_sources: local paths for `clipreel export`.
 */
static const char *reel_job(int nb_clips, int with_sources, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "{\"clips\":[");
    for (int i = 0; i < nb_clips; i++) {
        char src[1300] = "";
        if (with_sources)
            snprintf(src, sizeof(src), "\"source\":\"%s\",", data(sources_of[i % 3]));
        n += (size_t)snprintf(
            buf + n, size - n,
            "%s{%s\"clipIndex\":%d,\"clipName\":\"Clip %c\",\"duration\":1.4,"
            "\"trimRange\":{\"start\":0.1,\"end\":%s},%s"
            "\"cropKeyframes\":[{\"time\":0,\"x\":0,\"y\":0,\"width\":120,\"height\":90},"
            "{\"time\":1,\"x\":40,\"y\":30,\"width\":120,\"height\":90}]}",
            i ? "," : "", src, i, 'A' + i, i == 1 ? "0.9" : "1.2",
            i == 1 ? "\"segments\":{\"boundaries\":[0.5],\"segmentSpeeds\":{\"0\":0.5}}," : "");
    }
    snprintf(buf + n, size - n,
             "],\"globalAspectRatio\":\"4:3\",\"transition\":{\"type\":\"dissolve\","
             "\"duration\":0.25},\"output\":{\"width\":160,\"height\":120,"
             "\"upscale\":{\"mode\":\"off\"}}}");
    return buf;
}

static double probe_num(const char *file, const char *what)
{
    char out[256];
    sh_out(out, sizeof(out), "ffprobe -v error %s -of csv=p=0 '%s' | head -1", what, file);
    return strtod(out, NULL);
}

/* The parallel reel against the single-container reel of the same job. */
static void compare_reels(const char *par, const char *ref)
{
    char a[4096], b[4096], psnr[256];
    double da = probe_num(par, "-show_entries format=duration");
    double db = probe_num(ref, "-show_entries format=duration");
    double fa =
        probe_num(par, "-count_frames -select_streams v:0 -show_entries stream=nb_read_frames");
    double fb =
        probe_num(ref, "-count_frames -select_streams v:0 -show_entries stream=nb_read_frames");
    double aa = probe_num(par, "-select_streams a:0 -show_entries stream=duration");
    double ab = probe_num(ref, "-select_streams a:0 -show_entries stream=duration");
    double p;

    print_message("duration %.3f / %.3f s, frames %.0f / %.0f, audio %.4f / %.4f s\n", da, db, fa,
                  fb, aa, ab);
    assert_true(db > 1.5);
    assert_true(fabs(da - db) < 0.0015);
    assert_true(fa == fb && fa > 40);
    assert_true(fabs(aa - ab) < 0.0005);
    /* chapters: count, titles, starts and ends */
    sh_out(a, sizeof(a), "ffprobe -v error -show_chapters -of csv=p=0 '%s'", par);
    sh_out(b, sizeof(b), "ffprobe -v error -show_chapters -of csv=p=0 '%s'", ref);
    print_message("chapters:\n%s\n", b);
    assert_non_null(strstr(b, "Clip C"));
    assert_string_equal(a, b);
    sh_out(psnr, sizeof(psnr),
           "ffmpeg -v info -nostats -i '%s' -i '%s' -lavfi '[0:v][1:v]psnr' -f null - 2>&1 | "
           "grep -o 'average:[0-9.inf]*' | tail -1 | cut -d: -f2",
           par, ref);
    p = !strcmp(psnr, "inf") ? INFINITY : strtod(psnr, NULL);
    print_message("PSNR %s dB\n", psnr);
    assert_true(p >= 45.0);
}

static int setup(void **state)
{
    char err[REEL_ERRMSG_SIZE];
    FILE *f;
    ReelStoreConfig sc = {.kind = "s3",
                          .bucket = "test",
                          .region = "us-east-1",
                          .access_key = "S3RVER",
                          .secret_key = "S3RVER",
                          .path_style = 1};
    int n = 0;
    (void)state;

    memset(&srv, 0, sizeof(srv));
    if (redis_start(&srv, 0) < 0)
        return -1;
    snprintf(work_root, sizeof(work_root), "%s/pwork-%d", data_dir, srv.port);
    snprintf(s3.dir, sizeof(s3.dir), "%s/s3-%d", data_dir, srv.port);
    s3.port = test_free_port();
    if (s3_start(&s3, node_bin, s3_script, node_prefix) < 0) {
        fprintf(stderr, "test_scale_parallel: s3rver did not start\n");
        return -1;
    }
    sc.endpoint = s3.endpoint;
    if (reel_store_open(&store, &sc, err) < 0) {
        fprintf(stderr, "test_scale_parallel: %s\n", err);
        return -1;
    }
    for (int i = 0; i < 50 && reel_store_list(store, "", count_cb, &n) != 0; i++)
        test_sleep_ms(100);
    /* Parallel above 2 clips and 1 s of output (the defaults are 5 clips and 180 s). */
    snprintf(plan_cfg, sizeof(plan_cfg), "%s/plan.json", data_dir);
    if (!(f = fopen(plan_cfg, "w")))
        return -1;
    fputs("{\"single_max_clips\": 2, \"single_max_output_s\": 1}\n", f);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    reel_store_close(&store);
    s3_stop(&s3);
    redis_remove(&srv);
    sh("rm -rf '%s' '%s'", s3.dir, work_root);
    return 0;
}

static void test_three_workers_four_exports_one_parallel(void **state)
{
    ReelRedisq *q = NULL;
    char err[REEL_ERRMSG_SIZE], job[8192], id[16], ref_json[1200], ref_mp4[1200], ref_vtt[1200];
    char par_mp4[1200], par_vtt[1200], a[4096], b[4096];
    const int clips[4] = {3, 1, 2, 1};
    Worker w[3];
    Frames frames;
    ReelRedisqState st;
    long total = 0;
    FILE *f;
    (void)state;

    gen("pa.mp4", "testsrc2=size=160x120:rate=30", 440, 1.5);
    gen("pb.mp4", "mandelbrot=size=160x120:rate=30", 660, 1.5);
    gen("pc.mp4", "testsrc=size=160x120:rate=30", 880, 1.5);
    assert_int_equal(reel_redisq_open(&q, srv.url, 5000, err), 0);
    frames_start(&frames, "u1", "ex0");
    for (int i = 0; i < 4; i++) {
        int parts;
        snprintf(id, sizeof(id), "ex%d", i);
        for (int c = 0; c < clips[i]; c++)
            put_source("u1", id, c, sources_of[c]);
        parts = enqueue(q, "u1", id, reel_job(clips[i], 0, job, sizeof(job)));
        assert_int_equal(parts, i == 0 ? 3 : 0); /* only ex0 is planned parallel */
    }
    for (int i = 0; i < 3; i++)
        worker_start(&w[i], i);

    /* Meanwhile, the reference: the same job in one process. */
    snprintf(ref_json, sizeof(ref_json), "%s", data("ref.json"));
    snprintf(ref_mp4, sizeof(ref_mp4), "%s", data("ref.mp4"));
    snprintf(ref_vtt, sizeof(ref_vtt), "%s", data("ref.chapters.vtt"));
    assert_non_null(f = fopen(ref_json, "w"));
    fputs(reel_job(3, 1, job, sizeof(job)), f);
    fclose(f);
    sh("'%s' export '%s' -o '%s' --upscale off --threads 1 --progress none -q", CLIPREEL_BIN,
       ref_json, ref_mp4);

    for (int i = 0; i < 4; i++) {
        snprintf(id, sizeof(id), "ex%d", i);
        wait_done(q, "u1", id, 240, &st);
        if (strcmp(st.state, "complete"))
            fail_msg("%s: %s %s", id, st.state, st.error);
        assert_true(reel_store_head(store, st.output_key, &(ReelStoreInfo){0}) == 0);
        if (i == 0) {
            assert_int_equal(st.attempts, 4); /* 3 parts + the assembly, none retried */
            snprintf(par_mp4, sizeof(par_mp4), "%s", data("par.mp4"));
            snprintf(par_vtt, sizeof(par_vtt), "%s", data("par.chapters.vtt"));
            assert_int_equal(reel_store_get_file(store, st.output_key, par_mp4), 0);
            assert_int_equal(reel_store_get_file(store, st.chapters_key, par_vtt), 0);
        } else {
            assert_int_equal(st.attempts, 1);
        }
        reel_redisq_state_uninit(&st);
    }
    test_sleep_ms(300); /* the complete frame reaches the subscriber */
    frames_stop(&frames);
    check_frames(&frames, 3);
    frames_free(&frames);

    compare_reels(par_mp4, ref_mp4);
    sh_out(a, sizeof(a), "cat '%s'", par_vtt);
    sh_out(b, sizeof(b), "cat '%s'", ref_vtt);
    assert_string_equal(a, b);

    for (int i = 0; i < 3; i++) {
        long c = worker_stop(&w[i]);
        print_message("worker %d: completed %ld tasks\n", i, c);
        total += c;
    }
    assert_int_equal(total, 3 + 3 + 1); /* 3 single exports, 3 parts, 1 assembly */
    assert_int_equal(count_keys("u1/working_videos/"), 4 * 2); /* MP4 + VTT each */
    assert_int_equal(count_keys("u1/temp/"), 0);
    check_redis_keys(4);
    assert_int_equal(dir_entries(work_root), 0);
    reel_redisq_close(&q);
}

static void test_kill9_mid_part(void **state)
{
    ReelRedisq *q = NULL;
    char err[REEL_ERRMSG_SIZE], job[8192];
    Worker a, b, c;
    ReelRedisqState st;
    long done;
    int seen = 0;
    (void)state;

    gen("big.mp4", "testsrc2=size=1280x720:rate=30", 440, 3.2);
    assert_int_equal(reel_redisq_open(&q, srv.url, 5000, err), 0);
    /* 3 x 3 s at 1280x720: each part takes a few seconds on one thread */
    snprintf(
        job, sizeof(job),
        "{\"clips\":["
        "{\"clipIndex\":0,\"clipName\":\"One\",\"duration\":3.2,\"trimRange\":{\"start\":0,\"end\":"
        "3}},"
        "{\"clipIndex\":1,\"clipName\":\"Two\",\"duration\":3.2,\"trimRange\":{\"start\":0,\"end\":"
        "3}},"
        "{\"clipIndex\":2,\"clipName\":\"Three\",\"duration\":3.2,\"trimRange\":{\"start\":0,"
        "\"end\":3}}],"
        "\"globalAspectRatio\":\"16:9\",\"transition\":{\"type\":\"dissolve\",\"duration\":0.2},"
        "\"output\":{\"width\":1280,\"height\":720,\"upscale\":{\"mode\":\"off\"}}}");
    for (int i = 0; i < 3; i++)
        put_source("u2", "k1", i, "big.mp4");
    assert_int_equal(enqueue(q, "u2", "k1", job), 3);
    worker_start(&a, 10);
    /* Wait until a is well into its first part, then kill it without warning. */
    for (int i = 0; i < 1200 && !seen; i++) {
        char *frame = NULL;
        reel_redisq_get_latest(q, "u2", "k1", &frame);
        if (frame && strstr(frame, "\"phase\":\"processing\"") && strstr(frame, "Rendering clip")) {
            json_t *o = json_loads(frame, 0, NULL);
            if (json_number_value(json_object_get(o, "progress")) >= 8)
                seen = 1;
            json_decref(o);
        }
        free(frame);
        test_sleep_ms(50);
    }
    assert_true(seen);
    kill(a.pid, SIGKILL);
    waitpid(a.pid, NULL, 0);
    live_remove(a.pid);
    assert_int_equal(reel_redisq_get_state(q, "u2", "k1", &st), 1);
    assert_string_equal(st.state, "running");
    assert_null(st.result);
    reel_redisq_state_uninit(&st);

    worker_start(&b, 11);
    worker_start(&c, 12);
    wait_done(q, "u2", "k1", 300, &st);
    if (strcmp(st.state, "complete"))
        fail_msg("k1: %s %s", st.state, st.error);
    assert_int_equal(st.attempts, 5); /* 3 parts + assembly + the part retried */
    reel_redisq_state_uninit(&st);
    done = worker_stop(&b) + worker_stop(&c);
    assert_int_equal(done, 4); /* a's part again, the two others, the assembly */
    assert_int_equal(count_keys("u2/working_videos/"), 2);
    assert_int_equal(count_keys("u2/temp/"), 0);
    check_redis_keys(5);
    /* b and c removed the dead worker's scratch folder at start, and their own at exit. */
    assert_int_equal(dir_entries(work_root), 0);
    reel_redisq_close(&q);
}

/*
 * A part recorded in Redis but gone from the store (here: recorded at a key
 * never uploaded, as if an operator or a lifecycle rule had deleted it): the
 * assembly queues that clip again, a worker renders it, a new assembly joins
 * the reel, which matches the same job exported in one process.
 */
static void test_vanished_part_rendered_again(void **state)
{
    ReelRedisq *q = NULL;
    char err[REEL_ERRMSG_SIZE], job[8192], ref_json[1200], ref_mp4[1200], par_mp4[1200];
    const char *gone = "u3/temp/multi_clip_v1/part_0_gone.nut";
    char no_sources[] = "[]";
    ReelRedisqMsg fake = {.part = 0, .parts = 3};
    Worker w;
    ReelRedisqState st;
    (void)state;

    gen("pa.mp4", "testsrc2=size=160x120:rate=30", 440, 1.5);
    gen("pb.mp4", "mandelbrot=size=160x120:rate=30", 660, 1.5);
    gen("pc.mp4", "testsrc=size=160x120:rate=30", 880, 1.5);
    assert_int_equal(reel_redisq_open(&q, srv.url, 5000, err), 0);
    for (int c = 0; c < 3; c++)
        put_source("u3", "v1", c, sources_of[c]);
    assert_int_equal(enqueue(q, "u3", "v1", reel_job(3, 0, job, sizeof(job))), 3);
    /* part 0 "rendered and recorded" before any worker runs; its object never existed */
    snprintf(fake.gpu_class, sizeof(fake.gpu_class), "t4");
    snprintf(fake.user, sizeof(fake.user), "u3");
    snprintf(fake.export_id, sizeof(fake.export_id), "v1");
    snprintf(fake.project_id, sizeof(fake.project_id), "v1");
    snprintf(fake.project_name, sizeof(fake.project_name), "Test");
    fake.job_json = job;
    fake.sources_json = no_sources;
    assert_int_equal(reel_redisq_record_part(q, &fake, gone), REEL_REDISQ_PART_RECORDED);

    worker_start(&w, 20);
    snprintf(ref_json, sizeof(ref_json), "%s", data("vref.json"));
    snprintf(ref_mp4, sizeof(ref_mp4), "%s", data("vref.mp4"));
    FILE *f = fopen(ref_json, "w");
    assert_non_null(f);
    fputs(reel_job(3, 1, job, sizeof(job)), f);
    fclose(f);
    sh("'%s' export '%s' -o '%s' --upscale off --threads 1 --progress none -q", CLIPREEL_BIN,
       ref_json, ref_mp4);
    wait_done(q, "u3", "v1", 240, &st);
    if (strcmp(st.state, "complete"))
        fail_msg("v1: %s %s", st.state, st.error);
    /* parts 1 and 2, the assembly that found part 0 gone, part 0 again, the assembly */
    assert_int_equal(st.attempts, 5);
    snprintf(par_mp4, sizeof(par_mp4), "%s", data("vpar.mp4"));
    assert_int_equal(reel_store_get_file(store, st.output_key, par_mp4), 0);
    reel_redisq_state_uninit(&st);
    compare_reels(par_mp4, ref_mp4);
    /* 3 parts rendered, the final assembly (the superseded one and the fake entry's
     * redelivery are acked, not counted) */
    assert_int_equal(worker_stop(&w), 4);
    assert_int_equal(count_keys("u3/working_videos/"), 2);
    assert_int_equal(count_keys("u3/temp/"), 0);
    check_redis_keys(6);
    assert_int_equal(dir_entries(work_root), 0);
    reel_redisq_close(&q);
}

int main(int argc, char **argv)
{
    const char *d = getenv("REEL_TEST_DATA");
    const char *ci = getenv("CI");
    int must = ci && !strcmp(ci, "true");

    if (argc != 5) {
        fprintf(stderr, "usage: %s <node prefix> <s3rver.js> <node> <npm>\n", argv[0]);
        return 2;
    }
    node_prefix = argv[1];
    s3_script = argv[2];
    node_bin = argv[3];
    npm_bin = argv[4];
    if (!*node_bin || s3_ensure_package(npm_bin, node_prefix) < 0) {
        fprintf(stderr, "test_scale_parallel: no node or no s3rver package: %s\n",
                must ? "failing (CI)" : "skipped");
        return must ? 1 : 77;
    }
    snprintf(data_dir, sizeof(data_dir), "%s", d ? d : "parallel-data");
    mkdir(data_dir, 0755);
    signal(SIGPIPE, SIG_IGN);
    reel_log_set_level(REEL_LOG_QUIET);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_three_workers_four_exports_one_parallel, kill_live),
        cmocka_unit_test_teardown(test_kill9_mid_part, kill_live),
        cmocka_unit_test_teardown(test_vanished_part_rendered_again, kill_live),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
