/*
 * resize.c - the Lanczos-3 scaler's tables, its C kernels and its driver
 * (resize.h; the AVX-512 kernels are in resize_avx512.c).
 */
#include "media/resize.h"

#include <libavutil/error.h>
#include <libavutil/pixfmt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ONE (1 << REEL_RESIZE_COEF_BITS)

static void axis_free(ReelResizeAxis *a)
{
    free(a->start);
    free(a->coef);
    free(a->gbase);
    free(a->gidx);
    free(a->gcoef);
    free(a->qbase);
    free(a->qshuf);
    free(a->qcoef);
    memset(a, 0, sizeof(*a));
}

/* The inputs output i reads, before clamping to the axis: those with
 * |j - pos| < support, pos = off + (i + 0.5) * step - 0.5. */
static void window(int i, double off, double step, double support, double *pos, int *lo, int *hi)
{
    *pos = off + (i + 0.5) * step - 0.5;
    *lo = (int)floor(*pos - support) + 1;
    *hi = (int)ceil(*pos + support) - 1;
}

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The horizontal SIMD tables: per group of 16 outputs, where it loads 32
 * input bytes and, per pair of taps, which byte and which coefficient each
 * 16-bit lane takes. Lanes past n_out repeat nothing (coefficient 0). */
static int axis_groups(ReelResizeAxis *a)
{
    int pairs = (a->taps + 1) / 2, G = REEL_RESIZE_HGROUP;

    a->ngroups = (a->n_out + G - 1) / G;
    a->gbase = malloc((size_t)a->ngroups * sizeof(*a->gbase));
    a->gidx = calloc((size_t)a->ngroups * (size_t)pairs * 32, sizeof(*a->gidx));
    a->gcoef = calloc((size_t)a->ngroups * (size_t)pairs * 32, sizeof(*a->gcoef));
    if (!a->gbase || !a->gidx || !a->gcoef)
        return AVERROR(ENOMEM);
    a->simd = 1;
    for (int g = 0; g < a->ngroups; g++) {
        int base = a->start[g * G];
        a->gbase[g] = base;
        for (int l = 0; l < G && g * G + l < a->n_out; l++) {
            int i = g * G + l, rel = a->start[i] - base;
            if (rel + a->taps > 32)
                a->simd = 0;
            for (int k = 0; k < 2 * pairs; k++) {
                size_t at =
                    ((size_t)g * (size_t)pairs + (size_t)(k / 2)) * 32 + (size_t)(2 * l + k % 2);
                a->gidx[at] = (int16_t)(k < a->taps ? rel + k : rel);
                a->gcoef[at] = k < a->taps ? a->coef[(size_t)i * (size_t)a->taps + (size_t)k] : 0;
            }
        }
    }
    return 0;
}

/* The AVX2 horizontal tables: per quad of 4 outputs, the 16 input bytes its
 * 128-bit lane loads and, per pair of taps, which of them each output's
 * 16-bit halves take (0x80: zero, the byte's upper half) and with which
 * coefficient. Quads whose 16 bytes would pass the region's end, and all after
 * them, are the C kernel's (nquads). */
static int axis_quads(ReelResizeAxis *a)
{
    int pairs = (a->taps + 1) / 2, nq = (a->n_out + 3) / 4, npq = (nq + 1) / 2;

    a->qbase = malloc((size_t)nq * sizeof(*a->qbase));
    a->qshuf = malloc((size_t)npq * (size_t)pairs * 32);
    a->qcoef = calloc((size_t)npq * (size_t)pairs * 16, sizeof(*a->qcoef));
    if (!a->qbase || !a->qshuf || !a->qcoef)
        return AVERROR(ENOMEM);
    memset(a->qshuf, 0x80, (size_t)npq * (size_t)pairs * 32);
    for (int q = 0; q < nq; q++) {
        int base = a->start[4 * q], ok = base + 16 <= a->n_in;
        for (int l = 0; l < 4 && 4 * q + l < a->n_out; l++)
            ok = ok && a->start[4 * q + l] - base + a->taps <= 16;
        if (!ok)
            break;
        a->qbase[q] = base;
        for (int l = 0; l < 4 && 4 * q + l < a->n_out; l++) {
            int i = 4 * q + l, rel = a->start[i] - base;
            for (int k = 0; k < 2 * pairs; k++) {
                size_t pq = (size_t)(q / 2) * (size_t)pairs + (size_t)(k / 2);
                a->qshuf[pq * 32 + (size_t)(q % 2) * 16 + (size_t)(4 * l + 2 * (k % 2))] =
                    (uint8_t)(k < a->taps ? rel + k : rel);
                a->qcoef[pq * 16 + (size_t)(q % 2) * 8 + (size_t)(2 * l + k % 2)] =
                    k < a->taps ? a->coef[(size_t)i * (size_t)a->taps + (size_t)k] : 0;
            }
        }
        a->nquads = q + 1;
    }
    return 0;
}

