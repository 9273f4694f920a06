/*
 * upscale_bench.c - time the upscaler alone, in process: model load, one
 * warm-up frame (the first frame of a size builds the backend's kernels), then
 * `runs` frames of H x W (a deterministic pattern) through reel_upscale_run.
 * Prints one JSON line: load_s, first_s (the warm-up frame), prepare_s (first_s
 * minus the median frame: what a new frame size costs once), run_s (each
 * timed frame), the effective precision. With --load-only it exits right after
 * the model is loaded (bench/run.py times that whole process for the start-up
 * figure). Tests never run this; bench/run.py does.
 *
 * With --lanes N > 1 the upscaler is opened with N lanes (threads shared out)
 * and N threads each upscale `runs` frames on their own lane at once, after a
 * warm-up frame each: the JSON line then gives the throughput, s_per_frame =
 * the wall time of those N * runs frames / (N * runs).
 *
 * usage: upscale_bench [--model x4fast|x4plus] [--size HxW] [--runs N]
 *                      [--tile N] [--threads N] [--lanes N] [--precision fp32|bf16]
 *                      [--models DIR] [--load-only]
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "upscale/upscale.h"

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int int_arg(const char *name, const char *v, int lo, int hi, int *out)
{
    char *end;
    long n;

    errno = 0;
    n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi) {
        fprintf(stderr, "upscale_bench: %s '%s' is not in %d..%d\n", name, v, lo, hi);
        return -1;
    }
    *out = (int)n;
    return 0;
}

/* --lanes: one thread per lane, all starting their timed frames together */
typedef struct LaneRun {
    ReelUpscaler *up;
    int lane, H, W, runs, failed;
    const uint8_t *in;
    uint8_t *out;
    pthread_barrier_t *ready, *done;
} LaneRun;

static void *lane_main(void *arg)
{
    LaneRun *l = arg;
    int s = reel_upscale_scale(l->up);

    for (int r = -1; r < l->runs && !l->failed; r++) {
        if (reel_upscale_run_lane(l->up, l->lane, l->in, l->W, l->H, (ptrdiff_t)l->W * 3, l->out,
                                  (ptrdiff_t)l->W * 3 * s) < 0) {
            fprintf(stderr, "upscale_bench: lane %d: %s\n", l->lane,
                    reel_upscale_lane_errmsg(l->up, l->lane));
            l->failed = 1;
        }
        if (r < 0) /* warm-up done: wait for the others, then the timed frames */
            pthread_barrier_wait(l->ready);
    }
    pthread_barrier_wait(l->done);
    return NULL;
}

