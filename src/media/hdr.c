/*
 * hdr.c - HDR and wide-gamut sources into SDR BT.709 (see hdr.h).
 *
 * Light is measured in SDR white: 1.0 is HDR reference white, 203 cd/m2
 * (BT.2408), where HLG's 75 % and PQ's 58 % sit, and which SDR shows as its
 * white. Per pixel: R'G'B' to light through a table (HLG: scene light, then
 * the BT.2100 OOTF for a 1000 cd/m2 display, which depends on the pixel's
 * luminance), BT.2020 to BT.709 primaries, colours outside BT.709 clipped,
 * then light above 0.8 rolled off towards 1.0 (on the largest component, so
 * that hue stays: extended Reinhard, slope 1 at 0.8, 1.0 at the peak: HLG's
 * 1000 cd/m2 display; PQ's source peak, its MaxCLL or its mastering display's,
 * 1000 cd/m2 when the file says neither), then encoded for an SDR display
 * (BT.1886's 2.4 power inverted) through a table.
 */
#include "media/hdr.h"

#include <math.h>
#include <stdlib.h>

#include <libavutil/pixfmt.h>

#define LIGHT_STEPS 16384 /* the SDR encoding's table: light 0..1 */
#define YS_STEPS 4096     /* HLG's OOTF gain's table: scene luminance 0..1 */

static const double ref_white = 203.0; /* cd/m2 (BT.2408 HDR reference white) */
static const double peak = 1000.0;     /* cd/m2: HLG's nominal display; PQ's when not known */
static const float knee = 0.8f;        /* light kept as it is up to here */

struct ReelToneMap {
    ReelHdrKind kind;
    int bt2020;                    /* BT.2020 primaries to map to BT.709's */
    double peak;                   /* cd/m2: the light that lands on SDR white */
    float w;                       /* the roll-off's white point (map_codes) */
    float light[65536];            /* code -> light (HLG: scene light 0..1) */
    float ootf[YS_STEPS + 1];      /* HLG: scene luminance -> display gain, in SDR white */
    uint8_t oetf[LIGHT_STEPS + 1]; /* light -> 8-bit R'G'B' */
    float signal[LIGHT_STEPS + 1]; /* light -> R'G'B' 0..1 */
};

ReelHdrKind reel_hdr_kind(int color_trc, int color_primaries)
{
    if (color_trc == AVCOL_TRC_ARIB_STD_B67)
        return REEL_HDR_HLG;
    if (color_trc == AVCOL_TRC_SMPTE2084)
        return REEL_HDR_PQ;
    if (color_primaries == AVCOL_PRI_BT2020)
        return REEL_HDR_WIDE;
    return REEL_HDR_NONE;
}

/* SDR's display: BT.1886 (a 2.4 power, black at 0), for BT.709 and BT.2020 alike.
 * Display light both ways, as the HDR side's: what the SDR screen shows is the
 * light the HDR one would have shown, up to the roll-off. */
static double sdr_light(double v)
{
    return pow(v, 2.4);
}

static double sdr_signal(double l)
{
    return pow(l, 1.0 / 2.4);
}

/* BT.2100 HLG: signal to scene light 0..1 */
static double hlg_scene(double v)
{
    const double a = 0.17883277, b = 1.0 - 4.0 * a, c = 0.5 - a * log(4.0 * a);
    return v <= 0.5 ? v * v / 3.0 : (exp((v - c) / a) + b) / 12.0;
}

/* BT.2100 PQ: signal to display light, cd/m2 */
static double pq_display(double v)
{
    const double m1 = 2610.0 / 16384, m2 = 2523.0 / 4096 * 128, c1 = 3424.0 / 4096,
                 c2 = 2413.0 / 4096 * 32, c3 = 2392.0 / 4096 * 32;
    double n = pow(v, 1.0 / m2), d = c2 - c3 * n;
    return 10000.0 * pow(fmax(n - c1, 0.0) / d, 1.0 / m1);
}

/* The light a map for kind lands on SDR white, given the source's PQ peak. */
static double white_of(ReelHdrKind kind, double pq_peak)
{
    if (kind != REEL_HDR_PQ || !(pq_peak > 0.0))
        return peak;
    return fmin(fmax(pq_peak, ref_white), 10000.0);
}

