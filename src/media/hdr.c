/*
 * hdr.c - HDR and wide-gamut sources into SDR BT.709 (see hdr.h).
 *
 * Light is measured in SDR white: 1.0 is HDR reference white, 203 cd/m2
 * (BT.2408), where HLG's 75 % and PQ's 58 % sit, and which SDR shows as its
 * white. Per pixel: R'G'B' to light through a table (HLG: scene light, then
 * the BT.2100 OOTF for a 1000 cd/m2 display, which depends on the pixel's
 * luminance), BT.2020 to BT.709 primaries, colours outside BT.709 clipped,
 * then light above 0.8 rolled off towards 1.0 (on the largest component, so
 * that hue stays: extended Reinhard, slope 1 at 0.8, 1.0 at the 1000 cd/m2
 * peak), then encoded for an SDR display (BT.1886's 2.4 power inverted)
 * through a table.
 */
#include "media/hdr.h"

#include <math.h>
#include <stdlib.h>

#include <libavutil/pixfmt.h>

#define LIGHT_STEPS 16384 /* the SDR encoding's table: light 0..1 */
#define YS_STEPS 4096     /* HLG's OOTF gain's table: scene luminance 0..1 */

static const double ref_white = 203.0; /* cd/m2 (BT.2408 HDR reference white) */
static const double peak = 1000.0;     /* cd/m2: HLG's nominal display; PQ's assumed master */
static const float knee = 0.8f;        /* light kept as it is up to here */

struct ReelToneMap {
    ReelHdrKind kind;
    int bt2020;               /* BT.2020 primaries to map to BT.709's */
    float light[65536];       /* code -> light (HLG: scene light 0..1) */
    float ootf[YS_STEPS + 1]; /* HLG: scene luminance -> display gain, in SDR white */
    uint8_t oetf[LIGHT_STEPS + 1];
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

ReelToneMap *reel_tonemap_new(ReelHdrKind kind, int bt2020)
{
    ReelToneMap *t;

    if (kind == REEL_HDR_NONE || !(t = malloc(sizeof(*t))))
        return NULL;
    t->kind = kind;
    t->bt2020 = bt2020;
    for (int i = 0; i < 65536; i++) {
        double v = i / 65535.0;
        t->light[i] = (float)(kind == REEL_HDR_HLG  ? hlg_scene(v)
                              : kind == REEL_HDR_PQ ? pq_display(v) / ref_white
                                                    : sdr_light(v));
    }
    /* HLG's OOTF: display light = peak * Ys^(gamma - 1) * scene light, gamma 1.2 */
    for (int i = 0; i <= YS_STEPS; i++)
        t->ootf[i] = (float)(peak * pow((double)i / YS_STEPS, 0.2) / ref_white);
    for (int i = 0; i <= LIGHT_STEPS; i++)
        t->oetf[i] = (uint8_t)lrint(255.0 * sdr_signal((double)i / LIGHT_STEPS));
    return t;
}

void reel_tonemap_free(ReelToneMap **t)
{
    free(*t);
    *t = NULL;
}

int reel_tonemap_is(const ReelToneMap *t, ReelHdrKind kind, int bt2020)
{
    return t && t->kind == kind && t->bt2020 == bt2020;
}

/* Light above the knee towards 1.0: extended Reinhard on (x - knee) / (1 - knee),
 * whose white point is the peak's, so that the peak lands on 1.0 */
static float roll_off(float x)
{
    const float w = (float)((peak / ref_white - knee) / (1.0 - knee));
    float s = (x - knee) / (1.0f - knee);
    return knee + (1.0f - knee) * s * (1.0f + s / (w * w)) / (1.0f + s);
}

void reel_tonemap_run(const ReelToneMap *t, const uint16_t *src, ptrdiff_t src_stride, int w, int h,
                      uint8_t *dst, ptrdiff_t dst_stride)
{
    /* BT.2020 to BT.709 primaries, in light (BT.2087) */
    static const float to709[9] = {1.6605f,  -0.5876f, -0.0728f, -0.1246f, 1.1329f,
                                   -0.0083f, -0.0182f, -0.1006f, 1.1187f};
    static const float same[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    const float *m = t->bt2020 ? to709 : same;
    const int hlg = t->kind == REEL_HDR_HLG;

    for (int y = 0; y < h; y++) {
        const uint16_t *s = (const uint16_t *)((const uint8_t *)src + y * src_stride);
        uint8_t *d = dst + y * dst_stride;
        for (int x = 0; x < w; x++, s += 3, d += 3) {
            float r = t->light[s[0]], g = t->light[s[1]], b = t->light[s[2]];
            if (hlg) { /* scene light to display light, in SDR white */
                float ys = 0.2627f * r + 0.6780f * g + 0.0593f * b;
                float k = t->ootf[(int)(ys * YS_STEPS + 0.5f)];
                r *= k, g *= k, b *= k;
            }
            float o[3] = {m[0] * r + m[1] * g + m[2] * b, m[3] * r + m[4] * g + m[5] * b,
                          m[6] * r + m[7] * g + m[8] * b};
            float top = 0.0f;
            for (int c = 0; c < 3; c++) {
                o[c] = o[c] > 0.0f ? o[c] : 0.0f; /* outside BT.709: clipped */
                top = o[c] > top ? o[c] : top;
            }
            float gain = top > knee ? roll_off(top) / top : 1.0f;
            for (int c = 0; c < 3; c++) {
                float l = o[c] * gain;
                d[c] = t->oetf[(int)((l < 1.0f ? l : 1.0f) * LIGHT_STEPS + 0.5f)];
            }
        }
    }
}