static int run_lanes(ReelUpscaler *up, int lanes, int H, int W, int runs, const uint8_t *in,
                     double load_s, const char *model)
{
    LaneRun l[REEL_UPSCALE_MAX_LANES];
    pthread_t tid[REEL_UPSCALE_MAX_LANES];
    pthread_barrier_t ready, done;
    int s = reel_upscale_scale(up), started = 0, failed = 0;
    double t0, t1, t2;

    pthread_barrier_init(&ready, NULL, (unsigned)lanes + 1);
    pthread_barrier_init(&done, NULL, (unsigned)lanes + 1);
    t0 = now();
    for (int i = 0; i < lanes; i++) {
        l[i] = (LaneRun){.up = up, .lane = i, .H = H, .W = W, .runs = runs, .in = in,
                         .ready = &ready, .done = &done};
        if (!(l[i].out = malloc((size_t)H * W * 3 * s * s)) ||
            pthread_create(&tid[i], NULL, lane_main, &l[i]) != 0) {
            fprintf(stderr, "upscale_bench: cannot start lane %d\n", i);
            exit(1); /* the started lanes wait on a barrier that can no longer complete */
        }
        started++;
    }
    pthread_barrier_wait(&ready);
    t1 = now();
    pthread_barrier_wait(&done);
    t2 = now();
    for (int i = 0; i < started; i++) {
        pthread_join(tid[i], NULL);
        failed |= l[i].failed;
        free(l[i].out);
    }
    pthread_barrier_destroy(&ready);
    pthread_barrier_destroy(&done);
    if (failed)
        return 1;
    printf("{\"model\":\"%s\",\"h\":%d,\"w\":%d,\"lanes\":%d,\"precision\":\"%s\","
           "\"load_s\":%.6f,\"first_s\":%.6f,\"frames\":%d,\"wall_s\":%.6f,"
           "\"s_per_frame\":%.6f}\n",
           model, H, W, lanes, reel_upscale_precision_name(reel_upscale_precision(up)), load_s,
           t1 - t0, lanes * runs, t2 - t1, (t2 - t1) / (lanes * runs));
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    ReelUpscaleOptions opt = {0};
    char err[REEL_ERRMSG_SIZE] = "";
    ReelUpscaler *up = NULL;
    int H = 270, W = 480, runs = 3, load_only = 0, ret = 1;
    uint8_t *in = NULL, *out = NULL;
    double *t = NULL, first_s = 0;

    opt.model = "x4fast";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (!strcmp(a, "--load-only")) {
            load_only = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "upscale_bench: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--model")) {
            opt.model = v;
        } else if (!strcmp(a, "--size")) {
            char *x = strchr(v, 'x');
            char hs[16];

            if (!x || x - v >= (ptrdiff_t)sizeof(hs)) {
                fprintf(stderr, "upscale_bench: --size wants HxW\n");
                return 2;
            }
            snprintf(hs, sizeof(hs), "%.*s", (int)(x - v), v);
            if (int_arg("--size H", hs, 1, 16384, &H) < 0 ||
                int_arg("--size W", x + 1, 1, 16384, &W) < 0)
                return 2;
        } else if (!strcmp(a, "--runs")) {
            if (int_arg(a, v, 1, 100000, &runs) < 0)
                return 2;
        } else if (!strcmp(a, "--tile")) {
            if (int_arg(a, v, -1, 16384, &opt.tile) < 0)
                return 2;
        } else if (!strcmp(a, "--threads")) {
            if (int_arg(a, v, 0, 1024, &opt.threads) < 0)
                return 2;
        } else if (!strcmp(a, "--lanes")) {
            if (int_arg(a, v, 1, REEL_UPSCALE_MAX_LANES, &opt.lanes) < 0)
                return 2;
        } else if (!strcmp(a, "--precision")) {
            if (reel_upscale_precision_parse(v, &opt.precision) < 0) {
                fprintf(stderr, "upscale_bench: --precision wants fp32 or bf16\n");
                return 2;
            }
        } else if (!strcmp(a, "--models")) {
            opt.model_dir = v;
        } else {
            fprintf(stderr, "upscale_bench: unknown option %s\n", a);
            return 2;
        }
    }
    double t0 = now();
    if (reel_upscale_open(&up, &opt, err) < 0) {
        fprintf(stderr, "upscale_bench: %s\n", err);
        return 1;
    }
    double load_s = now() - t0;
    if (load_only) {
        printf("{\"load_s\":%.6f}\n", load_s);
        reel_upscale_close(&up);
        return 0;
    }
    int s = reel_upscale_scale(up);
    in = malloc((size_t)H * W * 3);
    out = malloc((size_t)H * W * 3 * s * s);
    t = malloc(sizeof(double) * (size_t)runs);
    if (!in || !out || !t) {
        fprintf(stderr, "upscale_bench: out of memory\n");
        goto end;
    }
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++)
                in[((size_t)y * W + x) * 3 + c] = (uint8_t)((x * (c + 1) + y * 3 + (x ^ y)) & 255);
    if (opt.lanes > 1) {
        ret = run_lanes(up, reel_upscale_lanes(up), H, W, runs, in, load_s, opt.model);
        goto end;
    }
    for (int r = -1; r < runs; r++) {
        double t1 = now();

        if (reel_upscale_run(up, in, W, H, (ptrdiff_t)W * 3, out, (ptrdiff_t)W * 3 * s) < 0) {
            fprintf(stderr, "upscale_bench: %s\n", reel_upscale_errmsg(up));
            goto end;
        }
        if (r < 0)
            first_s = now() - t1;
        else
            t[r] = now() - t1;
    }
    printf("{\"model\":\"%s\",\"h\":%d,\"w\":%d,\"tile\":%d,\"precision\":\"%s\",\"load_s\":%.6f,"
           "\"first_s\":%.6f,",
           opt.model, H, W, opt.tile, reel_upscale_precision_name(reel_upscale_precision(up)),
           load_s, first_s);
    printf("\"run_s\":[");
    for (int r = 0; r < runs; r++)
        printf("%s%.6f", r ? "," : "", t[r]);
    qsort(t, (size_t)runs, sizeof(*t), cmp_double);
    double med = runs % 2 ? t[runs / 2] : (t[runs / 2 - 1] + t[runs / 2]) / 2;
    printf("],\"median_s\":%.6f,\"prepare_s\":%.6f}\n", med,
           first_s > med ? first_s - med : 0.0);
    ret = 0;
end:
    free(in);
    free(out);
    free(t);
    reel_upscale_close(&up);
    return ret;
}
