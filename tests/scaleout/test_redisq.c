/*
 * test_redisq.c - the Redis Streams protocol (src/jobs/redisq.h) against a real
 * redis-server started by the test: enqueue/consume/ack, reclaim of a silent
 * consumer, bounded attempts, exactly one result among racers, GPU class
 * isolation, and no loss across a Redis crash with AOF on.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/log.h"
#include "jobs/redisq.h"
#include "redis_helper.h"

static TestRedis srv;

static int setup(void **state)
{
    (void)state;
    memset(&srv, 0, sizeof(srv));
    return redis_start(&srv, 0);
}

static int teardown(void **state)
{
    (void)state;
    redis_remove(&srv);
    return 0;
}

static ReelRedisq *open_q(void)
{
    char err[REEL_ERRMSG_SIZE];
    ReelRedisq *q = NULL;
    if (reel_redisq_open(&q, srv.url, 5000, err) < 0)
        fail_msg("open: %s", err);
    return q;
}

static void enqueue(ReelRedisq *q, const char *cls, const char *user, const char *id)
{
    ReelRedisqExport e = {.gpu_class = cls,
                          .user = user,
                          .export_id = id,
                          .project_id = "p1",
                          .project_name = "Proj",
                          .job_json = "{\"clips\":[]}",
                          .sources_json = "[{\"clip\":0,\"key\":\"a/temp/x/source_0.mp4\"}]"};
    int ret = reel_redisq_enqueue(q, &e, NULL);
    if (ret < 0)
        fail_msg("enqueue %s: %s", id, reel_redisq_errmsg(q));
}

static void test_url(void **state)
{
    ReelRedisUrl u;
    (void)state;
    assert_int_equal(reel_redisq_url_parse(&u, "redis://h", NULL), 0);
    assert_string_equal(u.host, "h");
    assert_int_equal(u.port, 6379);
    assert_int_equal(reel_redisq_url_parse(&u, "redis://:pw@h:7000/3", NULL), 0);
    assert_string_equal(u.password, "pw");
    assert_string_equal(u.user, "");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 3);
    assert_int_equal(reel_redisq_url_parse(&u, "redis://bob:s3:cr@t@10.0.0.1", NULL), 0);
    assert_string_equal(u.user, "bob");
    assert_string_equal(u.password, "s3:cr@t");
    assert_string_equal(u.host, "10.0.0.1");
    assert_true(reel_redisq_url_parse(&u, "http://h", NULL) < 0);
    assert_true(reel_redisq_url_parse(&u, "redis://h:99999", NULL) < 0);
    assert_true(reel_redisq_url_parse(&u, "redis://h:1/x", NULL) < 0);
    assert_true(reel_redisq_url_parse(&u, "redis://", NULL) < 0);
}

static void test_enqueue_consume_ack(void **state)
{
    ReelRedisq *q = open_q();
    ReelRedisqMsg m;
    ReelRedisqState st;
    char owner[REEL_REDISQ_NAME_MAX + 16], *frame = NULL;
    int attempt = 0;
    ReelRedisqResult res = {
        .status = "complete", .output_key = "u1/working_videos/w.mp4", .worker = "c1"};
    (void)state;

    enqueue(q, "t4", "u1", "e1");
    assert_int_equal(reel_redisq_read(q, "t4", "c1", 100, &m), 1);
    assert_string_equal(m.export_id, "e1");
    assert_string_equal(m.user, "u1");
    assert_string_equal(m.project_name, "Proj");
    assert_string_equal(m.job_json, "{\"clips\":[]}");
    assert_non_null(strstr(m.sources_json, "source_0.mp4"));
    assert_int_equal(m.reclaimed, 0);
    assert_int_equal(reel_redisq_begin(q, &m, "c1", 3, &attempt, owner), REEL_REDISQ_RUN);
    assert_int_equal(attempt, 1);
    assert_string_equal(owner, "c1#1");
    assert_int_equal(reel_redisq_get_state(q, "u1", "e1", &st), 1);
    assert_string_equal(st.state, "running");
    reel_redisq_state_uninit(&st);
    assert_int_equal(reel_redisq_publish_progress(q, "u1", "e1", "{\"progress\":50}"), 0);
    assert_int_equal(reel_redisq_get_latest(q, "u1", "e1", &frame), 0);
    assert_string_equal(frame, "{\"progress\":50}");
    free(frame);
    assert_int_equal(reel_redisq_pending(q, "t4"), 1);
    assert_int_equal(reel_redisq_publish_result(q, "u1", "e1", &res), 1);
    assert_int_equal(reel_redisq_ack(q, &m), 0);
    assert_int_equal(reel_redisq_pending(q, "t4"), 0);
    assert_int_equal(reel_redisq_get_state(q, "u1", "e1", &st), 1);
    assert_string_equal(st.state, "complete");
    assert_string_equal(st.output_key, "u1/working_videos/w.mp4");
    assert_non_null(strstr(st.result, "\"complete\""));
    reel_redisq_state_uninit(&st);
    reel_redisq_msg_uninit(&m);
    /* Nothing more to read; the same export id cannot be queued twice. */
    assert_int_equal(reel_redisq_read(q, "t4", "c1", 50, &m), 0);
    ReelRedisqExport again = {.gpu_class = "t4", .user = "u1", .export_id = "e1", .job_json = "{}"};
    assert_int_equal(reel_redisq_enqueue(q, &again, NULL), REEL_ERR(EEXIST));
    /* ... but another user may use the same id. */
    enqueue(q, "t4", "u2", "e1");
    assert_int_equal(reel_redisq_read(q, "t4", "c1", 50, &m), 1);
    assert_string_equal(m.user, "u2");
    reel_redisq_ack(q, &m);
    reel_redisq_msg_uninit(&m);
    reel_redisq_close(&q);
}