ReelToneMap *reel_tonemap_new(ReelHdrKind kind, int bt2020, double pq_peak)
{
    ReelToneMap *t;

    if (kind == REEL_HDR_NONE || !(t = malloc(sizeof(*t))))
        return NULL;
    t->kind = kind;
    t->bt2020 = bt2020;
    t->peak = white_of(kind, pq_peak);
    t->w = (float)((t->peak / ref_white - knee) / (1.0 - knee));
    for (int i = 0; i < 65536; i++) {
        double v = i / 65535.0;
        t->light[i] = (float)(kind == REEL_HDR_HLG  ? hlg_scene(v)
                              : kind == REEL_HDR_PQ ? pq_display(v) / ref_white
                                                    : sdr_light(v));
    }
    /* HLG's OOTF: display light = peak * Ys^(gamma - 1) * scene light, gamma 1.2 */
    for (int i = 0; i <= YS_STEPS; i++)
        t->ootf[i] = (float)(peak * pow((double)i / YS_STEPS, 0.2) / ref_white);
    for (int i = 0; i <= LIGHT_STEPS; i++) {
        t->signal[i] = (float)sdr_signal((double)i / LIGHT_STEPS);
        t->oetf[i] = (uint8_t)lrint(255.0 * t->signal[i]);
    }
    return t;
}

void reel_tonemap_free(ReelToneMap **t)
{
    free(*t);
    *t = NULL;
}

int reel_tonemap_is(const ReelToneMap *t, ReelHdrKind kind, int bt2020, double pq_peak)
{
    return t && t->kind == kind && t->bt2020 == bt2020 && t->peak == white_of(kind, pq_peak);
}

/* BT.2020 to BT.709 primaries, in light (BT.2087) */
static const float to709[9] = {1.6605f,  -0.5876f, -0.0728f, -0.1246f, 1.1329f,
                               -0.0083f, -0.0182f, -0.1006f, 1.1187f};
static const float same[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};

/*
 * Both routes, vectorised: a row is done CHUNK pixels at a time, stage by
 * stage over small arrays, so that the compiler makes vector code of every
 * loop (the tables read with gathers); target_clones builds it for AVX-512,
 * AVX2 and plain x86-64, picked when the program starts. No FMA contraction
 * (this file is compiled with -ffp-contract=off): each clone then rounds
 * every operation the same way, and a frame is bit-identical on every CPU,
 * which parallel exports rely on.
 */
#define CHUNK 256

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&                             \
    !defined(__SANITIZE_ADDRESS__)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES
#endif

typedef struct Coefs {
    float y0, ys, c0, cs; /* codes to Y' 0..1 and to Cb, Cr -0.5..0.5 */
    float rv, gu, gv, bu; /* the source's Y'CbCr to R'G'B' */
} Coefs;

/* n pixels of one row: Y', Cb, Cr to R'G'B' 0..1 (clipped, as the RGB path's
 * 16-bit R'G'B' is) */
CLONES static void to_rgb_signal(const Coefs *k, const float *yv, const float *u, const float *v,
                                 int n, float *r, float *g, float *b)
{
    for (int i = 0; i < n; i++) {
        float rs = yv[i] + k->rv * v[i], gs = yv[i] + k->gu * u[i] + k->gv * v[i];
        float bs = yv[i] + k->bu * u[i];
        r[i] = rs > 0.0f ? (rs < 1.0f ? rs : 1.0f) : 0.0f;
        g[i] = gs > 0.0f ? (gs < 1.0f ? gs : 1.0f) : 0.0f;
        b[i] = bs > 0.0f ? (bs < 1.0f ? bs : 1.0f) : 0.0f;
    }
}

/* The mapping itself: n pixels' 16-bit R'G'B' codes to the SDR encoding's
 * table indices (light 0..1 in LIGHT_STEPS), in place. Light above the knee
 * rolls off towards 1.0 on the largest component (extended Reinhard on
 * (x - knee) / (1 - knee), whose white point is the peak's, so that the peak
 * lands on 1.0). */