/*
 * One axis: n_in inputs (the crop's extent in this plane, rounded out to
 * whole samples) to n_out outputs; the crop starts off samples into the
 * first input and spans step inputs per output. Taps that fall outside the
 * inputs add their weight to the edge sample. AVERROR(ENOSYS) when an output
 * would need more than REEL_RESIZE_MAX_TAPS inputs.
 */
static int axis_build(ReelResizeAxis *a, int level, int n_in, int n_out, double off, double step)
{
    double scale = step > 1.0 ? step : 1.0, support = 3.0 * scale;
    double w[REEL_RESIZE_MAX_TAPS];
    /* sin and cos of the angles one input further adds: pi / scale, pi / (3 scale) */
    const double rot[4] = {sin(M_PI / scale), cos(M_PI / scale), sin(M_PI / scale / 3),
                           cos(M_PI / scale / 3)};
    int taps = 0;

    memset(a, 0, sizeof(*a));
    for (int i = 0; i < n_out; i++) {
        double pos;
        int lo, hi;
        window(i, off, step, support, &pos, &lo, &hi);
        lo = clampi(lo, 0, n_in - 1);
        hi = clampi(hi, 0, n_in - 1);
        if (hi - lo + 1 > taps)
            taps = hi - lo + 1;
    }
    if (taps > REEL_RESIZE_MAX_TAPS)
        return AVERROR(ENOSYS);
    a->n_in = n_in, a->n_out = n_out, a->taps = taps, a->off = off, a->step = step;
    a->start = malloc((size_t)n_out * sizeof(*a->start));
    a->coef = calloc((size_t)n_out * (size_t)taps, sizeof(*a->coef));
    if (!a->start || !a->coef)
        goto nomem;
    for (int i = 0; i < n_out; i++) {
        double pos, sum = 0.0;
        int lo, hi, first, start, qsum = 0, big = 0;
        int16_t *c = a->coef + (size_t)i * (size_t)taps;

        window(i, off, step, support, &pos, &lo, &hi);
        first = clampi(lo, 0, n_in - 1);
        start = first < n_in - taps ? first : n_in - taps;
        memset(w, 0, sizeof(w));
        /* lanczos3((j - pos) / scale), its two sines stepped from j = lo by angle
         * addition: four trigonometric calls per output instead of two per tap. Near
         * t = 0 the sines are tiny and the stepping's absolute error is not: there
         * (an input under the output's centre, up to rounding) they are taken afresh. */
        double ang = M_PI * (lo - pos) / scale, s1 = sin(ang), c1 = cos(ang), s3 = sin(ang / 3),
               c3 = cos(ang / 3);
        for (int j = lo; j <= hi; j++) {
            double t = (j - pos) / scale, n1, n3, v;
            if (t == 0.0)
                v = 1.0;
            else if (fabs(t) >= 3.0)
                v = 0.0;
            else if (fabs(t) < 1e-3)
                v = 3.0 * sin(M_PI * t) * sin(M_PI * t / 3) / (M_PI * M_PI * t * t);
            else
                v = 3.0 * s1 * s3 / (M_PI * M_PI * t * t);
            w[clampi(j, 0, n_in - 1) - start] += v;
            sum += v;
            n1 = s1 * rot[1] + c1 * rot[0], c1 = c1 * rot[1] - s1 * rot[0], s1 = n1;
            n3 = s3 * rot[3] + c3 * rot[2], c3 = c3 * rot[3] - s3 * rot[2], s3 = n3;
        }
        for (int k = 0; k < taps; k++) {
            c[k] = (int16_t)lrint(w[k] / sum * ONE);
            qsum += c[k];
            if (fabs(w[k]) > fabs(w[big]))
                big = k;
        }
        c[big] = (int16_t)(c[big] + ONE - qsum); /* each row sums to exactly one */
        a->start[i] = start;
    }
    /* the horizontal tables of the kernels that will run: AVX-512's, and AVX2's where
     * AVX2 runs (or stands in for AVX-512 on a group wider than 32 bytes) */
    if ((level == REEL_RESIZE_AVX512 && axis_groups(a) < 0) ||
        (level >= REEL_RESIZE_AVX2 && !a->simd && axis_quads(a) < 0))
        goto nomem;
    return 0;
nomem:
    axis_free(a);
    return AVERROR(ENOMEM);
}

