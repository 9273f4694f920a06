/*
 * test_worker.c - `clipreel worker` end to end: real redis-server, the local
 * object store in a shared folder, real worker processes.
 *
 *  - 3 workers, 4 exports: all complete, one output each, no temporary source
 *    objects or stray Redis keys left, the model loaded at most once per
 *    process although some process ran several exports.
 *  - kill -9 of a worker mid-export: another worker reclaims it after the
 *    claim idle time and completes it; attempts = 2, one output, no leftovers.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/log.h"
#include "jobs/redisq.h"
#include "storage/storage.h"
#include "redis_helper.h"

#define CLAIM_IDLE_MS 1500

static TestRedis srv;
static char data_dir[1024], store_root[1100], work_root[1100];
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

static void gen(const char *name, const char *video, double secs)
{
    struct stat sb;
    if (stat(data(name), &sb) == 0)
        return;
    sh("ffmpeg -v error -y -f lavfi -i \"%s\" -f lavfi -i sine=frequency=440:sample_rate=48000 "
       "-t %g -c:v libx264 -preset veryfast -crf 10 -pix_fmt yuv420p -c:a aac -shortest %s",
       video, secs, data(name));
}

typedef struct Worker {
    pid_t pid;
    char log[1200];
} Worker;

static void worker_start(Worker *w, int n)
{
    snprintf(w->log, sizeof(w->log), "%s/worker%d.log", data_dir, n);
    w->pid = fork();
    assert_true(w->pid >= 0);
    if (w->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (!freopen(w->log, "w", stderr))
            _exit(126);
        execl(CLIPREEL_BIN, "clipreel", "worker", "--redis", srv.url, "--gpu-class", "t4",
              "--store-root", store_root, "--models", REEL_MODELS, "--claim-idle-ms", "1500",
              "--max-attempts", "3", "--work-dir", work_root, "--threads", "1", "-v", (char *)NULL);
        _exit(127);
    }
}

/* SIGTERM, wait, and return the stats line's counters. */
static void worker_stop(Worker *w, long *completed, long *models)
{
    int status = 0;
    char line[512];
    FILE *f;

    kill(w->pid, SIGTERM);
    waitpid(w->pid, &status, 0);
    w->pid = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    *completed = *models = -1;
    assert_non_null(f = fopen(w->log, "r"));
    while (fgets(line, sizeof(line), f)) {
        const char *c = strstr(line, "completed="), *m = strstr(line, "models_loaded=");
        if (c && m) {
            *completed = strtol(c + 10, NULL, 10);
            *models = strtol(m + 14, NULL, 10);
        }
    }
    fclose(f);
    assert_true(*completed >= 0);
}

static void put_source(const char *user, const char *id, int clip, const char *file)
{
    char key[512];
    snprintf(key, sizeof(key), "%s/temp/multi_clip_%s/source_%d.mp4", user, id, clip);
    assert_int_equal(reel_store_put_file(store, key, data(file)), 0);
}

static void enqueue(ReelRedisq *q, const char *user, const char *id, const char *job,
                    int nb_clips)
{
    char sources[1024];
    size_t n = 0;
    ReelRedisqExport e = {.gpu_class = "t4", .user = user, .export_id = id, .project_id = id,
                          .project_name = "Test", .job_json = job, .sources_json = sources};
    n += (size_t)snprintf(sources + n, sizeof(sources) - n, "[");
    for (int i = 0; i < nb_clips; i++)
        n += (size_t)snprintf(sources + n, sizeof(sources) - n,
                              "%s{\"clip\":%d,\"key\":\"%s/temp/multi_clip_%s/source_%d.mp4\"}",
                              i ? "," : "", i, user, id, i);
    snprintf(sources + n, sizeof(sources) - n, "]");
    assert_int_equal(reel_redisq_enqueue(q, &e, NULL), 0);
}