static void test_reclaim_after_idle(void **state)
{
    ReelRedisq *a = open_q(), *b = open_q();
    ReelRedisqMsg ma, mb;
    char oa[REEL_REDISQ_NAME_MAX + 16], ob[REEL_REDISQ_NAME_MAX + 16];
    int attempt;
    (void)state;

    enqueue(a, "rc", "u1", "r1");
    assert_int_equal(reel_redisq_read(a, "rc", "ca", 100, &ma), 1);
    assert_int_equal(reel_redisq_begin(a, &ma, "ca", 3, &attempt, oa), REEL_REDISQ_RUN);
    /* While a refreshes, b cannot take it, however long a works. */
    for (int i = 0; i < 8; i++) {
        test_sleep_ms(100);
        assert_int_equal(reel_redisq_refresh(a, &ma, "ca", oa), REEL_REDISQ_HELD);
        assert_int_equal(reel_redisq_autoclaim(b, "rc", "cb", 300, &mb), 0);
    }
    /* a goes silent: after the idle time b reclaims it, attempt 2. */
    test_sleep_ms(400);
    assert_int_equal(reel_redisq_autoclaim(b, "rc", "cb", 300, &mb), 1);
    assert_int_equal(mb.reclaimed, 1);
    assert_string_equal(mb.export_id, "r1");
    assert_int_equal(reel_redisq_begin(b, &mb, "cb", 3, &attempt, ob), REEL_REDISQ_RUN);
    assert_int_equal(attempt, 2);
    /* a comes back: it has lost the claim and must not take it back. */
    assert_int_equal(reel_redisq_refresh(a, &ma, "ca", oa), REEL_REDISQ_LOST);
    assert_int_equal(reel_redisq_refresh(b, &mb, "cb", ob), REEL_REDISQ_HELD);
    /* Cancel reaches the owner through its refresh. */
    assert_int_equal(reel_redisq_cancel(b, "u1", "r1"), 1);
    assert_int_equal(reel_redisq_refresh(b, &mb, "cb", ob), REEL_REDISQ_CANCEL);
    assert_int_equal(reel_redisq_cancel(b, "u1", "nope"), 0);
    reel_redisq_ack(b, &mb);
    reel_redisq_msg_uninit(&ma);
    reel_redisq_msg_uninit(&mb);
    reel_redisq_close(&a);
    reel_redisq_close(&b);
}

