/*
 * cli_upscale.c - `clipreel upscale IN.png -o OUT.png`: run the AI upscaler
 * (src/upscale) on one image. Exit status: 0 done, 1 failure (unreadable
 * input, model, compute, unwritable output), 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/error.h"
#include "core/log.h"
#include "upscale/png_io.h"
#include "upscale/upscale.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: clipreel upscale IN.png -o OUT.png [--model x4fast|x4plus] [--tile N]\n"
               "                        [--models DIR] [--threads N] [--precision fp32|bf16]\n"
               "Upscales IN.png 4x with a Real-ESRGAN model and writes OUT.png (8-bit RGB).\n"
               "  -o, --output OUT.png  where to write (required)\n"
               "  -m, --model NAME      x4fast (realesr-general-x4v3, default) or x4plus\n"
               "                        (RealESRGAN_x4plus: slower, for photos)\n"
               "  -t, --tile N          largest tile side in input pixels (default: x4fast\n"
               "                        512, x4plus 128, memory-bound);\n"
               "                        -1 runs the whole image as one tile\n"
               "  -M, --models DIR      folder with realesrgan-*.param/.bin (default\n"
               "                        $CLIPREEL_MODELS, else ./models)\n"
               "  -j, --threads N       CPU threads (default: all cores)\n"
               "  -p, --precision P     fp32 (default) or bf16: bf16 convolutions where the CPU\n"
               "                        has native bf16 (AVX-512 BF16), else fp32 with a warning;\n"
               "                        >= 40 dB PSNR from fp32 (docs/PERFORMANCE.md)\n");
}

static int parse_int_arg(const char *name, const char *text, int lo, int hi, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi) {
        fprintf(stderr, "clipreel upscale: %s '%s' is not a number in %d..%d\n", name, text, lo,
                hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int reel_cli_upscale(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},  {"model", required_argument, 0, 'm'},
        {"tile", required_argument, 0, 't'},    {"models", required_argument, 0, 'M'},
        {"threads", required_argument, 0, 'j'}, {"precision", required_argument, 0, 'p'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    ReelUpscaleOptions opt = {0};
    ReelUpscaler *up = NULL;
    char err[REEL_ERRMSG_SIZE] = "";
    const char *in_path, *out_path = NULL;
    uint8_t *rgb = NULL, *big = NULL;
    int c, w, h, s, ret = 1;
    double t0, t1;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":o:m:t:M:j:p:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            out_path = optarg;
            break;
        case 'm':
            opt.model = optarg;
            break;
        case 't':
            if (parse_int_arg("--tile", optarg, -1, 16384, &opt.tile) < 0)
                return 2;
            if (opt.tile == 0) {
                fprintf(stderr, "clipreel upscale: --tile 0 is not a size (-1 = untiled)\n");
                return 2;
            }
            break;
        case 'M':
            opt.model_dir = optarg;
            break;
        case 'j':
            if (parse_int_arg("--threads", optarg, 1, 1024, &opt.threads) < 0)
                return 2;
            break;
        case 'p':
            if (reel_upscale_precision_parse(optarg, &opt.precision) < 0) {
                fprintf(stderr, "clipreel upscale: --precision '%s' is not fp32 or bf16\n", optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        case ':':
            fprintf(stderr, "clipreel upscale: %s needs a value\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        default:
            fprintf(stderr, "clipreel upscale: unknown option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1 || !out_path) {
        fprintf(stderr, "clipreel upscale: %s\n",
                optind >= argc      ? "no input image"
                : optind < argc - 1 ? "more than one input image"
                                    : "no output (-o OUT.png)");
        usage(stderr);
        return 2;
    }
    in_path = argv[optind];
    if (opt.model && strcmp(opt.model, "x4fast") && strcmp(opt.model, "x4plus") &&
        strcmp(opt.model, "realesr-general-x4v3") && strcmp(opt.model, "RealESRGAN_x4plus")) {
        fprintf(stderr, "clipreel upscale: unknown model '%s' (x4fast or x4plus)\n", opt.model);
        return 2;
    }

    if (reel_png_read(in_path, &rgb, &w, &h, err) < 0)
        goto fail;
    t0 = now();
    if (reel_upscale_open(&up, &opt, err) < 0)
        goto fail;
    s = reel_upscale_scale(up);
    if ((size_t)w * s * h * s > ((size_t)1 << 31)) {
        reel_fail(err, REEL_ERROR_LIMIT, "%s: %dx%d is too large to upscale %dx in one image",
                  in_path, w, h, s);
        goto fail;
    }
    if (!(big = malloc((size_t)w * s * h * s * 3))) {
        reel_fail(err, REEL_ERR(ENOMEM), "out of memory for a %dx%d image", w * s, h * s);
        goto fail;
    }
    t1 = now();
    if (reel_upscale_run(up, rgb, w, h, (ptrdiff_t)w * 3, big, (ptrdiff_t)w * s * 3) < 0) {
        snprintf(err, sizeof(err), "%s", reel_upscale_errmsg(up));
        goto fail;
    }
    reel_log(REEL_LOG_INFO, "upscale", "%s: %dx%d -> %dx%d in %.2f s, %s (model load %.2f s)",
             in_path, w, h, w * s, h * s, now() - t1,
             reel_upscale_precision_name(reel_upscale_precision(up)), t1 - t0);
    if (reel_png_write(out_path, big, w * s, h * s, (ptrdiff_t)w * s * 3, err) < 0)
        goto fail;
    ret = 0;

fail:
    if (ret)
        fprintf(stderr, "clipreel upscale: %s\n", err);
    reel_upscale_close(&up);
    free(rgb);
    free(big);
    return ret;
}