static int count_cb(void *opaque, const char *key, const ReelStoreInfo *info)
{
    (void)info;
    if (strstr(key, ".mp4"))
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

/* Wait until the export is terminal; returns its state. */
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

/* Every clipreel:* key, checked against what may remain after the exports. */
static void check_redis_keys(int exports)
{
    redisContext *c = redisConnect("127.0.0.1", srv.port);
    redisReply *r = redisCommand(c, "KEYS clipreel:*");
    int hashes = 0, latest = 0;
    assert_non_null(r);
    for (size_t i = 0; i < r->elements; i++) {
        const char *k = r->element[i]->str;
        if (!strncmp(k, "clipreel:export:", 16)) {
            redisReply *t = redisCommand(c, "TTL %s", k);
            assert_true(t->integer > 0); /* terminal hashes expire */
            freeReplyObject(t);
            hashes++;
        } else if (strstr(k, ":latest") && !strncmp(k, "clipreel:progress:", 18)) {
            redisReply *t = redisCommand(c, "TTL %s", k);
            assert_true(t->integer > 0);
            freeReplyObject(t);
            latest++;
        } else if (strcmp(k, "clipreel:jobs:t4")) {
            fail_msg("unexpected key %s", k);
        }
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
    char cmd[1300], buf[64];
    FILE *p;
    int n = -1;
    snprintf(cmd, sizeof(cmd), "find '%s' -mindepth 1 2>/dev/null | wc -l", path);
    p = popen(cmd, "r");
    if (p && fgets(buf, sizeof(buf), p))
        n = (int)strtol(buf, NULL, 10);
    if (p)
        pclose(p);
    return n;
}

static int setup(void **state)
{
    char err[REEL_ERRMSG_SIZE];
    ReelStoreConfig sc = {.kind = "local"};
    (void)state;
    memset(&srv, 0, sizeof(srv));
    if (redis_start(&srv, 0) < 0)
        return -1;
    snprintf(store_root, sizeof(store_root), "%s/objects-%d", data_dir, srv.port);
    snprintf(work_root, sizeof(work_root), "%s/work-%d", data_dir, srv.port);
    mkdir(store_root, 0755);
    sc.root = store_root;
    return reel_store_open(&store, &sc, err) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    reel_store_close(&store);
    redis_remove(&srv);
    sh("rm -rf '%s' '%s'", store_root, work_root);
    return 0;
}

/* Upscaled tiny reels (crop 40x30 -> 160x120), so that the model runs. */
static const char *small_job(int nb_clips, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "{\"clips\":[");
    for (int i = 0; i < nb_clips; i++)
        n += (size_t)snprintf(buf + n, size - n,
                              "%s{\"clipIndex\":%d,\"clipName\":\"C%d\",\"duration\":1,"
                              "\"trimRange\":{\"start\":0,\"end\":1},"
                              "\"cropKeyframes\":[{\"time\":0,\"x\":20,\"y\":20,\"width\":40,"
                              "\"height\":30}]}",
                              i ? "," : "", i, i);
    snprintf(buf + n, size - n,
             "],\"globalAspectRatio\":\"4:3\",\"transition\":{\"type\":\"dissolve\","
             "\"duration\":0.25},\"output\":{\"width\":160,\"height\":120,"
             "\"upscale\":{\"mode\":\"always\"}}}");
    return buf;
}

static void test_three_workers_four_exports(void **state)
{
    ReelRedisq *q = NULL;
    char err[REEL_ERRMSG_SIZE], job[4096], id[16];
    Worker w[3];
    long total = 0, completed, models;
    int busiest = 0;
    (void)state;

    gen("s1.mp4", "testsrc2=size=160x120:rate=30", 1.2);
    assert_int_equal(reel_redisq_open(&q, srv.url, 5000, err), 0);
    for (int i = 0; i < 4; i++) {
        int clips = 1 + i % 2;
        snprintf(id, sizeof(id), "ex%d", i);
        for (int c = 0; c < clips; c++)
            put_source("u1", id, c, "s1.mp4");
        enqueue(q, "u1", id, small_job(clips, job, sizeof(job)), clips);
    }
    for (int i = 0; i < 3; i++)
        worker_start(&w[i], i);
    for (int i = 0; i < 4; i++) {
        ReelRedisqState st;
        char *frame = NULL;
        snprintf(id, sizeof(id), "ex%d", i);
        wait_done(q, "u1", id, 180, &st);
        if (strcmp(st.state, "complete"))
            fail_msg("%s: %s %s", id, st.state, st.error);
        assert_int_equal(st.attempts, 1);
        assert_true(reel_store_head(store, st.output_key, &(ReelStoreInfo){0}) == 0);
        sh("ffprobe -v error -show_format '%s/%s' > /dev/null", store_root, st.output_key);
        /* The last frame is the service's complete frame. */
        assert_int_equal(reel_redisq_get_latest(q, "u1", id, &frame), 0);
        assert_non_null(frame);
        assert_non_null(strstr(frame, "\"status\":\"complete\""));
        assert_non_null(strstr(frame, "\"output_url\":\"/api/exports/"));
        assert_non_null(strstr(frame, "\"projectName\":\"Test\""));
        free(frame);
        reel_redisq_state_uninit(&st);
    }
    for (int i = 0; i < 3; i++) {
        worker_stop(&w[i], &completed, &models);
        print_message("worker %d: completed %ld, models loaded %ld\n", i, completed, models);
        assert_true(models <= 1); /* once per process, not per export */
        total += completed;
        if (completed > busiest)
            busiest = (int)completed;
    }
    assert_int_equal(total, 4);
    assert_true(busiest >= 2); /* some process reused its model */
    assert_int_equal(count_keys("u1/working_videos/"), 4);
    assert_int_equal(count_keys("u1/temp/"), 0);
    check_redis_keys(4);
    assert_int_equal(dir_entries(work_root), 0);
    reel_redisq_close(&q);
}

static void test_kill9_mid_export(void **state)
{
    ReelRedisq *q = NULL;
    char err[REEL_ERRMSG_SIZE];
    Worker a, b;
    ReelRedisqState st;
    long completed, models;
    int seen = 0;
    const char *job =
        "{\"clips\":[{\"clipIndex\":0,\"clipName\":\"Long\",\"duration\":12,"
        "\"trimRange\":{\"start\":0,\"end\":12},"
        "\"cropKeyframes\":[{\"time\":0,\"x\":40,\"y\":30,\"width\":80,\"height\":60}]}],"
        "\"globalAspectRatio\":\"4:3\",\"output\":{\"width\":320,\"height\":240,"
        "\"upscale\":{\"mode\":\"always\"}}}";
    (void)state;

    gen("long.mp4", "testsrc2=size=320x240:rate=30", 12);
    assert_int_equal(reel_redisq_open(&q, srv.url, 5000, err), 0);
    put_source("u2", "k1", 0, "long.mp4");
    enqueue(q, "u2", "k1", job, 1);
    worker_start(&a, 10);
    /* Wait until a is well into the frames, then kill it without warning. */
    for (int i = 0; i < 1200 && !seen; i++) {
        char *frame = NULL;
        reel_redisq_get_latest(q, "u2", "k1", &frame);
        if (frame && strstr(frame, "\"phase\":\"processing\"")) {
            const char *p = strstr(frame, "\"progress\":");
            if (p && strtod(p + 11, NULL) >= 15)
                seen = 1;
        }
        free(frame);
        test_sleep_ms(50);
    }
    assert_true(seen);
    kill(a.pid, SIGKILL);
    waitpid(a.pid, NULL, 0);
    assert_int_equal(reel_redisq_get_state(q, "u2", "k1", &st), 1);
    assert_string_equal(st.state, "running");
    reel_redisq_state_uninit(&st);

    worker_start(&b, 11);
    wait_done(q, "u2", "k1", 240, &st);
    if (strcmp(st.state, "complete"))
        fail_msg("k1: %s %s", st.state, st.error);
    assert_int_equal(st.attempts, 2);
    reel_redisq_state_uninit(&st);
    worker_stop(&b, &completed, &models);
    assert_int_equal(completed, 1);
    assert_int_equal(count_keys("u2/working_videos/"), 1);
    assert_int_equal(count_keys("u2/temp/"), 0);
    check_redis_keys(5);
    /* b removed the dead worker's scratch folder at start, and its own at exit. */
    assert_int_equal(dir_entries(work_root), 0);
    reel_redisq_close(&q);
}

int main(void)
{
    const char *d = getenv("REEL_TEST_DATA");
    snprintf(data_dir, sizeof(data_dir), "%s", d ? d : "scaleout-data");
    mkdir(data_dir, 0755);
    signal(SIGPIPE, SIG_IGN);
    reel_log_set_level(REEL_LOG_QUIET);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_workers_four_exports),
        cmocka_unit_test(test_kill9_mid_export),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
