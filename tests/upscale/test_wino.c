/*
 * test_wino.c - clipreel's Winograd convolutions (src/upscale/wino.c), bf16
 * F(4x2) and F(2x2) and f32 F(4x4), against a double-precision direct
 * convolution of the same input and f32 weights, on layers that reach every
 * edge case: sizes that are not a multiple of the tile (partial tiles at the
 * bottom and right), more than one job per tile row, 1x1 and 1-row maps,
 * channel counts that leave a partial block of output channels (48, 16), f32
 * and bf16 output, PReLU per channel, one slope for all (leaky), none; 1 and
 * 2 threads.
 *
 * Each layer must match the reference within a signal-to-noise ratio: the
 * interior and the border pixels separately (an edge bug would hide in the
 * mean). The bf16 floors sit below what the rounding to bf16 costs by itself
 * (docs/internals/upscale.md: 42.4 dB for F(4x2), 49.8 for F(2x2) on one
 * random layer), the f32 floor below f32 rounding (~120 dB here), and all far
 * above what any wrong transform, index or mask gives (< 10 dB). Threads must
 * not change a single bit. The threads' shares of the scratch lie apart.
 *
 * Exit 77 (skip) on CPUs without AVX-512; the bf16 layers are skipped (and
 * said so) on CPUs without AVX-512 BF16.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "upscale/wino.h"

#define SKIP 77

typedef struct Case {
    int bf16, h, w, in_c, out_c, rows, cols, out_f32, slopes; /* slopes: 0 none, 1 one, 2 each */
    double min_snr;
    int nres; /* residual sums after the activation (0 when not given) */
} Case;

/* the residual sums' coefficients: y = self * y + coef * r, in turn */
static const float res_self[REEL_WINO_MAX_RES] = {0.2f, 0.5f};
static const float res_coef[REEL_WINO_MAX_RES] = {1.f, 0.75f};

static uint32_t rng = 12345;

static float frand(void) /* [0, 1) */
{
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / 16777216.f;
}

static float from_bf16(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;

    memcpy(&f, &u, sizeof(f));
    return f;
}

