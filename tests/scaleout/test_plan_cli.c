/*
 * test_plan_cli.c - `clipreel plan` against the cost model of docs/planner.md,
 * computed here independently: cold start 7 s, model load 4 s, T4 750/900 s per
 * upscaled frame at $0.000164/s, L4 1.36x slower (167.1/122.7) at $0.000222/s
 * above 45 s of output, 0.5 s per storage transfer, assembly 0.004 s per reel
 * frame. Jobs: 3 x 10 s (T4) and 3 x 20 s (L4), cuts, 30 fps. Both the printed
 * table (both columns) and --json are checked.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <jansson.h>

typedef struct Expect {
    const char *gpu;
    double price;
    int containers[2], transfers[2];
    double gpu_s[2], wall_s[2], cost[2];
} Expect;

static char dir[1024];

/* The seed's cost model for n clips of secs seconds each, joined with cuts. */
static void model(int n, double secs, Expect *e)
{
    const double cold = 7, load = 4, transfer = 0.5, assemble_spf = 0.004, fps = 30;
    const double t4_spf = 750.0 / 900.0, l4_spf = t4_spf * 167.1 / 122.7;
    double clip_frames = secs * fps, reel_frames = n * clip_frames;
    int l4 = n * secs > 45;
    double spf = l4 ? l4_spf : t4_spf, task, assemble;

    e->gpu = l4 ? "l4" : "t4";
    e->price = l4 ? 0.000222 : 0.000164;
    e->containers[0] = 1;
    e->containers[1] = n + 1;
    e->transfers[0] = n + 1;         /* every source down, the reel up */
    e->transfers[1] = 2 * n + n + 1; /* per clip: source down, part up; assembly: parts
                                        down, reel up */
    e->gpu_s[0] = e->wall_s[0] = cold + load + reel_frames * spf + e->transfers[0] * transfer;
    task = cold + load + clip_frames * spf + 2 * transfer;
    assemble = cold + reel_frames * assemble_spf + (n + 1) * transfer;
    e->gpu_s[1] = n * task + assemble;
    e->wall_s[1] = task + assemble;
    e->cost[0] = e->gpu_s[0] * e->price;
    e->cost[1] = e->gpu_s[1] * e->price;
}

static void write_job(const char *path, int n, double secs)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"clips\":[");
    for (int i = 0; i < n; i++)
        fprintf(f,
                "%s{\"source\":\"clip%d.mp4\",\"clipIndex\":%d,\"duration\":%g,"
                "\"trimRange\":{\"start\":0,\"end\":%g}}",
                i ? "," : "", i, i, secs, secs);
    fprintf(f, "],\"globalAspectRatio\":\"16:9\"}\n");
    fclose(f);
}

static char *run(const char *args)
{
    char cmd[2048], *out = calloc(1, 16384);
    size_t n;
    FILE *p;
    snprintf(cmd, sizeof(cmd), "'%s' plan %s", CLIPREEL_BIN, args);
    assert_non_null(out);
    assert_non_null(p = popen(cmd, "r"));
    n = fread(out, 1, 16383, p);
    out[n] = 0;
    assert_int_equal(pclose(p), 0);
    return out;
}

/* The two numbers after a row's label in the table. */
static void row(const char *text, const char *label, double *a, double *b)
{
    const char *p = strstr(text, label);
    char *end;
    if (!p)
        fail_msg("no row '%s' in:\n%s", label, text);
    p += strlen(label);
    while (*p == ' ' || *p == '$')
        p++;
    *a = strtod(p, &end);
    p = end;
    while (*p == ' ' || *p == '$')
        p++;
    *b = strtod(p, &end);
    assert_true(end > p);
}

static void check(int n, double secs)
{
    char job[1100], args[1200], label[64];
    char *text, *json;
    json_t *o;
    Expect e;
    double a, b;
    const char *cols[2] = {"single", "per_clip"};

    model(n, secs, &e);
    snprintf(job, sizeof(job), "%s/plan_%dx%g.json", dir, n, secs);
    write_job(job, n, secs);

    snprintf(args, sizeof(args), "'%s'", job);
    text = run(args);
    print_message("%s", text);
    assert_non_null(strstr(text, "single container"));
    assert_non_null(strstr(text, "per-clip containers"));
    row(text, "\ncontainers", &a, &b);
    assert_true(a == e.containers[0] && b == e.containers[1]);
    row(text, "storage transfers", &a, &b);
    assert_true(a == e.transfers[0] && b == e.transfers[1]);
    row(text, "GPU seconds", &a, &b);
    assert_true(fabs(a - e.gpu_s[0]) <= 0.051 && fabs(b - e.gpu_s[1]) <= 0.051);
    row(text, "wall seconds", &a, &b);
    assert_true(fabs(a - e.wall_s[0]) <= 0.051 && fabs(b - e.wall_s[1]) <= 0.051);
    snprintf(label, sizeof(label), "cost (%s at $%.6f/s)", e.gpu, e.price);
    row(text, label, &a, &b);
    assert_true(fabs(a - e.cost[0]) <= 0.00005 && fabs(b - e.cost[1]) <= 0.00005);
    free(text);

    snprintf(args, sizeof(args), "--json '%s'", job);
    json = run(args);
    assert_non_null(o = json_loads(json, 0, NULL));
    assert_string_equal(json_string_value(json_object_get(o, "gpu_class")), e.gpu);
    assert_false(json_is_true(json_object_get(o, "parallel"))); /* 3 clips <= 5 */
    for (int k = 0; k < 2; k++) {
        json_t *c = json_object_get(o, cols[k]);
        assert_int_equal(json_integer_value(json_object_get(c, "containers")), e.containers[k]);
        assert_int_equal(json_integer_value(json_object_get(c, "transfers")), e.transfers[k]);
        assert_true(fabs(json_number_value(json_object_get(c, "gpu_s")) - e.gpu_s[k]) < 0.001);
        assert_true(fabs(json_number_value(json_object_get(c, "wall_s")) - e.wall_s[k]) < 0.001);
        assert_true(fabs(json_number_value(json_object_get(c, "cost")) - e.cost[k]) < 0.000001);
    }
    json_decref(o);
    free(json);
}

static void test_plan_3x10_t4(void **state)
{
    (void)state;
    check(3, 10);
}

static void test_plan_3x20_l4(void **state)
{
    (void)state;
    check(3, 20);
}

int main(void)
{
    const char *d = getenv("REEL_TEST_DATA");
    snprintf(dir, sizeof(dir), "%s", d ? d : "plan-data");
    mkdir(dir, 0755);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_3x10_t4),
        cmocka_unit_test(test_plan_3x20_l4),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
