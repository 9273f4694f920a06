/*
 * test_resize.c - the no-AI path's Lanczos-3 scaler (src/media/resize.c):
 *
 *   - against a double-precision Lanczos-3 written here from the definition
 *     (every source sample weighted, no windows, no tables): each output
 *     within one level of the exact value, and on average within 0.2 of it;
 *   - the AVX-512 and AVX2 kernels against the C kernels: bit-identical frames
 *     (a part rendered on one worker must match a single export made on another);
 *   - against swscale's SWS_LANCZOS, which it replaces on this path: the same
 *     filter, so the two agree to within rounding (PSNR floor below);
 *   - the cases it leaves to swscale: other formats, reductions past 4:3.
 *
 * Cases: crops at odd offsets (chroma half a sample off), 4:2:0, 4:2:2 and
 * 4:4:4 sources, the output at the crop's size, widths that are not a multiple
 * of the kernels' steps, crops smaller than the filter (1x1, 3x2), a 4:3
 * reduction, a bank of random crops.
 */
#include <libavutil/pixfmt.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "media/resize.h"

#include "../check.h"

static uint32_t rng = 2024;

static uint32_t next(void)
{
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}

/* A source frame: three planes, noise or a smooth picture (edges, ramps, a
 * zone plate), as a camera's frames are mostly smooth with some detail. */
typedef struct Frame {
    int w, h, cw, ch; /* luma size; chroma log2 subsampling */
    uint8_t *p[3];
    int stride[3];
} Frame;

static int plane_w(const Frame *f, int p)
{
    return p ? (f->w + (1 << f->cw) - 1) >> f->cw : f->w;
}

static int plane_h(const Frame *f, int p)
{
    return p ? (f->h + (1 << f->ch) - 1) >> f->ch : f->h;
}

static void frame_make(Frame *f, int w, int h, int cw, int ch, int noise)
{
    f->w = w, f->h = h, f->cw = cw, f->ch = ch;
    for (int p = 0; p < 3; p++) {
        int pw = plane_w(f, p), ph = plane_h(f, p);
        f->stride[p] = pw + 17; /* not a multiple of anything */
        f->p[p] = malloc((size_t)f->stride[p] * (size_t)ph);
        for (int y = 0; y < ph; y++)
            for (int x = 0; x < f->stride[p]; x++) {
                double v;
                if (noise)
                    v = next() & 255;
                else
                    v = 128 + 60 * sin(x * x * 0.002 + y * 0.05 * (p + 1)) +
                        ((x / 9 + y / 7) % 2 ? 30 : -30) * (p == 0);
                f->p[p][(size_t)y * (size_t)f->stride[p] + (size_t)x] = (uint8_t)(v < 0     ? 0
                                                                                  : v > 255 ? 255
                                                                                            : v);
            }
    }
}

static void frame_free(Frame *f)
{
    for (int p = 0; p < 3; p++)
        free(f->p[p]);
}

static double lanczos3(double t)
{
    if (t == 0)
        return 1;
    if (fabs(t) >= 3)
        return 0;
    return 3 * sin(M_PI * t) * sin(M_PI * t / 3) / (M_PI * M_PI * t * t);
}

/*
 * The exact result for one plane, from the definition: output sample i's
 * centre in output luma units is (i + 0.5) 2^d (d = 1 for the output's
 * chroma); in source luma units x + that * w / out_w; source sample j's
 * centre is (j + 0.5) 2^s. Every sample of the crop's extent in the plane
 * weighs in, the ones past the edge repeat it. Separable: rows, then columns.
 */
static void exact_axis(int x, int w, int out, int s, int d, int first, int last, double *wt,
                       int n_in)
{
    double step = (double)w / out * (1 << d) / (1 << s), scale = step > 1 ? step : 1;
    for (int i = 0; i < out >> d; i++) {
        double u = (x + (i + 0.5) * (1 << d) * w / out) / (1 << s) - 0.5, sum = 0;
        double *row = wt + (size_t)i * (size_t)n_in;
        memset(row, 0, (size_t)n_in * sizeof(double));
        for (int j = first - 20; j <= last + 20; j++) {
            double v = lanczos3((j - u) / scale);
            int k = j < first ? first : j > last ? last : j;
            row[k - first] += v;
            sum += v;
        }
        for (int k = 0; k < n_in; k++)
            row[k] /= sum;
    }
}

