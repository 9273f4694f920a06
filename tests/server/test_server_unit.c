/*
 * test_server_unit.c - the service's pure parts: settings (table, file, environment,
 * precedence, cross-checks, tokens), id validation, and the SQLite job store's state
 * machine and persistence. The HTTP/WebSocket behaviour is tested end to end by the
 * node scripts of this folder against the real binary.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/log.h"
#include "jobs/jobstore.h"
#include "server/config.h"

static char scratch[1024] = "/tmp/clipreel-server-unit";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_config_defaults_and_set(void **state)
{
    ReelServerConfig cfg;
    char err[REEL_ERRMSG_SIZE];

    (void)state;
    reel_server_config_init(&cfg);
    assert_string_equal(cfg.listen, "127.0.0.1");
    assert_int_equal(cfg.port, 8000);
    assert_int_equal(cfg.workers, 1);
    assert_int_equal(cfg.queue, 16);
    assert_int_equal(cfg.upscale, -1);
    assert_int_equal(reel_server_config_set(&cfg, "port", "9000", err), 0);
    assert_int_equal(cfg.port, 9000);
    assert_true(reel_server_config_set(&cfg, "port", "70000", err) < 0);
    assert_non_null(strstr(err, "port"));
    assert_true(reel_server_config_set(&cfg, "workers", "0", err) < 0);
    assert_true(reel_server_config_set(&cfg, "workers", "2x", err) < 0);
    assert_true(reel_server_config_set(&cfg, "nonsense", "1", err) < 0);
    assert_non_null(strstr(err, "unknown setting"));
    assert_int_equal(reel_server_config_set(&cfg, "limits.max_upload", "1.5G", err), 0);
    assert_true(cfg.max_upload == (int64_t)(1.5 * 1024 * 1024 * 1024));
    assert_int_equal(reel_server_config_set(&cfg, "limits.max_upload", "200K", err), 0);
    assert_true(cfg.max_upload == 200 * 1024);
    assert_true(reel_server_config_set(&cfg, "limits.max_upload", "-1", err) < 0);
    assert_int_equal(reel_server_config_set(&cfg, "on_restart", "fail", err), 0);
    assert_int_equal(cfg.on_restart, REEL_RESTART_FAIL);
    assert_true(reel_server_config_set(&cfg, "on_restart", "maybe", err) < 0);
    assert_int_equal(reel_server_config_set(&cfg, "upscale", "off", err), 0);
    assert_int_equal(cfg.upscale, REEL_UPSCALE_OFF);
    assert_int_equal(reel_server_config_set(&cfg, "auth", "off", err), 0);
    assert_int_equal(cfg.auth, 0);
    assert_true(reel_server_config_set(&cfg, "auth", "perhaps", err) < 0);
    assert_string_equal(reel_server_config_flag("--max-upload"), "limits.max_upload");
    assert_string_equal(reel_server_config_flag("--on-restart"), "on_restart");
    assert_int_equal(cfg.engine_lanes, 0); /* one lane per thread, at most 4 */
    assert_int_equal(reel_server_config_set(&cfg, "engine_lanes", "1", err), 0);
    assert_int_equal(cfg.engine_lanes, 1);
    assert_true(reel_server_config_set(&cfg, "engine_lanes", "65", err) < 0);
    assert_non_null(strstr(err, "engine_lanes"));
    assert_string_equal(reel_server_config_flag("--engine-lanes"), "engine_lanes");
    assert_null(reel_server_config_flag("--s3-secret"));
}