CLONES static void map_codes(const ReelToneMap *t, int n, int *ir, int *ig, int *ib)
{
    const float *m = t->bt2020 ? to709 : same;
    float r[CHUNK], g[CHUNK], b[CHUNK];

    for (int i = 0; i < n; i++) {
        r[i] = t->light[ir[i]];
        g[i] = t->light[ig[i]];
        b[i] = t->light[ib[i]];
    }
    if (t->kind == REEL_HDR_HLG) /* scene light to display light, in SDR white */
        for (int i = 0; i < n; i++) {
            float ys = 0.2627f * r[i] + 0.6780f * g[i] + 0.0593f * b[i];
            float gain = t->ootf[(int)(ys * YS_STEPS + 0.5f)];
            r[i] *= gain, g[i] *= gain, b[i] *= gain;
        }
    const float w = t->w;
    for (int i = 0; i < n; i++) {
        float o0 = m[0] * r[i] + m[1] * g[i] + m[2] * b[i];
        float o1 = m[3] * r[i] + m[4] * g[i] + m[5] * b[i];
        float o2 = m[6] * r[i] + m[7] * g[i] + m[8] * b[i];
        o0 = o0 > 0.0f ? o0 : 0.0f; /* outside BT.709: clipped */
        o1 = o1 > 0.0f ? o1 : 0.0f;
        o2 = o2 > 0.0f ? o2 : 0.0f;
        float top = o0 > o1 ? o0 : o1;
        top = top > o2 ? top : o2;
        /* the roll-off's gain, as a select: both sides computed */
        float s = (top - knee) / (1.0f - knee);
        float rolled = knee + (1.0f - knee) * s * (1.0f + s / (w * w)) / (1.0f + s);
        float q = rolled / (top > knee ? top : 1.0f); /* no division under a branch: */
        float gain = top > knee ? q : 1.0f;           /* AVX2 vectorises only then */
        o0 *= gain, o1 *= gain, o2 *= gain;
        ir[i] = (int)((o0 < 1.0f ? o0 : 1.0f) * LIGHT_STEPS + 0.5f);
        ig[i] = (int)((o1 < 1.0f ? o1 : 1.0f) * LIGHT_STEPS + 0.5f);
        ib[i] = (int)((o2 < 1.0f ? o2 : 1.0f) * LIGHT_STEPS + 0.5f);
    }
}

void reel_tonemap_run(const ReelToneMap *t, const uint16_t *src, ptrdiff_t src_stride, int w, int h,
                      uint8_t *dst, ptrdiff_t dst_stride)
{
    int ir[CHUNK], ig[CHUNK], ib[CHUNK];

    for (int y = 0; y < h; y++) {
        const uint16_t *s = (const uint16_t *)((const uint8_t *)src + y * src_stride);
        uint8_t *d = dst + y * dst_stride;
        for (int x0 = 0; x0 < w; x0 += CHUNK) {
            int n = w - x0 < CHUNK ? w - x0 : CHUNK;
            for (int i = 0; i < n; i++) {
                ir[i] = s[3 * (x0 + i)];
                ig[i] = s[3 * (x0 + i) + 1];
                ib[i] = s[3 * (x0 + i) + 2];
            }
            map_codes(t, n, ir, ig, ib);
            for (int i = 0; i < n; i++) {
                d[3 * (x0 + i)] = t->oetf[ir[i]];
                d[3 * (x0 + i) + 1] = t->oetf[ig[i]];
                d[3 * (x0 + i) + 2] = t->oetf[ib[i]];
            }
        }
    }
}

/* n pixels' R'G'B' (0..1, in place) through the tone map: the source's
 * signal in, BT.709's SDR signal out (reel_tonemap_run's mapping) */
CLONES static void tone_chunk(const ReelToneMap *t, int n, float *r, float *g, float *b)
{
    int ir[CHUNK], ig[CHUNK], ib[CHUNK];

    for (int i = 0; i < n; i++) {
        ir[i] = (int)(r[i] * 65535.0f + 0.5f);
        ig[i] = (int)(g[i] * 65535.0f + 0.5f);
        ib[i] = (int)(b[i] * 65535.0f + 0.5f);
    }
    map_codes(t, n, ir, ig, ib);
    for (int i = 0; i < n; i++) {
        r[i] = t->signal[ir[i]];
        g[i] = t->signal[ig[i]];
        b[i] = t->signal[ib[i]];
    }
}

/* n pixels' BT.709 R'G'B' (0..1) to the output's Y' bytes and each pixel's
 * Cb, Cr (-0.5..0.5) */
CLONES static void to_709(int n, const float *r, const float *g, const float *b, uint8_t *dy,
                          float *cb, float *cr)
{
    for (int i = 0; i < n; i++) {
        float l = 0.2126f * r[i] + 0.7152f * g[i] + 0.0722f * b[i];
        float yo = 16.0f + 219.0f * l + 0.5f;
        dy[i] = (uint8_t)(yo < 0.0f ? 0 : yo > 255.0f ? 255 : (int)yo);
        cb[i] = (b[i] - l) * (1.0f / 1.8556f);
        cr[i] = (r[i] - l) * (1.0f / 1.5748f);
    }
}