static void test_attempts_bounded(void **state)
{
    ReelRedisq *q = open_q();
    ReelRedisqMsg m;
    ReelRedisqState st;
    char owner[REEL_REDISQ_NAME_MAX + 16];
    int attempt;
    (void)state;

    enqueue(q, "at", "u1", "a1");
    assert_int_equal(reel_redisq_read(q, "at", "w1", 100, &m), 1);
    assert_int_equal(reel_redisq_begin(q, &m, "w1", 2, &attempt, owner), REEL_REDISQ_RUN);
    assert_int_equal(reel_redisq_note_error(q, "u1", "a1", "storage timeout"), 0);
    reel_redisq_msg_uninit(&m);
    test_sleep_ms(150);
    assert_int_equal(reel_redisq_autoclaim(q, "at", "w2", 100, &m), 1);
    assert_int_equal(reel_redisq_begin(q, &m, "w2", 2, &attempt, owner), REEL_REDISQ_RUN);
    assert_int_equal(attempt, 2);
    reel_redisq_msg_uninit(&m);
    test_sleep_ms(150);
    assert_int_equal(reel_redisq_autoclaim(q, "at", "w3", 100, &m), 1);
    assert_int_equal(reel_redisq_begin(q, &m, "w3", 2, &attempt, owner), REEL_REDISQ_GAVE_UP);
    reel_redisq_ack(q, &m);
    reel_redisq_msg_uninit(&m);
    assert_int_equal(reel_redisq_get_state(q, "u1", "a1", &st), 1);
    assert_string_equal(st.state, "error");
    assert_non_null(strstr(st.error, "gave up after 2 attempts"));
    assert_non_null(strstr(st.error, "storage timeout"));
    reel_redisq_state_uninit(&st);
    assert_int_equal(reel_redisq_pending(q, "at"), 0);
    reel_redisq_close(&q);
}

#define RACE_N 200
static int race_won[2][RACE_N];

static void *racer(void *arg)
{
    int me = (int)(intptr_t)arg;
    char err[REEL_ERRMSG_SIZE], id[32], who[8];
    ReelRedisq *q = NULL;
    if (reel_redisq_open(&q, srv.url, 5000, err) < 0)
        return NULL;
    snprintf(who, sizeof(who), "w%d", me);
    for (int i = 0; i < RACE_N; i++) {
        ReelRedisqResult res = {.status = "complete", .output_key = who, .worker = who};
        snprintf(id, sizeof(id), "race%d", i);
        race_won[me][i] = reel_redisq_publish_result(q, "u1", id, &res);
    }
    reel_redisq_close(&q);
    return NULL;
}

static void test_exactly_one_result(void **state)
{
    ReelRedisq *q = open_q();
    pthread_t t[2];
    char id[32];
    int wins[2] = {0, 0};
    (void)state;

    for (int i = 0; i < RACE_N; i++) {
        snprintf(id, sizeof(id), "race%d", i);
        enqueue(q, "race", "u1", id);
    }
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, racer, (void *)(intptr_t)i);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < RACE_N; i++) {
        ReelRedisqState st;
        assert_true(race_won[0][i] >= 0 && race_won[1][i] >= 0);
        assert_int_equal(race_won[0][i] + race_won[1][i], 1);
        wins[race_won[1][i]]++;
        snprintf(id, sizeof(id), "race%d", i);
        assert_int_equal(reel_redisq_get_state(q, "u1", id, &st), 1);
        /* The state names the winner's output. */
        assert_string_equal(st.output_key, race_won[0][i] ? "w0" : "w1");
        reel_redisq_state_uninit(&st);
    }
    print_message("race: w0 won %d, w1 won %d\n", wins[0], wins[1]);
    reel_redisq_close(&q);
}

static void test_class_isolation(void **state)
{
    ReelRedisq *q = open_q();
    ReelRedisqMsg m;
    (void)state;

    enqueue(q, "t4", "u1", "iso1");
    /* An l4 worker, reading and reclaiming, never sees it. */
    assert_int_equal(reel_redisq_read(q, "l4", "l4w", 200, &m), 0);
    assert_int_equal(reel_redisq_autoclaim(q, "l4", "l4w", 0, &m), 0);
    assert_int_equal(reel_redisq_read(q, "t4", "t4w", 200, &m), 1);
    assert_string_equal(m.export_id, "iso1");
    assert_string_equal(m.gpu_class, "t4");
    reel_redisq_ack(q, &m);
    reel_redisq_msg_uninit(&m);
    reel_redisq_close(&q);
}

/* Retry a call across a reconnect (the first call after a restart may fail). */
#define RETRY(expr)                                                                                \
    ({                                                                                             \
        int r_ = 0;                                                                                \
        for (int k_ = 0; k_ < 50; k_++) {                                                          \
            r_ = (expr);                                                                           \
            if (r_ != REEL_ERR(ECONNRESET) && r_ != REEL_ERR(ECONNREFUSED))                        \
                break;                                                                             \
            test_sleep_ms(100);                                                                    \
        }                                                                                          \
        r_;                                                                                        \
    })