static void exact_plane(const Frame *f, int p, int x, int y, int w, int h, int out_w, int out_h,
                        double *dst)
{
    int s = p ? f->cw : 0, t = p ? f->ch : 0, d = p ? 1 : 0;
    int x0 = x >> s, x1 = ((x + w + (1 << s) - 1) >> s) - 1;
    int y0 = y >> t, y1 = ((y + h + (1 << t) - 1) >> t) - 1;
    int nx = x1 - x0 + 1, ny = y1 - y0 + 1, ow = out_w >> d, oh = out_h >> d;
    double *wx = malloc(sizeof(double) * (size_t)ow * (size_t)nx);
    double *wy = malloc(sizeof(double) * (size_t)oh * (size_t)ny);
    double *mid = malloc(sizeof(double) * (size_t)ny * (size_t)ow);

    exact_axis(x, w, out_w, s, d, x0, x1, wx, nx);
    exact_axis(y, h, out_h, t, d, y0, y1, wy, ny);
    for (int r = 0; r < ny; r++)
        for (int i = 0; i < ow; i++) {
            double a = 0;
            for (int k = 0; k < nx; k++)
                a += wx[(size_t)i * (size_t)nx + (size_t)k] *
                     f->p[p][(size_t)(y0 + r) * (size_t)f->stride[p] + (size_t)(x0 + k)];
            mid[(size_t)r * (size_t)ow + (size_t)i] = a;
        }
    for (int j = 0; j < oh; j++)
        for (int i = 0; i < ow; i++) {
            double a = 0;
            for (int r = 0; r < ny; r++)
                a += wy[(size_t)j * (size_t)ny + (size_t)r] *
                     mid[(size_t)r * (size_t)ow + (size_t)i];
            dst[(size_t)j * (size_t)ow + (size_t)i] = a < 0 ? 0 : a > 255 ? 255 : a;
        }
    free(wx);
    free(wy);
    free(mid);
}

typedef struct Out {
    uint8_t *p[3];
    int stride[3];
} Out;

static void out_make(Out *o, int w, int h)
{
    for (int p = 0; p < 3; p++) {
        int pw = p ? w / 2 : w, ph = p ? h / 2 : h;
        o->stride[p] = pw + 32;
        o->p[p] = calloc((size_t)o->stride[p] * (size_t)ph, 1);
    }
}

static void out_free(Out *o)
{
    for (int p = 0; p < 3; p++)
        free(o->p[p]);
}

static int fmt_of(int cw, int ch)
{
    return cw ? (ch ? AV_PIX_FMT_YUV420P : AV_PIX_FMT_YUV422P) : AV_PIX_FMT_YUV444P;
}

static void scale(const Frame *f, int x, int y, int w, int h, int ow, int oh, int simd, Out *o)
{
    ReelResize rs;
    reel_resize_init(&rs);
    rs.use_simd = simd;
    int ret = reel_resize_set(&rs, fmt_of(f->cw, f->ch), x, y, w, h, ow, oh);
    CHECK(ret == 0, "reel_resize_set(%dx%d+%d+%d -> %dx%d) = %d", w, h, x, y, ow, oh, ret);
    if (ret)
        return;
    reel_resize_run(&rs, (const uint8_t *const *)f->p, f->stride, o->p, o->stride);
    reel_resize_free(&rs);
}

static const char *const kernel_name[] = {"C", "AVX2", "AVX-512"};

/* One case: against the exact result; each SIMD kernel set this CPU runs
 * (AVX2, AVX-512) against the C kernels. */