/* axis_build, unless the axis already has these tables */
static int axis_set(ReelResizeAxis *a, int level, int n_in, int n_out, double off, double step)
{
    if (a->coef && a->n_in == n_in && a->n_out == n_out && a->off == off && a->step == step)
        return 0;
    axis_free(a);
    return axis_build(a, level, n_in, n_out, off, step);
}

int reel_resize_simd_supported(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
        return REEL_RESIZE_AVX512;
    if (__builtin_cpu_supports("avx2"))
        return REEL_RESIZE_AVX2;
#endif
    return REEL_RESIZE_C;
}

void reel_resize_init(ReelResize *rs)
{
    memset(rs, 0, sizeof(*rs));
    rs->use_simd = reel_resize_simd_supported();
}

void reel_resize_free(ReelResize *rs)
{
    int level = rs->use_simd;

    for (int p = 0; p < 3; p++) {
        axis_free(&rs->plane[p].h);
        axis_free(&rs->plane[p].v);
        free(rs->plane[p].ring);
        free(rs->plane[p].acc);
    }
    memset(rs, 0, sizeof(*rs));
    rs->use_simd = level;
}

int reel_resize_set(ReelResize *rs, int fmt, int x, int y, int w, int h, int out_w, int out_h)
{
    int cw, ch, ret;

    switch (fmt) {
    case AV_PIX_FMT_YUV420P:
        cw = 1, ch = 1;
        break;
    case AV_PIX_FMT_YUV422P:
        cw = 1, ch = 0;
        break;
    case AV_PIX_FMT_YUV444P:
        cw = 0, ch = 0;
        break;
    default:
        return AVERROR(ENOSYS);
    }
    if (w < 1 || h < 1 || x < 0 || y < 0 || out_w < 2 || out_h < 2 || (out_w | out_h) & 1)
        return AVERROR(EINVAL);
    for (int p = 0; p < 3; p++) {
        ReelResizePlane *pl = &rs->plane[p];
        int sx = p ? cw : 0, sy = p ? ch : 0, dx = p ? 1 : 0;
        int x0 = x >> sx, y0 = y >> sy;
        int x1 = (x + w + (1 << sx) - 1) >> sx, y1 = (y + h + (1 << sy) - 1) >> sy;
        int nw = out_w >> dx, nh = out_h >> dx, rstride = (nw + 31) & ~31;
        /* in this plane's samples: the crop starts at x / 2^sx and spans w / 2^sx; an
         * axis is rebuilt only when that changed (a pan keeps the luma tables) */
        if ((ret = axis_set(&pl->h, rs->use_simd, x1 - x0, nw, (double)x / (1 << sx) - x0,
                            (double)w / (1 << sx) / nw)) < 0 ||
            (ret = axis_set(&pl->v, rs->use_simd, y1 - y0, nh, (double)y / (1 << sy) - y0,
                            (double)h / (1 << sy) / nh)) < 0)
            goto fail;
        pl->x0 = x0, pl->y0 = y0;
        if (pl->rstride != rstride) {
            free(pl->ring);
            free(pl->acc);
            pl->rstride = rstride;
            pl->ring = calloc((size_t)REEL_RESIZE_MAX_TAPS * (size_t)rstride, sizeof(*pl->ring));
            pl->acc = malloc((size_t)rstride * sizeof(*pl->acc));
            if (!pl->ring || !pl->acc) {
                ret = AVERROR(ENOMEM);
                goto fail;
            }
        }
    }
    return 0;
fail:
    reel_resize_free(rs);
    return ret;
}

/* one output of the horizontal pass, for a tap count known when compiled */
static inline int16_t h_one(const int16_t *c, const uint8_t *s, int taps)
{
    int32_t acc = 1 << (REEL_RESIZE_MID_SHIFT - 1);
    for (int k = 0; k < taps; k++)
        acc += c[k] * s[k];
    acc >>= REEL_RESIZE_MID_SHIFT; /* arithmetic shift: a floor, as the SIMD kernel's */
    return (int16_t)(acc < INT16_MIN ? INT16_MIN : acc > INT16_MAX ? INT16_MAX : acc);
}

#define H_ROW(T)                                                                                   \
    for (int i = from; i < a->n_out; i++)                                                          \
        dst[i] = h_one(a->coef + (size_t)i * (T), src + a->start[i], (T));                         \
    break