static void test_aof_restart(void **state)
{
    TestRedis aof = {0};
    char err[REEL_ERRMSG_SIZE], id[16];
    ReelRedisq *q = NULL;
    ReelRedisqMsg m;
    ReelRedisqResult res = {.status = "complete", .output_key = "k", .worker = "w"};
    ReelRedisqState st;
    int seen[5] = {0}, attempt;
    char owner[REEL_REDISQ_NAME_MAX + 16];
    (void)state;

    assert_int_equal(redis_start(&aof, 1), 0);
    assert_int_equal(reel_redisq_open(&q, aof.url, 3000, err), 0);
    for (int i = 0; i < 5; i++) {
        ReelRedisqExport e = {.gpu_class = "t4", .user = "u", .job_json = "{}"};
        snprintf(id, sizeof(id), "d%d", i);
        e.export_id = id;
        assert_int_equal(reel_redisq_enqueue(q, &e, NULL), 0);
    }
    /* d0 finishes, d1 is taken (running) when Redis crashes. */
    assert_int_equal(reel_redisq_read(q, "t4", "w", 0, &m), 1);
    assert_int_equal(reel_redisq_begin(q, &m, "w", 3, &attempt, owner), REEL_REDISQ_RUN);
    assert_int_equal(reel_redisq_publish_result(q, "u", m.export_id, &res), 1);
    assert_int_equal(reel_redisq_ack(q, &m), 0);
    reel_redisq_msg_uninit(&m);
    assert_int_equal(reel_redisq_read(q, "t4", "w", 0, &m), 1);
    assert_string_equal(m.export_id, "d1");
    assert_int_equal(reel_redisq_begin(q, &m, "w", 3, &attempt, owner), REEL_REDISQ_RUN);
    reel_redisq_msg_uninit(&m);

    redis_stop(&aof); /* SIGKILL: no clean shutdown */
    assert_true(reel_redisq_pending(q, "t4") < 0);
    assert_int_equal(redis_start(&aof, 1), 0);

    /* The same connection object recovers; every export is still there. */
    assert_int_equal(RETRY(reel_redisq_get_state(q, "u", "d0", &st)), 1);
    assert_string_equal(st.state, "complete");
    reel_redisq_state_uninit(&st);
    assert_int_equal(RETRY((int)reel_redisq_pending(q, "t4")), 1);
    assert_int_equal(RETRY(reel_redisq_autoclaim(q, "t4", "w2", 0, &m)), 1);
    assert_string_equal(m.export_id, "d1");
    seen[1]++;
    reel_redisq_ack(q, &m);
    reel_redisq_msg_uninit(&m);
    while (RETRY(reel_redisq_read(q, "t4", "w2", 100, &m)) == 1) {
        seen[m.export_id[1] - '0']++;
        reel_redisq_ack(q, &m);
        reel_redisq_msg_uninit(&m);
    }
    assert_int_equal(seen[0], 0);
    for (int i = 1; i < 5; i++)
        assert_int_equal(seen[i], 1);
    reel_redisq_close(&q);
    redis_remove(&aof);
}

/* ---- parallel mode -------------------------------------------------------------------------- */

static void enqueue_parallel(ReelRedisq *q, const char *id, int parts)
{
    ReelRedisqExport e = {.gpu_class = "t4",
                          .user = "pu",
                          .export_id = id,
                          .project_id = "p1",
                          .project_name = "Proj",
                          .job_json = "{\"clips\":[]}",
                          .sources_json = "[]",
                          .parts = parts};
    if (reel_redisq_enqueue(q, &e, NULL) < 0)
        fail_msg("enqueue %s: %s", id, reel_redisq_errmsg(q));
}

typedef struct Recorder {
    ReelRedisqMsg msg;
    char key[64];
    int outcome;
    pthread_t thread;
} Recorder;

static void *record_main(void *arg)
{
    Recorder *r = arg;
    ReelRedisq *q = open_q();
    r->outcome = reel_redisq_record_part(q, &r->msg, r->key);
    reel_redisq_close(&q);
    return NULL;
}

/* 8 parts, each finished by two racing attempts: every part recorded once, and
 * exactly one assemble entry, added by whoever recorded the last part. */