static void check_case(int noise, int cw, int ch, int fw, int fh, int x, int y, int w, int h,
                       int ow, int oh)
{
    Frame f;
    Out c, s[REEL_RESIZE_AVX512 + 1];
    int best = reel_resize_simd_supported();

    frame_make(&f, fw, fh, cw, ch, noise);
    out_make(&c, ow, oh);
    scale(&f, x, y, w, h, ow, oh, REEL_RESIZE_C, &c);
    for (int k = REEL_RESIZE_AVX2; k <= best; k++) {
        out_make(&s[k], ow, oh);
        scale(&f, x, y, w, h, ow, oh, k, &s[k]);
    }
    for (int p = 0; p < 3; p++) {
        int pw = p ? ow / 2 : ow, ph = p ? oh / 2 : oh, worst = 0, differ[3] = {0, 0, 0};
        double *ex = malloc(sizeof(double) * (size_t)pw * (size_t)ph), sum = 0, bias = 0;
        exact_plane(&f, p, x, y, w, h, ow, oh, ex);
        for (int j = 0; j < ph; j++)
            for (int i = 0; i < pw; i++) {
                int got = c.p[p][(size_t)j * (size_t)c.stride[p] + (size_t)i];
                double e = fabs(got - ex[(size_t)j * (size_t)pw + (size_t)i]);
                sum += e;
                bias += got - ex[(size_t)j * (size_t)pw + (size_t)i];
                if (e > 1.0 && !worst++)
                    fprintf(stderr, "  plane %d (%d, %d): %d, exact %.3f\n", p, i, j, got,
                            ex[(size_t)j * (size_t)pw + (size_t)i]);
                for (int k = REEL_RESIZE_AVX2; k <= best; k++)
                    differ[k] += got != s[k].p[p][(size_t)j * (size_t)s[k].stride[p] + (size_t)i];
            }
        CHECK(!worst,
              "%s %d:%d:%d crop %dx%d+%d+%d of %dx%d -> %dx%d, plane %d: %d outputs "
              "more than one level from the exact value",
              noise ? "noise" : "picture", cw, ch, p, w, h, x, y, fw, fh, ow, oh, p, worst);
        /* rounding alone: 0.25 on average and no bias, up to the mean's own noise (the
         * rounding errors' spread, 0.29, over the square root of the count); the
         * intermediate's 1/64 adds a little. A lost rounding offset would give 0.5. */
        CHECK(sum / (pw * ph) < 0.28 && fabs(bias) / (pw * ph) < 0.02 + 1.5 / sqrt(pw * ph),
              "crop %dx%d+%d+%d -> %dx%d plane %d: mean error %.3f, bias %.3f", w, h, x, y, ow, oh,
              p, sum / (pw * ph), bias / (pw * ph));
        if (getenv("REEL_TEST_VERBOSE"))
            printf("crop %dx%d+%d+%d -> %dx%d plane %d: mean error %.3f, bias %+.4f\n", w, h, x, y,
                   ow, oh, p, sum / (pw * ph), bias / (pw * ph));
        for (int k = REEL_RESIZE_AVX2; k <= best; k++)
            CHECK(!differ[k], "crop %dx%d+%d+%d -> %dx%d plane %d: %s and C differ in %d samples",
                  w, h, x, y, ow, oh, p, kernel_name[k], differ[k]);
        free(ex);
    }
    out_free(&c);
    for (int k = REEL_RESIZE_AVX2; k <= best; k++)
        out_free(&s[k]);
    frame_free(&f);
}

/* A moving crop (pans, a parity change, a zoom, back) through one scaler that
 * keeps its tables between frames must give what a fresh scaler gives. */