static uint16_t to_bf16(float f)
{
    uint32_t u;

    memcpy(&u, &f, sizeof(u));
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/*
 * The layer run once into a fresh buffer (returned, malloc'd). The output is
 * placed `skew` bytes past a 64-byte boundary: 0 gives the kernels' streaming
 * stores (every tensor of the backend is so aligned), 16 their ordinary ones.
 */
static void *run(const ReelWinoSpec *sp, const void *src, const void *const *res, int threads,
                 size_t out_bytes, size_t skew)
{
    ReelWinoSpec s = *sp;
    ReelWinoConv *c = NULL;
    char err[REEL_ERRMSG_SIZE];
    char *buf = aligned_alloc(64, (out_bytes + skew + 63) & ~(size_t)63);
    void *dst = buf ? buf + skew : NULL, *scratch = NULL, *out = malloc(out_bytes);
    ReelWinoIo io = {.nsrc = 1, .src = {src}, .chans = {sp->in_c}, .dst = dst};

    s.threads = threads;
    if (!buf || !out || reel_wino_create(&c, &s, err) < 0 ||
        !(scratch = aligned_alloc(64, reel_wino_scratch(c)))) {
        fprintf(stderr, "create: %s\n", buf && out ? err : "out of memory");
        free(buf);
        free(out);
        reel_wino_free(&c);
        return NULL;
    }
    memset(dst, 0xff, out_bytes); /* NaN/garbage wherever the kernel forgets to write */
    for (int r = 0; r < sp->nres; r++)
        io.res[r] = res[r];
    if (sp->nres)
        reel_wino_run_io(c, &io, scratch);
    else
        reel_wino_run(c, src, dst, scratch);
    memcpy(out, dst, out_bytes);
    reel_wino_free(&c);
    free(scratch);
    free(buf);
    return out;
}

/*
 * The same layer with its input given as a Concat's inputs read in place
 * (reel_wino_run_io): the channels cut into NHWC tensors of 16, 32, 16, ...
 * channels, each its own buffer. NULL on failure (reported).
 */
static void *run_split(const ReelWinoSpec *sp, const void *src, const void *const *res,
                       size_t out_bytes, int *nsrc)
{
    size_t npix = (size_t)sp->h * sp->w, elem = sp->kind == REEL_WINO_BF16 ? 2 : 4;
    ReelWinoSpec s = *sp;
    ReelWinoConv *c = NULL;
    char err[REEL_ERRMSG_SIZE];
    void *part[REEL_WINO_MAX_SRC] = {NULL}, *dst = malloc(out_bytes), *scratch = NULL;
    int n = 0, ok = dst != NULL;
    ReelWinoIo io = {.dst = dst};

    for (int off = 0; ok && off < sp->in_c; off += io.chans[n++]) {
        int want = n % 2 ? 32 : 16, left = sp->in_c - off;

        io.chans[n] = n == REEL_WINO_MAX_SRC - 1 || want > left ? left : want;
        if (!(part[n] = malloc(npix * io.chans[n] * elem))) {
            ok = 0;
            break;
        }
        for (size_t p = 0; p < npix; p++)
            memcpy((char *)part[n] + p * io.chans[n] * elem,
                   (const char *)src + (p * sp->in_c + off) * elem, io.chans[n] * elem);
        io.src[n] = part[n];
    }
    io.nsrc = n;
    for (int r = 0; r < sp->nres; r++)
        io.res[r] = res[r];
    s.threads = 2;
    if (ok && (reel_wino_create(&c, &s, err) < 0 ||
               !(scratch = aligned_alloc(64, reel_wino_scratch(c))))) {
        fprintf(stderr, "create: %s\n", c ? "out of memory" : err);
        ok = 0;
    }
    if (ok) {
        memset(dst, 0xff, out_bytes);
        reel_wino_run_io(c, &io, scratch);
    }
    for (int k = 0; k < REEL_WINO_MAX_SRC; k++)
        free(part[k]);
    reel_wino_free(&c);
    free(scratch);
    if (!ok) {
        free(dst);
        return NULL;
    }
    *nsrc = n;
    return dst;
}

/* One layer: 0 pass, 1 fail. */
static int check(const Case *k)
{
    size_t npix = (size_t)k->h * k->w, nw = (size_t)k->out_c * k->in_c * 9;
    int out_f32 = k->out_f32 || !k->bf16;
    size_t out_bytes = npix * k->out_c * (out_f32 ? sizeof(float) : sizeof(uint16_t));
    float *weight = malloc(nw * sizeof(float)), *bias = malloc((size_t)k->out_c * sizeof(float));
    float *slope = malloc((size_t)k->out_c * sizeof(float));
    float *in = malloc(npix * k->in_c * sizeof(float));
    uint16_t *in_b = malloc(npix * k->in_c * sizeof(uint16_t));
    void *one = NULL, *two = NULL, *plain = NULL, *cat = NULL;
    float *res[REEL_WINO_MAX_RES] = {NULL};   /* what the kernel reads, as f32 */
    void *res_in[REEL_WINO_MAX_RES] = {NULL}; /* the same in the output's type */
    double sig[2] = {0, 0}, noise[2] = {0, 0}, snr[2] = {0, 0};
    int bad = 1;

    if (!weight || !bias || !slope || !in || !in_b)
        goto done;
    /* activations as after a PReLU (mostly positive), weights at He scale; bf16: the input is
     * what the kernel reads, rounded */
    for (size_t i = 0; i < npix * k->in_c; i++) {
        in[i] = frand() * 2.f - 0.5f;
        in_b[i] = to_bf16(in[i]);
        if (k->bf16)
            in[i] = from_bf16(in_b[i]);
    }
    for (size_t i = 0; i < nw; i++)
        weight[i] = (frand() * 2.f - 1.f) * sqrtf(6.f / (9.f * (float)k->in_c));
    for (int o = 0; o < k->out_c; o++) {
        bias[o] = (frand() - 0.5f) * 0.2f;
        slope[o] = frand() * 0.3f;
    }
    for (int r = 0; r < k->nres; r++) {
        size_t n = npix * k->out_c;

        if (!(res[r] = malloc(n * sizeof(float))) ||
            !(res_in[r] = malloc(n * (out_f32 ? sizeof(float) : sizeof(uint16_t)))))
            goto done;
        for (size_t i = 0; i < n; i++) {
            float v = frand() * 2.f - 1.f;

            if (out_f32) {
                res[r][i] = ((float *)res_in[r])[i] = v;
            } else {
                ((uint16_t *)res_in[r])[i] = to_bf16(v);
                res[r][i] = from_bf16(((uint16_t *)res_in[r])[i]);
            }
        }
    }
    const void *src = k->bf16 ? (const void *)in_b : (const void *)in;
    ReelWinoSpec sp = {.kind = k->bf16 ? REEL_WINO_BF16 : REEL_WINO_F32,
                       .in_c = k->in_c,
                       .out_c = k->out_c,
                       .weight = weight,
                       .bias = bias,
                       .slope = k->slopes ? slope : NULL,
                       .nslope = k->slopes == 1 ? 1 : k->out_c,
                       .out_f32 = k->out_f32,
                       .h = k->h,
                       .w = k->w,
                       .tile_rows = k->rows,
                       .tile_cols = k->cols,
                       .nres = k->nres,
                       .res_self = {res_self[0], res_self[1]},
                       .res_coef = {res_coef[0], res_coef[1]}};
    const void *const *rp = (const void *const *)res_in;
    if (!(one = run(&sp, src, rp, 1, out_bytes, 0)) ||
        !(two = run(&sp, src, rp, 2, out_bytes, 0)) ||
        !(plain = run(&sp, src, rp, 1, out_bytes, 16)))
        goto done;
    if (memcmp(one, two, out_bytes)) {
        fprintf(stderr, "FAIL %dx%d %d->%d: 1 and 2 threads differ\n", k->w, k->h, k->in_c,
                k->out_c);
        goto done;
    }
    if (memcmp(one, plain, out_bytes)) {
        fprintf(stderr, "FAIL %dx%d %d->%d: streamed and ordinary stores differ\n", k->w, k->h,
                k->in_c, k->out_c);
        goto done;
    }
    if (k->in_c >= 32) {
        int nsrc = 0;

        if (!(cat = run_split(&sp, src, rp, out_bytes, &nsrc)))
            goto done;
        if (memcmp(one, cat, out_bytes)) {
            fprintf(stderr,
                    "FAIL %dx%d %d->%d: its input as %d tensors read in place differs "
                    "from the concatenation\n",
                    k->w, k->h, k->in_c, k->out_c, nsrc);
            goto done;
        }
    }
    for (int y = 0; y < k->h; y++) {
        for (int x = 0; x < k->w; x++) {
            int border = y == 0 || x == 0 || y == k->h - 1 || x == k->w - 1;

            for (int o = 0; o < k->out_c; o++) {
                double ref = bias[o], got;
                size_t at = ((size_t)y * k->w + x) * k->out_c + o;

                for (int dy = -1; dy <= 1; dy++) {
                    for (int dx = -1; dx <= 1; dx++) {
                        int iy = y + dy, ix = x + dx;

                        if (iy < 0 || ix < 0 || iy >= k->h || ix >= k->w)
                            continue;
                        for (int i = 0; i < k->in_c; i++)
                            ref += (double)in[((size_t)iy * k->w + ix) * k->in_c + i] *
                                   weight[(((size_t)o * k->in_c + i) * 3 + dy + 1) * 3 + dx + 1];
                    }
                }
                if (k->slopes && ref < 0)
                    ref *= slope[k->slopes == 1 ? 0 : o];
                for (int r = 0; r < k->nres; r++)
                    ref = res_self[r] * ref + (double)res_coef[r] * res[r][at];
                got = out_f32 ? ((const float *)one)[at] : from_bf16(((const uint16_t *)one)[at]);
                if (!isfinite(got)) {
                    fprintf(stderr, "FAIL %dx%d %d->%d: (%d,%d) channel %d not written\n", k->w,
                            k->h, k->in_c, k->out_c, x, y, o);
                    goto done;
                }
                sig[border] += ref * ref;
                noise[border] += (got - ref) * (got - ref);
            }
        }
    }
    bad = 0;
    for (int b = 0; b < 2; b++) {
        if (sig[b] == 0) /* a map with no interior */
            continue;
        snr[b] = noise[b] == 0 ? 99.0 : 10.0 * log10(sig[b] / noise[b]);
        if (snr[b] < k->min_snr)
            bad = 1;
    }
    printf("%s %s %dx%d %d->%d F(%dx%d) %s out, %s, %d residuals: interior %.1f dB, border %.1f "
           "dB (min %.0f)\n",
           bad ? "FAIL" : "ok  ", k->bf16 ? "bf16" : "f32 ", k->w, k->h, k->in_c, k->out_c,
           k->bf16 ? k->rows : 4, k->bf16 ? k->cols : 4, out_f32 ? "f32" : "bf16",
           k->slopes == 0   ? "no activation"
           : k->slopes == 1 ? "one slope"
                            : "PReLU",
           k->nres, sig[0] ? snr[0] : 0.0, sig[1] ? snr[1] : 0.0, k->min_snr);
done:
    free(weight);
    free(bias);
    free(slope);
    free(in);
    free(in_b);
    free(one);
    free(two);
    free(plain);
    free(cat);
    for (int r = 0; r < REEL_WINO_MAX_RES; r++) {
        free(res[r]);
        free(res_in[r]);
    }
    return bad;
}

/*
 * spec.shuffle_out: the layer's output through PixelShuffle(4) into planar
 * f32, plus a planar residual upsampled nearest, must be exactly what the
 * same layer's NHWC output gives when shuffled and summed here (y = self * y +
 * coef * r, one rounding of the sum as the kernel does it): on 1 and 2
 * threads, streamed (aligned, w % 4 == 0) and not, with the right edge cutting
 * a tile (w % 4 != 0) and 2-column bf16 tiles. 0 pass, 1 fail.
 */
static int check_shuffle(int bf16, int h, int w, int cols, int nres)
{
    const int in_c = 32, out_c = 48, planes = out_c / 16;
    size_t npix = (size_t)h * w, nw = (size_t)out_c * in_c * 9, bytes = npix * out_c * 4;
    float *weight = malloc(nw * sizeof(float)), *bias = malloc(out_c * sizeof(float));
    float *res = malloc(npix * planes * sizeof(float)), *want = malloc(bytes);
    float *in = malloc(npix * in_c * sizeof(float));
    uint16_t *in_b = malloc(npix * in_c * sizeof(uint16_t));
    float *nhwc = NULL, *got[3] = {NULL, NULL, NULL};
    int bad = 1;

    if (!weight || !bias || !res || !want || !in || !in_b)
        goto done;
    for (size_t i = 0; i < npix * in_c; i++) {
        in[i] = frand() * 2.f - 0.5f;
        in_b[i] = to_bf16(in[i]);
    }
    for (size_t i = 0; i < nw; i++)
        weight[i] = (frand() * 2.f - 1.f) * sqrtf(6.f / (9.f * (float)in_c));
    for (int o = 0; o < out_c; o++)
        bias[o] = (frand() - 0.5f) * 0.2f;
    for (size_t i = 0; i < npix * planes; i++)
        res[i] = frand() * 2.f - 1.f;
    ReelWinoSpec sp = {.kind = bf16 ? REEL_WINO_BF16 : REEL_WINO_F32,
                       .in_c = in_c,
                       .out_c = out_c,
                       .weight = weight,
                       .bias = bias,
                       .out_f32 = 1,
                       .h = h,
                       .w = w,
                       .tile_rows = bf16 ? 4 : 0,
                       .tile_cols = bf16 ? cols : 0};
    const void *src = bf16 ? (const void *)in_b : (const void *)in;
    const void *rp[1] = {res};

    if (!(nhwc = run(&sp, src, NULL, 1, bytes, 0)))
        goto done;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int o = 0; o < out_c; o++) {
                int c = o / 16, dy = o % 16 / 4, dx = o % 4;
                float v = nhwc[((size_t)y * w + x) * out_c + o];

                if (nres)
                    v = fmaf(res_self[0], v, res_coef[0] * res[((size_t)c * h + y) * w + x]);
                want[((size_t)c * 4 * h + 4 * y + dy) * 4 * w + 4 * x + dx] = v;
            }
    sp.shuffle_out = 1;
    sp.nres = nres;
    sp.res_self[0] = res_self[0];
    sp.res_coef[0] = res_coef[0];
    if (!(got[0] = run(&sp, src, rp, 1, bytes, 0)) || !(got[1] = run(&sp, src, rp, 2, bytes, 0)) ||
        !(got[2] = run(&sp, src, rp, 1, bytes, 16)))
        goto done;
    bad = 0;
    for (int i = 0; i < 3; i++)
        if (memcmp(got[i], want, bytes)) {
            size_t at = 0;

            while (!memcmp(&got[i][at], &want[at], sizeof(float)))
                at++;
            fprintf(stderr,
                    "FAIL %s %dx%d shuffled%s (%s): plane %zu pixel (%zu, %zu) is %g, want %g\n",
                    bf16 ? "bf16" : "f32", w, h, nres ? " + residual" : "",
                    i == 0   ? "1 thread"
                    : i == 1 ? "2 threads"
                             : "ordinary stores",
                    at / (16 * npix), at % (16 * npix) % (4 * (size_t)w),
                    at % (16 * npix) / (4 * (size_t)w), got[i][at], want[at]);
            bad = 1;
        }
    printf("%s %s %dx%d F(4x%d) 32->48 shuffled into planes%s: same bits as shuffling after\n",
           bad ? "FAIL" : "ok  ", bf16 ? "bf16" : "f32 ", w, h, bf16 ? cols : 4,
           nres ? ", residual upsampled" : "");
done:
    free(weight);
    free(bias);
    free(res);
    free(want);
    free(in);
    free(in_b);
    free(nhwc);
    for (int i = 0; i < 3; i++)
        free(got[i]);
    return bad;
}