static void test_parallel_assemble_once(void **state)
{
    ReelRedisq *q = open_q();
    ReelRedisqMsg m[8], asm_msg;
    Recorder rec[16];
    char owner[REEL_REDISQ_NAME_MAX + 16];
    char **keys = NULL;
    int attempt, last = 0, recorded = 0, dup = 0;
    (void)state;

    enqueue_parallel(q, "race", 8);
    for (int k = 0; k < 8; k++) {
        assert_int_equal(reel_redisq_read(q, "t4", "c1", 0, &m[k]), 1);
        assert_string_equal(m[k].mode, "part");
        assert_int_equal(m[k].parts, 8);
        assert_int_equal(m[k].part, k);
        assert_int_equal(reel_redisq_begin(q, &m[k], "c1", 3, &attempt, owner), REEL_REDISQ_RUN);
        assert_int_equal(attempt, 1);
    }
    assert_int_equal(reel_redisq_read(q, "t4", "c1", 0, &asm_msg), 0); /* no assembly yet */
    for (int i = 0; i < 16; i++) {
        rec[i].msg = m[i % 8];
        snprintf(rec[i].key, sizeof(rec[i].key), "pu/temp/multi_clip_race/part_%d_a%d.nut", i % 8,
                 i / 8 + 1);
        assert_int_equal(pthread_create(&rec[i].thread, NULL, record_main, &rec[i]), 0);
    }
    for (int i = 0; i < 16; i++) {
        pthread_join(rec[i].thread, NULL);
        last += rec[i].outcome == REEL_REDISQ_PART_LAST;
        recorded += rec[i].outcome == REEL_REDISQ_PART_RECORDED;
        dup += rec[i].outcome == REEL_REDISQ_PART_DUPLICATE;
    }
    assert_int_equal(last, 1);
    assert_int_equal(recorded, 7);
    assert_int_equal(dup, 8);
    /* the one assemble entry */
    assert_int_equal(reel_redisq_read(q, "t4", "c2", 0, &asm_msg), 1);
    assert_string_equal(asm_msg.mode, "assemble");
    assert_string_equal(asm_msg.task, "assemble");
    assert_int_equal(asm_msg.parts, 8);
    assert_int_equal(asm_msg.part, -1);
    assert_string_equal(asm_msg.project_name, "Proj");
    assert_int_equal(reel_redisq_read(q, "t4", "c2", 0, &m[0]), 0);
    assert_int_equal(reel_redisq_begin(q, &asm_msg, "c2", 3, &attempt, owner), REEL_REDISQ_RUN);
    assert_int_equal(reel_redisq_get_parts(q, &asm_msg, &keys), 0);
    for (int k = 0; k < 8; k++) {
        int winner = -1;
        for (int i = 0; i < 16; i++)
            if (i % 8 == k && rec[i].outcome != REEL_REDISQ_PART_DUPLICATE)
                winner = i;
        assert_true(winner >= 0);
        assert_string_equal(keys[k], rec[winner].key);
        free(keys[k]);
    }
    free(keys);
    /* a part entry redelivered after its part was recorded: just acked */
    assert_int_equal(reel_redisq_begin(q, &rec[3].msg, "c3", 3, &attempt, owner),
                     REEL_REDISQ_PART_DONE);
    for (int k = 0; k < 8; k++)
        reel_redisq_msg_uninit(&m[k]);
    reel_redisq_msg_uninit(&asm_msg);
    reel_redisq_close(&q);
}

static double latest_progress(ReelRedisq *q, const char *id, char *msg, size_t size)
{
    char *frame = NULL;
    const char *p, *mm;
    double v;
    assert_int_equal(reel_redisq_get_latest(q, "pu", id, &frame), 0);
    assert_non_null(frame);
    assert_non_null(p = strstr(frame, "\"progress\":"));
    v = strtod(p + 11, NULL);
    if (msg && (mm = strstr(frame, "\"message\":\""))) {
        size_t n = strcspn(mm + 11, "\"");
        snprintf(msg, size, "%.*s", (int)n, mm + 11);
    }
    free(frame);
    return v;
}

/* Parts weighted into 0-90 %, the assembly 90-100 %, never backwards; a settled export
 * publishes nothing more; a cancel stops recording. */