/* outputs from `from` on (the AVX2 kernel leaves the last few to this) */
void reel_resize_h_c_from(const ReelResizeAxis *a, const uint8_t *src, int16_t *dst, int from)
{
    switch (a->taps) { /* unrolled per tap count */
    case 1:
        H_ROW(1);
    case 2:
        H_ROW(2);
    case 3:
        H_ROW(3);
    case 4:
        H_ROW(4);
    case 5:
        H_ROW(5);
    case 6:
        H_ROW(6);
    case 7:
        H_ROW(7);
    default:
        H_ROW(8);
    }
}

void reel_resize_h_c(const ReelResizeAxis *a, const uint8_t *src, int16_t *dst)
{
    reel_resize_h_c_from(a, src, dst, 0);
}

void reel_resize_v_c(const ReelResizeAxis *a, int y, const int16_t *const *rows, int width,
                     int32_t *acc, uint8_t *dst)
{
    const int16_t *c = a->coef + (size_t)y * (size_t)a->taps;
    /* tap by tap over the row, so that the compiler vectorises the loops */
    for (int x = 0; x < width; x++)
        acc[x] = 1 << (REEL_RESIZE_OUT_SHIFT - 1);
    for (int k = 0; k < a->taps; k++) {
        const int16_t *r = rows[k];
        int32_t ck = c[k];
        for (int x = 0; x < width; x++)
            acc[x] += ck * r[x];
    }
    for (int x = 0; x < width; x++) {
        int32_t v = acc[x] >> REEL_RESIZE_OUT_SHIFT;
        dst[x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
}

/*
 * The horizontal pass prefetches the source row it will read this many rows
 * on. In an export the decoded frame is out of cache by the time its turn
 * comes, and a row is short (606 bytes of a 1080p portrait crop), too short
 * for the hardware's prefetchers to run ahead within it: the pass waited on
 * every row. `resize_bench --cold 16 1920x1080 606x1080 1080x1920` (sources and
 * outputs out of cache): 1.86 -> 1.02 ms per frame; in `clipreel export` of
 * that crop (thread CPU time per frame) 2.5 -> 1.5 ms. 2 to 8 rows measure
 * alike. Streaming the output rows (non-temporal stores) instead was slower
 * (1.13 ms).
 */
#define PF_ROWS 4

static void plane_run(const ReelResizePlane *pl, int simd, const uint8_t *src, int sstride,
                      uint8_t *dst, int dstride)
{
    const ReelResizeAxis *h = &pl->h, *v = &pl->v;
    const int16_t *rows[REEL_RESIZE_MAX_TAPS];
    int T = v->taps, have = 0; /* rows below have are in the ring (the last T of them) */

    src += (ptrdiff_t)pl->y0 * sstride + pl->x0;
    for (int oy = 0; oy < v->n_out; oy++) {
        int s0 = v->start[oy];
        if (have < s0)
            have = s0;
        for (; have < s0 + T; have++) {
            const uint8_t *row = src + (ptrdiff_t)have * sstride;
            if (have + PF_ROWS < v->n_in)
                for (int b = 0; b < h->n_in; b += 64)
                    __builtin_prefetch(row + (ptrdiff_t)PF_ROWS * sstride + b, 0, 0);
            int16_t *mid = pl->ring + (size_t)(have % T) * (size_t)pl->rstride;
            if (simd == REEL_RESIZE_AVX512 && h->simd)
                reel_resize_h_avx512(h, row, mid);
            else if (simd >= REEL_RESIZE_AVX2)
                reel_resize_h_avx2(h, row, mid);
            else
                reel_resize_h_c(h, row, mid);
        }
        for (int k = 0; k < T; k++)
            rows[k] = pl->ring + (size_t)((s0 + k) % T) * (size_t)pl->rstride;
        if (simd == REEL_RESIZE_AVX512)
            reel_resize_v_avx512(v, oy, rows, h->n_out, dst + (ptrdiff_t)oy * dstride);
        else if (simd == REEL_RESIZE_AVX2)
            reel_resize_v_avx2(v, oy, rows, h->n_out, dst + (ptrdiff_t)oy * dstride);
        else
            reel_resize_v_c(v, oy, rows, h->n_out, pl->acc, dst + (ptrdiff_t)oy * dstride);
    }
}

void reel_resize_run(ReelResize *rs, const uint8_t *const src[3], const int src_stride[3],
                     uint8_t *const dst[3], const int dst_stride[3])
{
    for (int p = 0; p < 3; p++)
        plane_run(&rs->plane[p], rs->use_simd, src[p], src_stride[p], dst[p], dst_stride[p]);
}