/* made on another thread, for the concurrent case of check_shared */
typedef struct Maker {
    ReelWinoSpec spec;
    ReelWinoConv *conv;
} Maker;

static void *make_on_thread(void *arg)
{
    Maker *m = arg;
    char err[REEL_ERRMSG_SIZE];

    if (reel_wino_create(&m->conv, &m->spec, err) < 0)
        fprintf(stderr, "create: %s\n", err);
    return NULL;
}

/*
 * Layers made from the same weights, kind and tile share one transformed copy
 * whatever their size (a model's lanes, a new frame size), also when made at
 * the same time on two threads; another kind or other weights get their own;
 * the copy goes with the last layer; sharing changes no result. 0 pass, 1 fail.
 */
static int check_shared(void)
{
    enum { IN = 32, OUT = 48 };
    size_t nw = (size_t)IN * OUT * 9, f32_copy = (size_t)36 * IN * OUT * sizeof(float);
    float *w1 = malloc(nw * sizeof(float)), *w2 = malloc(nw * sizeof(float));
    float *in = malloc((size_t)17 * 11 * IN * sizeof(float));
    ReelWinoConv *a = NULL, *b = NULL, *other = NULL;
    char err[REEL_ERRMSG_SIZE];
    size_t base = reel_wino_weights_bytes(), held[4];
    void *out_shared = NULL, *out_alone = NULL;
    int bad = 1;

    if (!w1 || !w2 || !in)
        goto done;
    for (size_t i = 0; i < nw; i++)
        w1[i] = w2[i] = frand() - 0.5f;
    for (size_t i = 0; i < (size_t)17 * 11 * IN; i++)
        in[i] = frand();
    ReelWinoSpec sa = {.kind = REEL_WINO_F32,
                       .in_c = IN,
                       .out_c = OUT,
                       .weight = w1,
                       .h = 9,
                       .w = 30,
                       .threads = 1};
    ReelWinoSpec sb = sa, sw2 = sa;
    sb.h = 17, sb.w = 11;
    sw2.weight = w2, sw2.h = 17, sw2.w = 11;
    if (reel_wino_create(&a, &sa, err) < 0)
        goto fail_create;
    held[0] = reel_wino_weights_bytes() - base;
    if (reel_wino_create(&b, &sb, err) < 0)
        goto fail_create;
    held[1] = reel_wino_weights_bytes() - base;
    if (!(out_shared = run(&sb, in, NULL, 1, (size_t)17 * 11 * OUT * sizeof(float), 0)) ||
        !(out_alone = run(&sw2, in, NULL, 1, (size_t)17 * 11 * OUT * sizeof(float), 0)))
        goto done;
    if (reel_wino_create(&other, &sw2, err) < 0)
        goto fail_create;
    held[2] = reel_wino_weights_bytes() - base;
    reel_wino_free(&a);
    held[3] = reel_wino_weights_bytes() - base;
    reel_wino_free(&b);
    reel_wino_free(&other);
    if (held[0] != f32_copy || held[1] != f32_copy || held[2] != 2 * f32_copy ||
        held[3] != 2 * f32_copy || reel_wino_weights_bytes() != base) {
        fprintf(stderr,
                "FAIL shared weights: held %zu, %zu (a second layer, same weights), %zu (other "
                "weights), %zu (the first freed), %zu after all (one copy: %zu)\n",
                held[0], held[1], held[2], held[3], reel_wino_weights_bytes() - base, f32_copy);
        goto done;
    }
    if (memcmp(out_shared, out_alone, (size_t)17 * 11 * OUT * sizeof(float))) {
        fprintf(stderr, "FAIL shared weights: a layer on a shared copy computes other values\n");
        goto done;
    }
    /* two threads making the same layer at once: one copy; bf16 beside it: its own */
    Maker m[3] = {{sa, NULL}, {sb, NULL}, {sa, NULL}};
    pthread_t t[3];
    int nt = reel_wino_supported(REEL_WINO_BF16) ? 3 : 2;
    m[2].spec.kind = REEL_WINO_BF16;
    for (int i = 0; i < nt; i++)
        pthread_create(&t[i], NULL, make_on_thread, &m[i]);
    for (int i = 0; i < nt; i++)
        pthread_join(t[i], NULL);
    held[0] = reel_wino_weights_bytes() - base;
    int made = 0;
    for (int i = 0; i < nt; i++) {
        made += m[i].conv != NULL;
        reel_wino_free(&m[i].conv);
    }
    if (made != nt || held[0] != f32_copy + (nt == 3 ? f32_copy / 2 : 0)) {
        fprintf(stderr, "FAIL shared weights: %zu bytes held by layers made at once (want %zu)\n",
                held[0], f32_copy + (nt == 3 ? f32_copy / 2 : 0));
        goto done;
    }
    if (reel_wino_weights_bytes() != base) {
        fprintf(stderr, "FAIL shared weights: %zu bytes left\n", reel_wino_weights_bytes() - base);
        goto done;
    }
    /* share groups (a small model's lanes): group 1 gets its own copy, a second layer of
     * group 1 shares it; the same results */
    {
        ReelWinoSpec g1 = sb;
        void *out_group = NULL;

        g1.share_group = 1;
        if (reel_wino_create(&a, &sa, err) < 0 || reel_wino_create(&b, &g1, err) < 0 ||
            reel_wino_create(&other, &g1, err) < 0)
            goto fail_create;
        held[0] = reel_wino_weights_bytes() - base;
        out_group = run(&g1, in, NULL, 1, (size_t)17 * 11 * OUT * sizeof(float), 0);
        reel_wino_free(&a);
        reel_wino_free(&b);
        reel_wino_free(&other);
        if (held[0] != 2 * f32_copy || !out_group ||
            memcmp(out_group, out_alone, (size_t)17 * 11 * OUT * sizeof(float))) {
            fprintf(stderr,
                    "FAIL share groups: %zu bytes for groups 0 and 1 (want %zu), group 1's "
                    "results %s\n",
                    held[0], 2 * f32_copy,
                    !out_group ? "missing"
                    : memcmp(out_group, out_alone, (size_t)17 * 11 * OUT * sizeof(float))
                        ? "differ"
                        : "alike");
            free(out_group);
            goto done;
        }
        free(out_group);
    }
    printf("ok   shared weights: one copy per weights, kind, tile and share group (%zu bytes "
           "f32)\n",
           f32_copy);
    bad = 0;
    goto done;
fail_create:
    fprintf(stderr, "FAIL create: %s\n", err);
done:
    reel_wino_free(&a);
    reel_wino_free(&b);
    reel_wino_free(&other);
    free(out_shared);
    free(out_alone);
    free(w1);
    free(w2);
    free(in);
    return bad;
}