/* n samples from a row of 8- or 16-bit codes, from x0, as (code - zero) * scale */
CLONES static void load_row(const uint8_t *row, int wide, int x0, int n, float zero, float scale,
                            float *out)
{
    if (wide) {
        const uint16_t *p = (const uint16_t *)row + x0;
        for (int i = 0; i < n; i++)
            out[i] = ((float)p[i] - zero) * scale;
    } else {
        for (int i = 0; i < n; i++)
            out[i] = ((float)row[x0 + i] - zero) * scale;
    }
}

/* Plane p's chroma (Cb or Cr, -0.5..0.5) at luma pixels x0..x0+n-1 of row y,
 * interpolated where it is subsampled: a chroma sample sits in the middle of
 * the 2 (or 2x2) pixels it covers, so a pixel takes 3/4 of its own sample and
 * 1/4 of the next one on its side (bilinear; the region's edge repeats) */
CLONES static void load_chroma(const ReelYuvRegion *s, const Coefs *k, int p, int y, int x0, int n,
                               float *out)
{
    const int wide = s->depth > 8, cw = (s->width + (1 << s->log2_cw) - 1) >> s->log2_cw;
    const int ch = (s->height + (1 << s->log2_ch) - 1) >> s->log2_ch;
    int cy = y >> s->log2_ch, cy2 = cy;
    float a = 1.0f, b = 0.0f;
    if (s->log2_ch) {
        cy2 = y & 1 ? cy + 1 : cy - 1;
        cy2 = cy2 < 0 ? 0 : cy2 >= ch ? ch - 1 : cy2;
        a = 0.75f, b = 0.25f;
    }
    /* the chroma samples this stretch needs, one more each side */
    int lo = (x0 >> s->log2_cw) - 1, hi = ((x0 + n - 1) >> s->log2_cw) + 1;
    float row[CHUNK + 2], row2[CHUNK + 2];
    int first = lo < 0 ? 0 : lo, last = hi >= cw ? cw - 1 : hi;
    load_row(s->plane[p] + cy * s->stride[p], wide, first, last - first + 1, k->c0, k->cs,
             row + (first - lo));
    load_row(s->plane[p] + cy2 * s->stride[p], wide, first, last - first + 1, k->c0, k->cs,
             row2 + (first - lo));
    if (lo < first)
        row[0] = row[1], row2[0] = row2[1];
    if (hi > last)
        row[hi - lo] = row[hi - lo - 1], row2[hi - lo] = row2[hi - lo - 1];
    for (int i = 0; i <= hi - lo; i++)
        row[i] = a * row[i] + b * row2[i];
    if (!s->log2_cw) {
        for (int i = 0; i < n; i++)
            out[i] = row[i + 1];
        return;
    }
    for (int i = 0; i < n; i++) {
        int x = x0 + i, c = (x >> 1) - lo;
        out[i] = 0.75f * row[c] + 0.25f * row[x & 1 ? c + 1 : c - 1];
    }
}

static inline uint8_t chroma8(float sum, float count)
{
    float c = 128.0f + 224.0f * sum / count + 0.5f;
    return (uint8_t)(c < 0.0f ? 0 : c > 255.0f ? 255 : (int)c);
}

/* Cb and Cr of n pixels in `rows` rows (1 or 2): each 2x2 block's mean into
 * du, dv (the sums in one order everywhere: row by row, left to right) */
CLONES static void block_means(int n, int rows, const float (*cb)[CHUNK], const float (*cr)[CHUNK],
                               uint8_t *du, uint8_t *dv)
{
    int pairs = n / 2;
    if (rows == 2) {
        for (int i = 0; i < pairs; i++) {
            du[i] =
                chroma8(cb[0][2 * i] + cb[0][2 * i + 1] + cb[1][2 * i] + cb[1][2 * i + 1], 4.0f);
            dv[i] =
                chroma8(cr[0][2 * i] + cr[0][2 * i + 1] + cr[1][2 * i] + cr[1][2 * i + 1], 4.0f);
        }
    } else {
        for (int i = 0; i < pairs; i++) {
            du[i] = chroma8(cb[0][2 * i] + cb[0][2 * i + 1], 2.0f);
            dv[i] = chroma8(cr[0][2 * i] + cr[0][2 * i + 1], 2.0f);
        }
    }
    if (n & 1) { /* a last column alone */
        float sb = cb[0][n - 1], sr = cr[0][n - 1];
        if (rows == 2)
            sb += cb[1][n - 1], sr += cr[1][n - 1];
        du[pairs] = chroma8(sb, (float)rows);
        dv[pairs] = chroma8(sr, (float)rows);
    }
}

