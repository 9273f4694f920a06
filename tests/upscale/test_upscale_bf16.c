/*
 * test_upscale_bf16.c - the bf16 mode's accuracy: on every fixture that has a
 * reference for MODEL, the bf16 output (untiled) must be within PSNR >= 40 dB
 * of the fp32 output (the promise in docs/PERFORMANCE.md that lets a job ask
 * for bf16). The PSNR of both against the upstream reference is printed too.
 *
 * usage: test_upscale_bf16 FIXTURE_DIR MODEL_DIR MODEL
 *
 * Exit 77 (ctest's skip code, SKIP_RETURN_CODE) with a sentence when this CPU
 * has no native bf16 (the upscaler then runs fp32 and there is nothing to test).
 */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "upscale/png_io.h"
#include "upscale/upscale.h"

#define SKIP 77
#define MIN_PSNR 40.0

static double psnr(const uint8_t *a, const uint8_t *b, size_t n)
{
    double se = 0;

    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];

        se += d * d;
    }
    return se == 0 ? 99.0 : 10.0 * log10(255.0 * 255.0 / (se / (double)n));
}

static uint8_t *upscale(ReelUpscaler *up, const uint8_t *rgb, int w, int h)
{
    int s = reel_upscale_scale(up);
    uint8_t *out = malloc((size_t)w * h * 3 * s * s);

    if (!out)
        return NULL;
    if (reel_upscale_run(up, rgb, w, h, (ptrdiff_t)w * 3, out, (ptrdiff_t)w * 3 * s) < 0) {
        fprintf(stderr, "reel_upscale_run: %s\n", reel_upscale_errmsg(up));
        free(out);
        return NULL;
    }
    return out;
}

/* One fixture: 0 pass, 1 fail. */
static int check(ReelUpscaler *fp, ReelUpscaler *bf, const char *dir, const char *name,
                 const char *model)
{
    char in_path[4096], ref_path[4096], err[REEL_ERRMSG_SIZE];
    uint8_t *in = NULL, *ref = NULL, *a = NULL, *b = NULL;
    int w, h, rw, rh, bad = 1;

    snprintf(in_path, sizeof(in_path), "%s/%s.png", dir, name);
    snprintf(ref_path, sizeof(ref_path), "%s/%s.%s.png", dir, name, model);
    if (reel_png_read(in_path, &in, &w, &h, err) < 0 ||
        reel_png_read(ref_path, &ref, &rw, &rh, err) < 0) {
        fprintf(stderr, "%s\n", err);
        goto end;
    }
    if (!(a = upscale(fp, in, w, h)) || !(b = upscale(bf, in, w, h)))
        goto end;
    {
        size_t n = (size_t)rw * rh * 3;
        double p = psnr(a, b, n);

        printf("%s %s: bf16 vs fp32 PSNR %.2f dB (want >= %.0f); vs reference: fp32 %.2f dB, "
               "bf16 %.2f dB\n",
               name, model, p, MIN_PSNR, psnr(a, ref, n), psnr(b, ref, n));
        bad = !(p >= MIN_PSNR);
        if (bad)
            fprintf(stderr, "FAIL %s %s: bf16 is %.2f dB from fp32 (want >= %.0f)\n", name, model,
                    p, MIN_PSNR);
    }
end:
    free(in);
    free(ref);
    free(a);
    free(b);
    return bad;
}

int main(int argc, char **argv)
{
    ReelUpscaleOptions opt = {.tile = -1};
    ReelUpscaler *fp = NULL, *bf = NULL;
    char err[REEL_ERRMSG_SIZE], suffix[64];
    DIR *d = NULL;
    struct dirent *e;
    int ncases = 0, nfail = 0, ret = 1;

    if (argc != 4) {
        fprintf(stderr, "usage: %s FIXTURE_DIR MODEL_DIR MODEL\n", argv[0]);
        return 2;
    }
    opt.model_dir = argv[2];
    opt.model = argv[3];
    if (reel_upscale_open(&fp, &opt, err) < 0)
        goto fail;
    opt.precision = REEL_UPSCALE_BF16;
    if (reel_upscale_open(&bf, &opt, err) < 0)
        goto fail;
    if (reel_upscale_precision(bf) != REEL_UPSCALE_BF16) {
        printf("SKIP: this CPU has no native bf16 (AVX-512 BF16), so bf16 runs as fp32: "
               "nothing to test\n");
        ret = SKIP;
        goto end;
    }
    if (!(d = opendir(argv[1]))) {
        snprintf(err, sizeof(err), "%s: cannot list", argv[1]);
        goto fail;
    }
    snprintf(suffix, sizeof(suffix), ".%s.png", argv[3]);
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name), sl = strlen(suffix);
        char name[256];

        /* NAME.MODEL.png: a reference, so NAME.png is a case for this model */
        if (len <= sl || len - sl >= sizeof(name) || strcmp(e->d_name + len - sl, suffix))
            continue;
        snprintf(name, sizeof(name), "%.*s", (int)(len - sl), e->d_name);
        ncases++;
        nfail += check(fp, bf, argv[1], name, argv[3]);
    }
    if (!ncases) {
        snprintf(err, sizeof(err), "%s: no NAME%s reference", argv[1], suffix);
        goto fail;
    }
    printf("%d case(s), %d failed\n", ncases, nfail);
    ret = nfail ? 1 : 0;
    goto end;

fail:
    fprintf(stderr, "test_upscale_bf16: %s\n", err);
end:
    if (d)
        closedir(d);
    reel_upscale_close(&fp);
    reel_upscale_close(&bf);
    return ret;
}