static void check_moving_crop(void)
{
    static const int crops[][4] = {{10, 4, 60, 80}, {12, 4, 60, 80}, {12, 4, 61, 81},
                                   {13, 5, 61, 81}, {13, 5, 60, 80}, {13, 5, 58, 78},
                                   {20, 9, 71, 95}, {10, 4, 60, 80}};
    ReelResize kept;
    Frame f;
    Out a, b;
    int bad = 0;

    reel_resize_init(&kept);
    frame_make(&f, 128, 112, 1, 1, 1);
    out_make(&a, 90, 120);
    out_make(&b, 90, 120);
    for (size_t i = 0; i < sizeof(crops) / sizeof(crops[0]); i++) {
        const int *c = crops[i];
        CHECK(reel_resize_set(&kept, AV_PIX_FMT_YUV420P, c[0], c[1], c[2], c[3], 90, 120) == 0,
              "moving crop %zu", i);
        reel_resize_run(&kept, (const uint8_t *const *)f.p, f.stride, a.p, a.stride);
        scale(&f, c[0], c[1], c[2], c[3], 90, 120, reel_resize_simd_supported(), &b);
        for (int p = 0; p < 3; p++)
            for (int y = 0; y < (p ? 60 : 120); y++)
                bad += memcmp(a.p[p] + (size_t)y * (size_t)a.stride[p],
                              b.p[p] + (size_t)y * (size_t)b.stride[p], p ? 45 : 90) != 0;
    }
    CHECK(!bad, "a scaler that kept its tables differs from a fresh one in %d rows", bad);
    reel_resize_free(&kept);
    out_free(&a);
    out_free(&b);
    frame_free(&f);
}

/* The same crop through swscale's Lanczos (as the pipeline set it up before):
 * PSNR of ours against it, luma and chroma together. */
static double vs_swscale(int fw, int fh, int x, int y, int w, int h, int ow, int oh)
{
    Frame f;
    Out o, r;
    const uint8_t *src[3];
    double se = 0;
    long n = 0;

    frame_make(&f, fw, fh, 1, 1, 0);
    out_make(&o, ow, oh);
    out_make(&r, ow, oh);
    scale(&f, x, y, w, h, ow, oh, reel_resize_simd_supported(), &o);
    struct SwsContext *c = sws_getContext(w, h, AV_PIX_FMT_YUV420P, ow, oh, AV_PIX_FMT_YUV420P,
                                          SWS_LANCZOS | SWS_ACCURATE_RND, NULL, NULL, NULL);
    for (int p = 0; p < 3; p++)
        src[p] = f.p[p] + (size_t)(p ? y / 2 : y) * (size_t)f.stride[p] + (size_t)(p ? x / 2 : x);
    sws_scale(c, src, f.stride, 0, h, r.p, r.stride);
    sws_freeContext(c);
    for (int p = 0; p < 3; p++)
        for (int j = 0; j < (p ? oh / 2 : oh); j++)
            for (int i = 0; i < (p ? ow / 2 : ow); i++) {
                double d = o.p[p][(size_t)j * (size_t)o.stride[p] + (size_t)i] -
                           r.p[p][(size_t)j * (size_t)r.stride[p] + (size_t)i];
                se += d * d;
                n++;
            }
    out_free(&o);
    out_free(&r);
    frame_free(&f);
    return se > 0 ? 10 * log10(255.0 * 255 * (double)n / se) : 99;
}