static void test_config_file_env_flags(void **state)
{
    ReelServerConfig cfg;
    char err[REEL_ERRMSG_SIZE], path[1100];

    (void)state;
    snprintf(path, sizeof(path), "%s/config.json", scratch);
    write_file(path, "{\"port\": 8100, \"workers\": 3, \"data\": \"/srv/x\","
                     " \"limits\": {\"max_upload\": \"10M\", \"max_clips\": 7},"
                     " \"storage\": {\"kind\": \"s3\", \"endpoint\": \"http://127.0.0.1:4569\","
                     " \"bucket\": \"b\", \"region\": \"auto\", \"access_key\": \"K\","
                     " \"secret_key\": \"S\"},"
                     " \"tokens\": {\"token-for-alice\": \"alice\"}}");
    reel_server_config_init(&cfg);
    assert_int_equal(reel_server_config_load_file(&cfg, path, err), 0);
    assert_int_equal(cfg.port, 8100);
    assert_int_equal(cfg.workers, 3);
    assert_int_equal(cfg.limits.max_clips, 7);
    assert_true(cfg.max_upload == 10 << 20);
    assert_string_equal(cfg.storage_kind, "s3");
    assert_string_equal(cfg.s3_bucket, "b");
    assert_string_equal(cfg.s3_secret_key, "S");
    assert_int_equal(cfg.nb_tokens, 1);

    /* environment over the file, flags (set) over the environment */
    setenv("CLIPREEL_PORT", "8200", 1);
    setenv("CLIPREEL_WORKERS", "4", 1);
    setenv("CLIPREEL_TOKENS", "token-for-bob1=bob,token-for-carol=carol", 1);
    assert_int_equal(reel_server_config_load_env(&cfg, err), 0);
    unsetenv("CLIPREEL_PORT");
    unsetenv("CLIPREEL_WORKERS");
    unsetenv("CLIPREEL_TOKENS");
    assert_int_equal(cfg.port, 8200);
    assert_int_equal(cfg.workers, 4);
    assert_int_equal(cfg.nb_tokens, 3);
    assert_int_equal(reel_server_config_set(&cfg, "port", "8300", err), 0);
    assert_int_equal(cfg.port, 8300);

    assert_int_equal(reel_server_config_finish(&cfg, err), 0);
    assert_int_equal(cfg.auth, 1); /* tokens configured: on by default */
    assert_string_equal(reel_server_config_user_for_token(&cfg, "token-for-alice"), "alice");
    assert_string_equal(reel_server_config_user_for_token(&cfg, "token-for-carol"), "carol");
    assert_null(reel_server_config_user_for_token(&cfg, "token-for-alic"));
    assert_null(reel_server_config_user_for_token(&cfg, ""));

    /* unknown keys and bad values in the file are errors naming them */
    write_file(path, "{\"storage\": {\"bukket\": \"b\"}}");
    reel_server_config_init(&cfg);
    assert_true(reel_server_config_load_file(&cfg, path, err) < 0);
    assert_non_null(strstr(err, "storage.bukket"));
    write_file(path, "{\"workers\": \"many\"}");
    assert_true(reel_server_config_load_file(&cfg, path, err) < 0);
    assert_non_null(strstr(err, "workers"));
    write_file(path, "{\"tokens\": {\"short\": \"alice\"}}");
    assert_true(reel_server_config_load_file(&cfg, path, err) < 0);
    write_file(path, "{\"tokens\": {\"long-enough-token\": \"../alice\"}}");
    assert_true(reel_server_config_load_file(&cfg, path, err) < 0);
    write_file(path, "{\"port\": 1,");
    assert_true(reel_server_config_load_file(&cfg, path, err) < 0);
    assert_non_null(strstr(err, "line"));
}

static void test_config_finish_checks(void **state)
{
    ReelServerConfig cfg;
    char err[REEL_ERRMSG_SIZE];

    (void)state;
    reel_server_config_init(&cfg);
    assert_int_equal(reel_server_config_finish(&cfg, err), 0);
    assert_int_equal(cfg.auth, 0); /* no tokens, loopback: development mode */
    assert_string_equal(cfg.storage_root, "data/objects");
    assert_true(cfg.max_source == cfg.max_upload);

    reel_server_config_init(&cfg);
    reel_server_config_set(&cfg, "listen", "0.0.0.0", err);
    assert_true(reel_server_config_finish(&cfg, err) < 0);
    assert_non_null(strstr(err, "loopback"));

    reel_server_config_init(&cfg);
    reel_server_config_set(&cfg, "auth", "on", err);
    assert_true(reel_server_config_finish(&cfg, err) < 0);
    assert_non_null(strstr(err, "tokens"));

    reel_server_config_init(&cfg);
    reel_server_config_set(&cfg, "listen", "::1", err);
    assert_true(reel_server_config_finish(&cfg, err) < 0);

    reel_server_config_init(&cfg);
    reel_server_config_set(&cfg, "storage.kind", "s3", err);
    assert_true(reel_server_config_finish(&cfg, err) < 0);
    assert_non_null(strstr(err, "endpoint"));
}

