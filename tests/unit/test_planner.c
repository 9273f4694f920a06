/*
 * test_planner.c - the single/parallel decision, the GPU class and the cost
 * model's numbers, checked by hand against the model in planner.h.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/job.h"
#include "core/log.h"
#include "jobs/planner.h"

static ReelJob *clips_of(int n, double seconds)
{
    char json[8192], err[REEL_ERRMSG_SIZE];
    size_t off = 0;
    ReelJob *job = NULL;
    off += (size_t)snprintf(json + off, sizeof(json) - off, "{\"clips\":[");
    for (int i = 0; i < n; i++)
        off += (size_t)snprintf(json + off, sizeof(json) - off, "%s{\"duration\":%g}",
                                i ? "," : "", seconds);
    snprintf(json + off, sizeof(json) - off, "]}");
    if (reel_job_parse(&job, json, NULL, NULL, err) < 0)
        fail_msg("%s", err);
    return job;
}

static void test_three_by_ten(void **state)
{
    ReelPlanConfig cfg;
    ReelPlan plan;
    char err[REEL_ERRMSG_SIZE];
    ReelJob *job = clips_of(3, 10);
    reel_plan_config_default(&cfg);
    assert_int_equal(reel_plan_make(job, &cfg, &plan, err), 0);
    assert_int_equal(plan.frames, 900);
    assert_int_equal(plan.parallel, 0);
    assert_string_equal(plan.gpu->name, "t4"); /* 30 s <= 45 s */
    double spf = 750.0 / 900.0;
    /* single: 7 + 4 + 900 spf + (3 + 1) transfers */
    assert_true(fabs(plan.single.gpu_s - (11 + 750 + 4 * 0.5)) < 1e-9);
    assert_int_equal(plan.single.transfers, 4);
    assert_true(fabs(plan.single.cost - plan.single.gpu_s * 0.000164) < 1e-12);
    /* per clip: 3 x (11 + 300 spf + 2 x 0.5) + assemble (7 + 900 x 0.004 + 4 x 0.5) */
    double task = 11 + 300 * spf + 1.0, assemble = 7 + 3.6 + 2.0;
    assert_true(fabs(plan.per_clip.gpu_s - (3 * task + assemble)) < 1e-9);
    assert_true(fabs(plan.per_clip.wall_s - (task + assemble)) < 1e-9);
    assert_int_equal(plan.per_clip.containers, 4);
    assert_int_equal(plan.per_clip.transfers, 10);
    reel_job_free(&job);
}

static void test_parallel_and_class(void **state)
{
    ReelPlanConfig cfg;
    ReelPlan plan;
    char err[REEL_ERRMSG_SIZE];
    reel_plan_config_default(&cfg);
    /* 6 clips x 31 s = 186 s > 180 s and 6 > 5: parallel on L4 */
    ReelJob *job = clips_of(6, 31);
    assert_int_equal(reel_plan_make(job, &cfg, &plan, err), 0);
    assert_int_equal(plan.parallel, 1);
    assert_string_equal(plan.gpu->name, "l4");
    reel_job_free(&job);
    /* 6 clips x 29 s = 174 s: single (short enough) */
    job = clips_of(6, 29);
    assert_int_equal(reel_plan_make(job, &cfg, &plan, err), 0);
    assert_int_equal(plan.parallel, 0);
    reel_job_free(&job);
    /* 5 clips x 60 s: single (few enough clips) */
    job = clips_of(5, 60);
    assert_int_equal(reel_plan_make(job, &cfg, &plan, err), 0);
    assert_int_equal(plan.parallel, 0);
    reel_job_free(&job);
    /* exactly 45 s stays on T4; above goes to L4 */
    job = clips_of(1, 45);
    assert_int_equal(reel_plan_make(job, &cfg, &plan, err), 0);
    assert_string_equal(plan.gpu->name, "t4");
    reel_job_free(&job);
    job = clips_of(1, 45.1);
    assert_int_equal(reel_plan_make(job, &cfg, &plan, err), 0);
    assert_string_equal(plan.gpu->name, "l4");
    reel_job_free(&job);
    /* configurable: a lower clip limit makes 3 x 70 s parallel */
    cfg.single_max_clips = 2;
    job = clips_of(3, 70);
    assert_int_equal(reel_plan_make(job, &cfg, &plan, err), 0);
    assert_int_equal(plan.parallel, 1);
    reel_job_free(&job);
}

static void test_unresolved(void **state)
{
    ReelPlanConfig cfg;
    ReelPlan plan;
    char err[REEL_ERRMSG_SIZE];
    ReelJob *job = NULL;
    reel_plan_config_default(&cfg);
    assert_int_equal(reel_job_parse(&job, "{\"clips\":[{\"source\":\"x.mp4\"}]}", NULL, NULL, err),
                     0);
    assert_int_equal(reel_plan_make(job, &cfg, &plan, err), REEL_ERROR_INVALID_JOB);
    assert_non_null(strstr(err, "clips[0]: duration unknown"));
    reel_job_free(&job);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_by_ten),
        cmocka_unit_test(test_parallel_and_class),
        cmocka_unit_test(test_unresolved),
    };
    reel_log_set_level(REEL_LOG_QUIET);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