int main(void)
{
    ReelResize rs;

    printf("kernels checked against C: %s\n",
           reel_resize_simd_supported() == REEL_RESIZE_AVX512 ? "AVX2, AVX-512"
           : reel_resize_simd_supported() == REEL_RESIZE_AVX2 ? "AVX2"
                                                              : "none (C only on this CPU)");
    for (int noise = 0; noise < 2; noise++) {
        /* the product's case, small: a 9:16 crop of a landscape frame, scaled up */
        check_case(noise, 1, 1, 192, 108, 66, 0, 60, 108, 108, 192);
        /* odd offsets: chroma starts half a sample into its first input */
        check_case(noise, 1, 1, 160, 90, 33, 7, 61, 75, 120, 150);
        check_case(noise, 1, 0, 160, 90, 33, 7, 61, 75, 120, 150);
        check_case(noise, 0, 0, 160, 90, 33, 7, 61, 75, 120, 150);
        /* exact ratios (1:3, 2:5, 2:3 up): outputs whose centre falls on an input's, up to
         * the rounding of the position (the kernel must be 1 there, not 0/0) */
        check_case(noise, 1, 1, 100, 60, 10, 10, 30, 20, 90, 60);
        check_case(noise, 1, 1, 100, 64, 10, 12, 40, 16, 100, 40);
        check_case(noise, 1, 1, 120, 80, 2, 2, 60, 40, 90, 60);
        /* chroma 13 -> 23: output 11's centre computes 9e-16 off input 6's */
        check_case(noise, 1, 1, 64, 64, 4, 4, 26, 26, 46, 46);
        /* the output at the crop's size; widths off the kernels' 16 and 32 */
        check_case(noise, 1, 1, 100, 60, 10, 10, 70, 46, 70, 46);
        check_case(noise, 1, 1, 100, 60, 1, 1, 37, 23, 98, 58);
        /* crops smaller than the filter */
        check_case(noise, 1, 1, 16, 16, 5, 5, 1, 1, 16, 16);
        check_case(noise, 1, 1, 16, 16, 3, 4, 3, 2, 34, 20);
        /* a 4:3 reduction (8 taps), and the edges of the frame */
        check_case(noise, 1, 1, 200, 120, 0, 0, 200, 120, 150, 90);
        check_case(noise, 0, 0, 200, 120, 0, 0, 200, 120, 300, 180);
    }
    for (int i = 0; i < 40; i++) { /* random crops, up to the 4:3 reduction */
        int fw = 48 + (int)(next() % 120), fh = 48 + (int)(next() % 120);
        int w = 1 + (int)(next() % (unsigned)fw), h = 1 + (int)(next() % (unsigned)fh);
        int x = (int)(next() % (unsigned)(fw - w + 1)), y = (int)(next() % (unsigned)(fh - h + 1));
        int sub = (int)(next() % 3), cw = sub < 2, ch = sub < 1;
        /* the output's chroma is 4:2:0: a 4:4:4 or 4:2:2 source's chroma must be scaled up
         * at least 3:2 where it is not subsampled to stay within 4:3 */
        int mw = cw ? (w * 3 + 3) / 4 : (w * 3 + 1) / 2,
            mh = ch ? (h * 3 + 3) / 4 : (h * 3 + 1) / 2;
        int ow = 2 * ((mw + 1) / 2 + (int)(next() % 60)),
            oh = 2 * ((mh + 1) / 2 + (int)(next() % 60));
        check_case((int)(next() & 1), cw, ch, fw, fh, x, y, w, h, ow, oh);
    }

    check_moving_crop();

    /* what it leaves to swscale */
    reel_resize_init(&rs);
    CHECK(reel_resize_set(&rs, AV_PIX_FMT_YUV420P, 0, 0, 200, 100, 100, 50) == AVERROR(ENOSYS),
          "a 2:1 reduction must be left to swscale");
    CHECK(reel_resize_set(&rs, AV_PIX_FMT_YUV444P, 0, 0, 100, 100, 100, 100) == AVERROR(ENOSYS),
          "4:4:4 at the same size (its chroma 2:1 smaller) must be left to swscale");
    CHECK(reel_resize_set(&rs, AV_PIX_FMT_NV12, 0, 0, 100, 100, 200, 200) == AVERROR(ENOSYS),
          "NV12 must be left to swscale");
    CHECK(reel_resize_set(&rs, AV_PIX_FMT_YUV420P10LE, 0, 0, 100, 100, 200, 200) == AVERROR(ENOSYS),
          "10-bit must be left to swscale");
    CHECK(reel_resize_set(&rs, AV_PIX_FMT_YUV420P, 0, 0, 100, 100, 201, 200) == AVERROR(EINVAL),
          "an odd output width is an error");
    reel_resize_free(&rs);

    /* the filter swscale had on this path (even crops: the same geometry) */
    double db = vs_swscale(384, 216, 132, 0, 122, 216, 216, 384);
    printf("against swscale's Lanczos, 122x216 -> 216x384: PSNR %.2f dB\n", db);
    CHECK(db >= 45.0, "PSNR %.2f dB against swscale's Lanczos (want >= 45)", db);
    db = vs_swscale(384, 216, 0, 0, 384, 216, 288, 162);
    printf("against swscale's Lanczos, 384x216 -> 288x162: PSNR %.2f dB\n", db);
    CHECK(db >= 45.0, "PSNR %.2f dB against swscale's Lanczos (want >= 45)", db);

    if (failures)
        fprintf(stderr, "%d checks failed\n", failures);
    return failures ? 1 : 0;
}