/*
 * The threads' shares of the scratch lie 256 KiB apart at least (wino.c,
 * SCRATCH_GAP): the second starts that far past the end of the first, which
 * is what one thread alone needs.
 */
static int check_scratch_gap(void)
{
    float w[16 * 16 * 9] = {0};
    ReelWinoSpec sp = {
        .kind = REEL_WINO_F32, .in_c = 16, .out_c = 16, .weight = w, .h = 40, .w = 40};
    ReelWinoConv *one = NULL, *two = NULL;
    char err[REEL_ERRMSG_SIZE];
    int bad = 1;

    sp.threads = 1;
    if (reel_wino_create(&one, &sp, err) < 0)
        goto done;
    sp.threads = 2;
    if (reel_wino_create(&two, &sp, err) < 0)
        goto done;
    bad = reel_wino_scratch(two) - reel_wino_scratch(one) <
          reel_wino_scratch(one) + ((size_t)256 << 10);
    if (bad)
        fprintf(stderr, "FAIL scratch: %zu bytes for one thread, %zu for two\n",
                reel_wino_scratch(one), reel_wino_scratch(two));
done:
    if (!one || !two)
        fprintf(stderr, "create: %s\n", err);
    reel_wino_free(&one);
    reel_wino_free(&two);
    return bad;
}

