/*
 * upscale_bench.c - time the upscaler alone, in process: model load, then
 * `runs` frames of H x W (a deterministic pattern) through reel_upscale_run.
 * Prints one JSON line: load_s, per-frame seconds (each run), network GFLOP/s.
 * With --load-only it exits right after the model is ready (bench/run.py times
 * that whole process for the start-up figure).
 *
 * usage: upscale_bench [--model x4fast|x4plus] [--size HxW] [--runs N]
 *                      [--tile N] [--threads N] [--models DIR] [--load-only]
 */
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

int main(int argc, char **argv)
{
    ReelUpscaleOptions opt = {0};
    char err[REEL_ERRMSG_SIZE] = "";
    ReelUpscaler *up = NULL;
    int H = 270, W = 480, runs = 3, load_only = 0;

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
        if (!strcmp(a, "--model"))
            opt.model = v;
        else if (!strcmp(a, "--size") && sscanf(v, "%dx%d", &H, &W) == 2)
            ;
        else if (!strcmp(a, "--runs"))
            runs = (int)strtol(v, NULL, 10);
        else if (!strcmp(a, "--tile"))
            opt.tile = (int)strtol(v, NULL, 10);
        else if (!strcmp(a, "--threads"))
            opt.threads = (int)strtol(v, NULL, 10);
        else if (!strcmp(a, "--models"))
            opt.model_dir = v;
        else {
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
    uint8_t *in = malloc((size_t)H * W * 3), *out = malloc((size_t)H * W * 3 * s * s);
    if (!in || !out)
        return 1;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++)
                in[((size_t)y * W + x) * 3 + c] = (uint8_t)((x * (c + 1) + y * 3 + (x ^ y)) & 255);
    printf("{\"model\":\"%s\",\"h\":%d,\"w\":%d,\"tile\":%d,\"load_s\":%.6f,\"run_s\":[", opt.model,
           H, W, opt.tile, load_s);
    for (int r = 0; r < runs; r++) {
        double t = now();
        if (reel_upscale_run(up, in, W, H, (ptrdiff_t)W * 3, out, (ptrdiff_t)W * 3 * s) < 0) {
            fprintf(stderr, "upscale_bench: %s\n", reel_upscale_errmsg(up));
            return 1;
        }
        printf("%s%.6f", r ? "," : "", now() - t);
        fflush(stdout);
    }
    printf("]}\n");
    free(in);
    free(out);
    reel_upscale_close(&up);
    return 0;
}