static void test_parallel_progress_and_cancel(void **state)
{
    ReelRedisq *q = open_q();
    ReelRedisqMsg m[3];
    char owner[REEL_REDISQ_NAME_MAX + 16], msg[256];
    const double w[3] = {0.5, 0.25, 0.25};
    const char *frame = "{\"progress\":0,\"message\":\"x\",\"status\":\"processing\","
                        "\"phase\":\"processing\",\"projectId\":null,\"clip\":1}";
    ReelRedisqResult res = {.status = "error", .error = "boom", .worker = "t"};
    int attempt;
    (void)state;

    enqueue_parallel(q, "prog", 3);
    for (int k = 0; k < 3; k++)
        assert_int_equal(reel_redisq_read(q, "t4", "c1", 0, &m[k]), 1);
    assert_int_equal(reel_redisq_begin(q, &m[0], "c1", 3, &attempt, owner), REEL_REDISQ_RUN);
    assert_int_equal(reel_redisq_publish_task_progress(q, &m[0], 50, w, 3, frame), 1);
    assert_true(fabs(latest_progress(q, "prog", msg, sizeof(msg)) - 22.5) < 0.051);
    assert_string_equal(msg, "Rendering clip 1 of 3 (0 done)...");
    assert_int_equal(reel_redisq_begin(q, &m[2], "c1", 3, &attempt, owner), REEL_REDISQ_RUN);
    assert_int_equal(reel_redisq_publish_task_progress(q, &m[2], 40, w, 3, frame), 1);
    assert_true(fabs(latest_progress(q, "prog", msg, sizeof(msg)) - 31.5) < 0.051);
    assert_string_equal(msg, "Rendering clips 1, 3 of 3 in parallel (0 done)...");
    /* a late, lower frame of part 0 changes nothing */
    assert_int_equal(reel_redisq_publish_task_progress(q, &m[0], 10, w, 3, frame), 1);
    assert_true(fabs(latest_progress(q, "prog", NULL, 0) - 31.5) < 0.051);
    /* part 0 recorded: counts 100 % */
    assert_int_equal(reel_redisq_record_part(q, &m[0], "pu/temp/multi_clip_prog/part_0_a1.nut"),
                     REEL_REDISQ_PART_RECORDED);
    assert_int_equal(reel_redisq_publish_task_progress(q, &m[2], 40, w, 3, frame), 1);
    assert_true(fabs(latest_progress(q, "prog", msg, sizeof(msg)) - 54.0) < 0.051);
    assert_string_equal(msg, "Rendering clip 3 of 3 (1 done)...");
    /* cancel: the next part is not recorded, and the caller publishes the result */
    assert_int_equal(reel_redisq_cancel(q, "pu", "prog"), 1);
    assert_int_equal(reel_redisq_record_part(q, &m[2], "pu/temp/multi_clip_prog/part_2_a1.nut"),
                     REEL_REDISQ_PART_CANCEL);
    assert_int_equal(reel_redisq_publish_result(q, "pu", "prog", &res), 1);
    assert_int_equal(reel_redisq_publish_task_progress(q, &m[2], 90, w, 3, frame), 0);
    assert_int_equal(reel_redisq_record_part(q, &m[2], "pu/temp/multi_clip_prog/part_2_a1.nut"),
                     REEL_REDISQ_PART_SETTLED);
    assert_int_equal(reel_redisq_begin(q, &m[1], "c1", 3, &attempt, owner), REEL_REDISQ_DONE);
    for (int k = 0; k < 3; k++)
        reel_redisq_msg_uninit(&m[k]);
    reel_redisq_close(&q);
}

/* A part that keeps failing fails the whole export, naming the clip. */
static void test_parallel_part_gives_up(void **state)
{
    ReelRedisq *q = open_q();
    ReelRedisqMsg m;
    ReelRedisqState st;
    char owner[REEL_REDISQ_NAME_MAX + 16];
    int attempt;
    (void)state;

    enqueue_parallel(q, "gu", 2);
    assert_int_equal(reel_redisq_read(q, "t4", "c1", 0, &m), 1);
    for (int i = 1; i <= 2; i++) {
        assert_int_equal(reel_redisq_begin(q, &m, "c1", 2, &attempt, owner), REEL_REDISQ_RUN);
        assert_int_equal(attempt, i);
        reel_redisq_note_error(q, "pu", "gu", "disk full");
    }
    assert_int_equal(reel_redisq_begin(q, &m, "c1", 2, &attempt, owner), REEL_REDISQ_GAVE_UP);
    assert_int_equal(reel_redisq_get_state(q, "pu", "gu", &st), 1);
    assert_string_equal(st.state, "error");
    assert_string_equal(st.error,
                        "Export failed: gave up after 2 attempts on clip 1 (last: disk full)");
    reel_redisq_state_uninit(&st);
    reel_redisq_msg_uninit(&m);
    /* drain the other part entry for the later tests */
    assert_int_equal(reel_redisq_read(q, "t4", "c1", 0, &m), 1);
    reel_redisq_ack(q, &m);
    reel_redisq_msg_uninit(&m);
    reel_redisq_close(&q);
}

/*
 * A recorded part gone from the store: the assembler queues that part again
 * (one entry, however many assemblers saw the loss), the part's attempts start
 * over, get_parts no longer finds it (an older assemble entry steps aside),
 * the re-recorded part adds a new assemble entry; past max_rerenders: LIMIT;
 * once settled: SETTLED.
 */