/* The region's codes to Y' 0..1 and Cb, Cr -0.5..0.5, and those to R'G'B' */
static Coefs coefs_of(const ReelYuvRegion *s)
{
    const float one = (float)(1 << (s->depth - 8)); /* an 8-bit step in the source's codes */
    const float kr = (float)s->kr, kb = (float)s->kb, kg = 1.0f - kr - kb;
    Coefs k = {.y0 = s->full_range ? 0.0f : 16.0f * one,
               .ys = s->full_range ? 1.0f / (255.0f * one) : 1.0f / (219.0f * one),
               .c0 = 128.0f * one,
               .cs = s->full_range ? 1.0f / (255.0f * one) : 1.0f / (224.0f * one),
               .rv = 2.0f * (1.0f - kr),
               .bu = 2.0f * (1.0f - kb)};
    k.gu = -k.bu * kb / kg;
    k.gv = -k.rv * kr / kg;
    return k;
}

/* n pixels' R'G'B' (0..1) as RGB24 bytes */
CLONES static void to_bytes(int n, const float *r, const float *g, const float *b, uint8_t *d)
{
    for (int i = 0; i < n; i++) {
        d[3 * i] = (uint8_t)(int)(255.0f * r[i] + 0.5f);
        d[3 * i + 1] = (uint8_t)(int)(255.0f * g[i] + 0.5f);
        d[3 * i + 2] = (uint8_t)(int)(255.0f * b[i] + 0.5f);
    }
}

/* n pixels of row y from x0: R'G'B' (0..1) of the region's Y'CbCr, through t
 * when there is one */
static void map_stretch(const ReelToneMap *t, const ReelYuvRegion *s, const Coefs *k, int y, int x0,
                        int n, float *r, float *g, float *b)
{
    float yv[CHUNK], u[CHUNK], v[CHUNK];

    load_chroma(s, k, 1, y, x0, n, u);
    load_chroma(s, k, 2, y, x0, n, v);
    load_row(s->plane[0] + y * s->stride[0], s->depth > 8, x0, n, k->y0, k->ys, yv);
    to_rgb_signal(k, yv, u, v, n, r, g, b);
    if (t)
        tone_chunk(t, n, r, g, b);
}

void reel_tonemap_yuv_rgb(const ReelToneMap *t, const ReelYuvRegion *s, uint8_t *dst,
                          ptrdiff_t dst_stride)
{
    const Coefs k = coefs_of(s);
    float r[CHUNK], g[CHUNK], b[CHUNK];

    for (int y = 0; y < s->height; y++)
        for (int x0 = 0; x0 < s->width; x0 += CHUNK) {
            int n = s->width - x0 < CHUNK ? s->width - x0 : CHUNK;
            map_stretch(t, s, &k, y, x0, n, r, g, b);
            to_bytes(n, r, g, b, dst + y * dst_stride + 3 * x0);
        }
}

void reel_tonemap_yuv(const ReelToneMap *t, const ReelYuvRegion *s, uint8_t *const dst[3],
                      const int dst_stride[3])
{
    const Coefs k = coefs_of(s);
    float r[CHUNK], g[CHUNK], b[CHUNK], cb[2][CHUNK], cr[2][CHUNK];

    for (int by = 0; by < s->height; by += 2) {
        int rows = by + 1 < s->height ? 2 : 1;
        uint8_t *du = dst[1] + (by / 2) * dst_stride[1], *dv = dst[2] + (by / 2) * dst_stride[2];
        for (int x0 = 0; x0 < s->width; x0 += CHUNK) {
            int n = s->width - x0 < CHUNK ? s->width - x0 : CHUNK;
            for (int j = 0; j < rows; j++) {
                int y = by + j;
                map_stretch(t, s, &k, y, x0, n, r, g, b);
                to_709(n, r, g, b, dst[0] + y * dst_stride[0] + x0, cb[j], cr[j]);
            }
            block_means(n, rows, (const float(*)[CHUNK])cb, (const float(*)[CHUNK])cr, du + x0 / 2,
                        dv + x0 / 2);
        }
    }
}