static void test_id_valid(void **state)
{
    static const char *const good[] = {"a", "export_1732460000000_k3j9x2a", "A-b.c_9", "7"};
    static const char *const bad[] = {"",     "..",   ".",   ".hidden", "a/b", "a\\b",
                                      "a..b", "../x", "a b", "a%2f",    "é",   "x\n"};
    char longid[200];

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(reel_server_id_valid(good[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(reel_server_id_valid(bad[i]));
    assert_false(reel_server_id_valid(NULL));
    memset(longid, 'x', 128);
    longid[128] = 0;
    assert_true(reel_server_id_valid(longid));
    longid[128] = 'x';
    longid[129] = 0;
    assert_false(reel_server_id_valid(longid));
}

typedef struct Collected {
    int n;
    char ids[16][REEL_ID_MAX + 1];
} Collected;

static int collect(void *opaque, const ReelExportRecord *rec)
{
    Collected *c = opaque;
    if (c->n < 16)
        snprintf(c->ids[c->n++], REEL_ID_MAX + 1, "%s", rec->export_id);
    return 0;
}

static void test_jobstore(void **state)
{
    ReelJobStore *js = NULL;
    ReelExportRecord rec;
    Collected c;
    char path[1100], err[REEL_ERRMSG_SIZE];

    (void)state;
    snprintf(path, sizeof(path), "%s/jobs.db", scratch);
    unlink(path);
    assert_int_equal(reel_jobstore_open(&js, path, err), 0);

    assert_int_equal(reel_jobstore_claim(js, "a", "e1", "7", "Reel", "multi_clip"), 0);
    assert_int_equal(reel_jobstore_claim(js, "a", "e1", "7", "Reel", "multi_clip"),
                     REEL_ERR(EEXIST));
    assert_int_equal(reel_jobstore_claim(js, "b", "e1", NULL, NULL, NULL), 0); /* other user */
    assert_int_equal(reel_jobstore_get(js, "a", "e1", &rec, 0), 0);
    assert_int_equal(rec.status, REEL_EXPORT_RECEIVING);
    assert_string_equal(reel_export_status_name(rec.status), "pending");
    assert_string_equal(rec.project_id, "7");
    assert_true(rec.created_ms > 0);
    assert_int_equal(reel_jobstore_get(js, "a", "nope", &rec, 0), REEL_ERR(ENOENT));

    /* receiving -> pending -> processing -> complete */
    assert_int_equal(reel_jobstore_mark_processing(js, "a", "e1"), REEL_ERR(ENOENT));
    assert_int_equal(reel_jobstore_set_pending(js, "a", "e1", "{\"clips\":[]}",
                                               "[{\"clip\":0,\"key\":\"a/temp/x\"}]"),
                     0);
    assert_int_equal(reel_jobstore_set_pending(js, "a", "e1", "{}", "[]"), REEL_ERR(ENOENT));
    assert_int_equal(reel_jobstore_mark_processing(js, "a", "e1"), 0);
    assert_int_equal(reel_jobstore_update_progress(js, "a", "e1", "encoding", 42.5), 0);
    assert_int_equal(reel_jobstore_get(js, "a", "e1", &rec, REEL_JOBSTORE_WITH_JSON), 0);
    assert_int_equal(rec.status, REEL_EXPORT_PROCESSING);
    assert_int_equal(rec.attempts, 1);
    assert_string_equal(rec.phase, "encoding");
    assert_true(rec.progress == 42.5);
    assert_true(rec.started_ms > 0);
    assert_string_equal(rec.job_json, "{\"clips\":[]}");
    assert_non_null(strstr(rec.sources_json, "a/temp/x"));
    reel_jobstore_record_uninit(&rec);

    /* active list: only non-terminal rows of that user */
    memset(&c, 0, sizeof(c));
    assert_int_equal(reel_jobstore_list(js, "a",
                                        (1u << REEL_EXPORT_RECEIVING) |
                                            (1u << REEL_EXPORT_PENDING) |
                                            (1u << REEL_EXPORT_PROCESSING),
                                        collect, &c),
                     0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.ids[0], "e1");

    /* requeue (restart) and run again */
    assert_int_equal(reel_jobstore_requeue(js, "a", "e1"), 0);
    assert_int_equal(reel_jobstore_mark_processing(js, "a", "e1"), 0);
    assert_int_equal(reel_jobstore_finish(js, "a", "e1", REEL_EXPORT_COMPLETE, NULL,
                                          "a/working_videos/working_7_0123abcd.mp4",
                                          "a/working_videos/working_7_0123abcd.chapters.vtt"),
                     0);
    assert_int_equal(reel_jobstore_finish(js, "a", "e1", REEL_EXPORT_ERROR, "late", NULL, NULL),
                     REEL_ERR(ENOENT)); /* terminal rows stay as they are */
    assert_int_equal(reel_jobstore_finish(js, "a", "e1", REEL_EXPORT_PENDING, NULL, NULL, NULL),
                     REEL_ERR(EINVAL));
    reel_jobstore_close(&js);

    /* everything survives a reopen */
    assert_int_equal(reel_jobstore_open(&js, path, err), 0);
    assert_int_equal(reel_jobstore_get(js, "a", "e1", &rec, 0), 0);
    assert_int_equal(rec.status, REEL_EXPORT_COMPLETE);
    assert_int_equal(rec.attempts, 2);
    assert_true(rec.progress == 100);
    assert_string_equal(rec.output_filename, "working_7_0123abcd.mp4");
    assert_true(rec.completed_ms >= rec.started_ms);

    /* the repair pass finds terminal rows whose sources are not deleted yet */
    memset(&c, 0, sizeof(c));
    assert_int_equal(reel_jobstore_list_undeleted(js, collect, &c), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(reel_jobstore_set_sources_deleted(js, "a", "e1"), 0);
    memset(&c, 0, sizeof(c));
    assert_int_equal(reel_jobstore_list_undeleted(js, collect, &c), 0);
    assert_int_equal(c.n, 0);

    /* recent: newest first, by user, receiving rows hidden */
    assert_int_equal(reel_jobstore_claim(js, "a", "e2", NULL, NULL, NULL), 0);
    assert_int_equal(reel_jobstore_claim(js, "a", "e3", NULL, NULL, NULL), 0);
    assert_int_equal(reel_jobstore_set_pending(js, "a", "e3", "{}", "[]"), 0);
    memset(&c, 0, sizeof(c));
    assert_int_equal(reel_jobstore_list_recent(js, "a", 0, 10, collect, &c), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.ids[0], "e3");
    assert_string_equal(c.ids[1], "e1");
    memset(&c, 0, sizeof(c));
    assert_int_equal(reel_jobstore_list_recent(js, "a", 0, 1, collect, &c), 0);
    assert_int_equal(c.n, 1);
    memset(&c, 0, sizeof(c));
    assert_int_equal(
        reel_jobstore_list_recent(js, "a", reel_jobstore_now_ms() + 60000, 10, collect, &c), 0);
    assert_int_equal(c.n, 0);

    /* handed to the scale-out workers: processing, runner "redis"; a requeue brings it home */
    assert_int_equal(reel_jobstore_mark_remote(js, "a", "e3"), 0);
    assert_int_equal(reel_jobstore_mark_remote(js, "a", "e3"), REEL_ERR(ENOENT));
    assert_int_equal(reel_jobstore_get(js, "a", "e3", &rec, 0), 0);
    assert_int_equal(rec.status, REEL_EXPORT_PROCESSING);
    assert_string_equal(rec.runner, "redis");
    assert_int_equal(reel_jobstore_requeue(js, "a", "e3"), 0);
    assert_int_equal(reel_jobstore_get(js, "a", "e3", &rec, 0), 0);
    assert_string_equal(rec.runner, "");

    /* delete (a request that failed before its 202) */
    assert_int_equal(reel_jobstore_delete(js, "b", "e1"), 0);
    assert_int_equal(reel_jobstore_get(js, "b", "e1", &rec, 0), REEL_ERR(ENOENT));
    reel_jobstore_close(&js);
    assert_null(js);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults_and_set),
        cmocka_unit_test(test_config_file_env_flags),
        cmocka_unit_test(test_config_finish_checks),
        cmocka_unit_test(test_id_valid),
        cmocka_unit_test(test_jobstore),
    };

    if (argc > 1)
        snprintf(scratch, sizeof(scratch), "%s", argv[1]);
    mkdir(scratch, 0755);
    reel_log_set_level(REEL_LOG_QUIET);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