static void test_parallel_rerender_part(void **state)
{
    ReelRedisq *q = open_q();
    ReelRedisqMsg m[2], asm1, again, asm2, none;
    ReelRedisqResult res = {.status = "error", .error = "boom", .worker = "t"};
    char owner[REEL_REDISQ_NAME_MAX + 16];
    char **keys = NULL;
    const char *gone = "pu/temp/multi_clip_rr/part_0_a1.nut";
    int attempt;
    (void)state;

    enqueue_parallel(q, "rr", 2);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(reel_redisq_read(q, "t4", "c1", 0, &m[k]), 1);
        assert_int_equal(reel_redisq_begin(q, &m[k], "c1", 3, &attempt, owner), REEL_REDISQ_RUN);
        reel_redisq_ack(q, &m[k]);
    }
    assert_int_equal(reel_redisq_record_part(q, &m[0], gone), REEL_REDISQ_PART_RECORDED);
    assert_int_equal(reel_redisq_record_part(q, &m[1], "pu/temp/multi_clip_rr/part_1_a1.nut"),
                     REEL_REDISQ_PART_LAST);
    assert_int_equal(reel_redisq_read(q, "t4", "c2", 0, &asm1), 1);
    assert_string_equal(asm1.mode, "assemble");
    assert_int_equal(reel_redisq_begin(q, &asm1, "c2", 3, &attempt, owner), REEL_REDISQ_RUN);
    /* only an assemble task may ask, for a part that exists */
    assert_true(reel_redisq_rerender_part(q, &m[0], 0, gone, 2) < 0);
    assert_true(reel_redisq_rerender_part(q, &asm1, 2, gone, 2) < 0);
    /* the loss of part 0: queued once; a second assembler that saw it finds it stale */
    assert_int_equal(reel_redisq_rerender_part(q, &asm1, 0, gone, 2), REEL_REDISQ_RERENDER_QUEUED);
    assert_int_equal(reel_redisq_rerender_part(q, &asm1, 0, gone, 2), REEL_REDISQ_RERENDER_STALE);
    reel_redisq_ack(q, &asm1);
    assert_int_equal(reel_redisq_get_parts(q, &asm1, &keys), REEL_ERR(ENOENT));
    /* the part entry again, with its attempts from 1 */
    assert_int_equal(reel_redisq_read(q, "t4", "c3", 0, &again), 1);
    assert_string_equal(again.mode, "part");
    assert_int_equal(again.part, 0);
    assert_int_equal(again.parts, 2);
    assert_string_equal(again.project_name, "Proj");
    assert_int_equal(reel_redisq_read(q, "t4", "c3", 0, &none), 0);
    assert_int_equal(reel_redisq_begin(q, &again, "c3", 3, &attempt, owner), REEL_REDISQ_RUN);
    assert_int_equal(attempt, 1);
    assert_int_equal(reel_redisq_record_part(q, &again, "pu/temp/multi_clip_rr/part_0_a2.nut"),
                     REEL_REDISQ_PART_LAST);
    reel_redisq_ack(q, &again);
    /* a new assembly, which finds the new key */
    assert_int_equal(reel_redisq_read(q, "t4", "c2", 0, &asm2), 1);
    assert_string_equal(asm2.mode, "assemble");
    assert_int_equal(reel_redisq_begin(q, &asm2, "c2", 3, &attempt, owner), REEL_REDISQ_RUN);
    assert_int_equal(attempt, 1);
    assert_int_equal(reel_redisq_get_parts(q, &asm2, &keys), 0);
    assert_string_equal(keys[0], "pu/temp/multi_clip_rr/part_0_a2.nut");
    for (int k = 0; k < 2; k++)
        free(keys[k]);
    free(keys);
    /* gone again, and again: the second time is past a limit of 1 */
    assert_int_equal(
        reel_redisq_rerender_part(q, &asm2, 0, "pu/temp/multi_clip_rr/part_0_a2.nut", 1),
        REEL_REDISQ_RERENDER_LIMIT);
    assert_int_equal(reel_redisq_publish_result(q, "pu", "rr", &res), 1);
    assert_int_equal(
        reel_redisq_rerender_part(q, &asm2, 0, "pu/temp/multi_clip_rr/part_0_a2.nut", 5),
        REEL_REDISQ_RERENDER_SETTLED);
    reel_redisq_ack(q, &asm2);
    for (int k = 0; k < 2; k++)
        reel_redisq_msg_uninit(&m[k]);
    reel_redisq_msg_uninit(&asm1);
    reel_redisq_msg_uninit(&again);
    reel_redisq_msg_uninit(&asm2);
    reel_redisq_close(&q);
}