int main(void)
{
    static const Case cases[] = {
        /* bf16 h  w  in  out rows cols f32 slopes snr */
        {1, 29, 83, 64, 64, 4, 4, 0, 2, 29.0, 0}, /* 2 jobs per tile row, partial tiles both ways */
        {1, 29, 53, 64, 64, 4, 2, 0, 2, 38.0, 0},
        {1, 29, 53, 64, 64, 2, 2, 0, 2, 45.0, 0},
        {1, 17, 40, 64, 48, 4, 4, 1, 0, 29.0,
         0}, /* the last layer of x4fast: 48 channels, f32 out */
        {1, 17, 40, 64, 48, 4, 2, 1, 0, 38.0, 0},
        {1, 17, 40, 32, 48, 2, 2, 1, 0, 45.0, 0},
        {1, 9, 75, 96, 32, 4, 4, 0, 1, 29.0, 0}, /* x4plus-like: 96 -> 32, leaky */
        {1, 9, 75, 96, 32, 4, 2, 0, 1, 38.0, 0},
        {1, 6, 7, 16, 16, 4, 4, 1, 1, 29.0, 0},
        {1, 6, 7, 16, 16, 4, 2, 1, 1, 38.0, 0},
        {1, 1, 1, 16, 16, 4, 4, 1, 2, 29.0, 0}, /* one pixel: all border */
        {1, 1, 1, 16, 16, 4, 2, 1, 2, 38.0, 0},
        {1, 1, 37, 32, 16, 4, 4, 0, 2, 29.0, 0}, /* one row */
        {1, 1, 37, 32, 16, 2, 2, 0, 2, 45.0, 0},
        {1, 38, 1, 16, 32, 4, 4, 1, 2, 29.0, 0}, /* one column */
        {1, 38, 1, 16, 32, 4, 2, 1, 2, 38.0, 0},
        {0, 29, 107, 64, 64, 0, 0, 1, 2, 90.0, 0}, /* f32 F(4x4): 3 jobs per tile row */
        {0, 17, 40, 64, 48, 0, 0, 1, 0, 90.0, 0},
        {0, 9, 75, 96, 32, 0, 0, 1, 1, 90.0, 0},
        {0, 6, 7, 16, 16, 0, 0, 1, 1, 90.0, 0},
        {0, 1, 1, 16, 16, 0, 0, 1, 2, 90.0, 0},
        {0, 1, 37, 32, 16, 0, 0, 1, 2, 90.0, 0},
        {0, 38, 1, 16, 32, 0, 0, 1, 2, 90.0, 0},
        /* 73 tiles a row, jobs of 18: the last job holds one tile (a 270-wide portrait crop) */
        {1, 5, 290, 16, 16, 4, 4, 0, 2, 29.0, 0},
        {0, 5, 290, 16, 16, 0, 0, 1, 2, 90.0, 0},
        /* BODY's kernels (64 -> 64, one input, streamed, no residual) at the edges, with
         * and without an activation */
        {1, 1, 1, 64, 64, 4, 4, 0, 2, 29.0, 0},
        {1, 1, 37, 64, 64, 4, 2, 0, 2, 38.0, 0},
        {1, 38, 1, 64, 64, 2, 2, 0, 0, 45.0, 0},
        {1, 5, 290, 64, 64, 4, 4, 0, 1, 29.0, 0},
        {0, 1, 1, 64, 64, 0, 0, 1, 2, 90.0, 0},
        {0, 38, 1, 64, 64, 0, 0, 1, 0, 90.0, 0},
        {0, 5, 290, 64, 64, 0, 0, 1, 1, 90.0, 0},
        /* residual sums fused (x4plus's dense-block and RRDB sums) */
        {1, 29, 83, 64, 64, 4, 4, 0, 0, 29.0, 2}, /* bf16 out: the residuals read as bf16 */
        {1, 17, 40, 96, 64, 4, 2, 1, 1, 38.0, 1},
        {0, 29, 107, 64, 64, 0, 0, 1, 0, 90.0, 2},
        {0, 9, 75, 192, 64, 0, 0, 1, 1, 90.0, 1},
        /* more than 64 output channels: the weights are transformed 64 at a time */
        {1, 13, 30, 32, 80, 4, 4, 1, 2, 29.0, 0},
        {1, 13, 30, 32, 144, 4, 2, 0, 1, 38.0, 0},
        {0, 13, 30, 48, 80, 0, 0, 1, 2, 90.0, 0},
        {0, 13, 30, 16, 144, 0, 0, 1, 1, 90.0, 0},
    };
    int failed = 0, ran = 0, bf16 = reel_wino_supported(REEL_WINO_BF16);

    if (!reel_wino_supported(REEL_WINO_F32)) {
        printf("SKIP: this CPU has no AVX-512: clipreel's Winograd kernels never run\n");
        return SKIP;
    }
    if (!bf16)
        printf("no AVX-512 BF16 here: the bf16 layers are skipped\n");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (cases[i].bf16 && !bf16)
            continue;
        failed += check(&cases[i]);
        ran++;
    }
    failed += check_shared();
    failed += check_scratch_gap();
    ran += 2;
    /* bf16, h, w, tile columns, residual */
    static const int shuffles[][5] = {{0, 9, 24, 4, 1},  {0, 7, 30, 4, 0}, {0, 1, 1, 4, 1},
                                      {1, 10, 40, 4, 1}, {1, 9, 23, 4, 1}, {1, 6, 18, 2, 1}};
    for (size_t i = 0; i < sizeof(shuffles) / sizeof(shuffles[0]); i++) {
        const int *q = shuffles[i];

        if (q[0] && !reel_wino_supported(REEL_WINO_BF16))
            continue;
        failed += check_shuffle(q[0], q[1], q[2], q[3], q[4]);
        ran++;
    }
    if (failed)
        fprintf(stderr, "%d of %d layers failed\n", failed, ran);
    return failed ? 1 : 0;
}