/*
 * Parallel mode across a Redis crash (SIGKILL, AOF on): the recorded parts
 * and parts_done survive, the running part's entry is reclaimable, and
 * recording the last part after the restart adds the one assemble entry.
 */
static void test_parallel_aof_restart(void **state)
{
    TestRedis aof = {0};
    char err[REEL_ERRMSG_SIZE], owner[REEL_REDISQ_NAME_MAX + 16];
    ReelRedisq *q = NULL;
    ReelRedisqMsg m[3], back, asm_msg;
    char **keys = NULL;
    int attempt;
    (void)state;

    assert_int_equal(redis_start(&aof, 1), 0);
    assert_int_equal(reel_redisq_open(&q, aof.url, 3000, err), 0);
    enqueue_parallel(q, "crash", 3);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(reel_redisq_read(q, "t4", "w", 0, &m[k]), 1);
        assert_int_equal(reel_redisq_begin(q, &m[k], "w", 3, &attempt, owner), REEL_REDISQ_RUN);
    }
    for (int k = 0; k < 2; k++) {
        char key[64];
        snprintf(key, sizeof(key), "pu/temp/multi_clip_crash/part_%d_a1.nut", k);
        assert_int_equal(reel_redisq_record_part(q, &m[k], key), REEL_REDISQ_PART_RECORDED);
        assert_int_equal(reel_redisq_ack(q, &m[k]), 0);
    }

    redis_stop(&aof); /* SIGKILL: no clean shutdown */
    assert_true(reel_redisq_pending(q, "t4") < 0);
    assert_int_equal(redis_start(&aof, 1), 0);

    /* part 2's entry is still pending, parts 0 and 1 still recorded */
    assert_int_equal(RETRY((int)reel_redisq_pending(q, "t4")), 1);
    assert_int_equal(RETRY(reel_redisq_autoclaim(q, "t4", "w2", 0, &back)), 1);
    assert_int_equal(back.part, 2);
    assert_int_equal(reel_redisq_record_part(q, &m[0], "pu/temp/multi_clip_crash/part_0_a2.nut"),
                     REEL_REDISQ_PART_DUPLICATE);
    assert_int_equal(reel_redisq_begin(q, &back, "w2", 3, &attempt, owner), REEL_REDISQ_RUN);
    assert_int_equal(attempt, 2);
    assert_int_equal(reel_redisq_read(q, "t4", "w2", 0, &asm_msg), 0); /* no assembly yet */
    assert_int_equal(reel_redisq_record_part(q, &back, "pu/temp/multi_clip_crash/part_2_a2.nut"),
                     REEL_REDISQ_PART_LAST);
    reel_redisq_ack(q, &back);
    assert_int_equal(reel_redisq_read(q, "t4", "w2", 0, &asm_msg), 1);
    assert_string_equal(asm_msg.mode, "assemble");
    assert_int_equal(reel_redisq_get_parts(q, &asm_msg, &keys), 0);
    assert_string_equal(keys[0], "pu/temp/multi_clip_crash/part_0_a1.nut");
    assert_string_equal(keys[1], "pu/temp/multi_clip_crash/part_1_a1.nut");
    assert_string_equal(keys[2], "pu/temp/multi_clip_crash/part_2_a2.nut");
    for (int k = 0; k < 3; k++)
        free(keys[k]);
    free(keys);
    reel_redisq_ack(q, &asm_msg);
    assert_int_equal(reel_redisq_read(q, "t4", "w2", 0, &asm_msg), 0); /* only one */
    for (int k = 0; k < 3; k++)
        reel_redisq_msg_uninit(&m[k]);
    reel_redisq_msg_uninit(&back);
    reel_redisq_msg_uninit(&asm_msg);
    reel_redisq_close(&q);
    redis_remove(&aof);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url),
        cmocka_unit_test(test_enqueue_consume_ack),
        cmocka_unit_test(test_reclaim_after_idle),
        cmocka_unit_test(test_attempts_bounded),
        cmocka_unit_test(test_exactly_one_result),
        cmocka_unit_test(test_class_isolation),
        cmocka_unit_test(test_aof_restart),
        cmocka_unit_test(test_parallel_assemble_once),
        cmocka_unit_test(test_parallel_progress_and_cancel),
        cmocka_unit_test(test_parallel_part_gives_up),
        cmocka_unit_test(test_parallel_rerender_part),
        cmocka_unit_test(test_parallel_aof_restart),
    };
    signal(SIGPIPE, SIG_IGN);
    reel_log_set_level(REEL_LOG_QUIET);
    return cmocka_run_group_tests(tests, setup, teardown);
}
