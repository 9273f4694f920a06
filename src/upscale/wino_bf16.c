/*
 * wino_bf16.c - a 3x3 convolution in bf16 Winograd F(m x 2, 3x3), m = 4 or 2
 * (see wino_bf16.h).
 *
 * DESIGN
 *
 * Winograd's minimal filtering computes an m x n block of a 3x3 correlation
 * from a (m + 2) x (n + 2) input tile d as
 *     Y = A_v' [ (G_v g G_h') .* (B_v' d B_h) ] A_h
 * with F(4, 3) matrices (points 0, +-1, +-2) vertically when m = 4, F(2, 3)
 * (points 0, +-1) otherwise, and F(2, 3) horizontally. Over channels the
 * element-wise product becomes one small matrix product per tile position xi
 * (24 of them for 6x4 tiles, 16 for 4x4): M[xi] = U[xi] (out_c x in_c) times
 * V[xi] (in_c x tiles). Those products are 9 * m * 2 / ((m + 2) * 4) = 3x
 * (m = 4) or 2.25x fewer multiplications than the direct convolution, and
 * they are the only part in bf16: vdpbf16ps multiplies pairs of bf16 and
 * accumulates in f32, twice the f32 FMA rate. The transforms, the bias and the
 * activation stay in f32.
 *
 * Accuracy. Rounding U and V to bf16 costs what rounding the weights and
 * inputs costs a direct bf16 convolution, amplified by the output transform
 * (its F(4, 3) rows have coefficients up to 8): measured on one random layer
 * against a double-precision reference, direct bf16 52.7 dB, F(2x2) 49.8 dB,
 * F(4x2) 42.4 dB, F(4x4) 34.4 dB (too far from fp32 to use; the reason the
 * horizontal direction stays F(2, 3)).
 *
 * Work is a grid of jobs: one row of tiles, split into blocks of NB tiles
 * (a multiple of the product's 6-tile register block). A job runs in one
 * thread with its own scratch, in three passes that stay in L1/L2:
 *   1. input transform: each input column of the block is transformed
 *      vertically once (B_v' on m + 2 rows) into a ring of four columns (a
 *      tile reads four, its neighbour shares two), then each tile
 *      horizontally (B_h), rounded to bf16 into V[xi][tile][in_c];
 *   2. the products: per xi, 6 tiles x 64 output channels of f32
 *      accumulators (24 zmm) over in_c / 2 channel pairs: four weight loads
 *      and six broadcasts per 24 vdpbf16ps, into M[xi][tile][out_c];
 *   3. output transform: A_v' per column, A_h per row, plus bias, then the
 *      activation (x < 0 -> x * slope: PReLU, leaky ReLU, ReLU), stored as
 *      bf16 or f32; tiles past the edges are computed on zeros and dropped.
 * Threads take jobs dynamically (OpenMP, the runtime oneDNN uses).
 */
#include "upscale/wino_bf16.h"

#include <errno.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "core/error.h"

#define TX 4       /* input tile columns (F(2, 3) horizontally) */
#define MX 2       /* output columns per tile */
#define JB 6       /* tiles per register block of the product */
#define NB 18      /* tiles per job (a multiple of JB) */
#define MAX_TY 6   /* input tile rows, at most (m = 4) */
#define MAX_XI (MAX_TY * TX)

struct ReelWinoConv {
    int in_c, out_c, out_f32, my, ty, nxi;
    int h, w, threads;
    int th, nblk; /* tile rows; jobs per tile row */
    uint16_t *u;  /* [xi][in_c / 2][out_c][2] bf16 */
    float *bias;  /* out_c */
    float *slope; /* out_c, or NULL */
    size_t v_bytes, m_bytes, ring_bytes, per_thread;
};

int reel_wino_bf16_supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bf16");
}

int reel_wino_bf16_fits(int in_c, int out_c)
{
    return in_c > 0 && out_c > 0 && in_c % 16 == 0 && out_c % 16 == 0;
}

/* f32 -> bf16, rounding to nearest even (finite values: weights) */
static uint16_t to_bf16(float f)
{
    uint32_t u;

    memcpy(&u, &f, sizeof(u));
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* G of F(2, 3) and F(4, 3): the weight transform, one row per tile position */
static const double g2[4][3] = {{-1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double g4[6][3] = {{1.0 / 4, 0, 0},
                                {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                {0, 0, 1}};

/* U[xi] = G_v g G_h' for every (out, in) channel pair, in double, rounded once */
static void transform_weights(ReelWinoConv *c, const float *weight)
{
    const double(*gv)[3] = c->my == 4 ? g4 : g2;
    int pairs = c->in_c / 2;

    for (int k = 0; k < c->out_c; k++) {
        for (int ci = 0; ci < c->in_c; ci++) {
            const float *g = weight + ((size_t)k * c->in_c + ci) * 9;
            double t[MAX_TY][3];

            for (int i = 0; i < c->ty; i++)
                for (int x = 0; x < 3; x++)
                    t[i][x] = gv[i][0] * g[x] + gv[i][1] * g[3 + x] + gv[i][2] * g[6 + x];
            for (int i = 0; i < c->ty; i++) {
                for (int j = 0; j < TX; j++) {
                    double v = t[i][0] * g2[j][0] + t[i][1] * g2[j][1] + t[i][2] * g2[j][2];
                    size_t xi = (size_t)i * TX + j;

                    c->u[((xi * pairs + ci / 2) * c->out_c + k) * 2 + (ci & 1)] =
                        to_bf16((float)v);
                }
            }
        }
    }
}

int reel_wino_bf16_create(ReelWinoConv **out, const ReelWinoSpec *sp, char *errmsg)
{
    ReelWinoConv *c;
    size_t nu;

    *out = NULL;
    if (!reel_wino_bf16_fits(sp->in_c, sp->out_c) || (sp->tile_rows != 2 && sp->tile_rows != 4) ||
        sp->h < 1 || sp->w < 1 || sp->threads < 1 || (sp->slope && sp->nslope != 1 &&
                                                       sp->nslope != sp->out_c))
        return reel_fail(errmsg, REEL_ERROR_INTERNAL,
                         "bf16 Winograd: unsupported layer (%d -> %d channels, %dx%d, %d rows)",
                         sp->in_c, sp->out_c, sp->w, sp->h, sp->tile_rows);
    if (!(c = calloc(1, sizeof(*c))))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "bf16 Winograd: out of memory");
    c->in_c = sp->in_c;
    c->out_c = sp->out_c;
    c->out_f32 = sp->out_f32;
    c->my = sp->tile_rows;
    c->ty = c->my + 2;
    c->nxi = c->ty * TX;
    c->h = sp->h;
    c->w = sp->w;
    c->threads = sp->threads;
    c->th = (sp->h + c->my - 1) / c->my;
    c->nblk = ((sp->w + MX - 1) / MX + NB - 1) / NB;
    nu = (size_t)c->nxi * c->in_c * c->out_c;
    c->u = aligned_alloc(64, (nu * sizeof(uint16_t) + 63) & ~(size_t)63);
    c->bias = calloc((size_t)c->out_c, sizeof(float));
    if (sp->slope)
        c->slope = malloc((size_t)c->out_c * sizeof(float));
    if (!c->u || !c->bias || (sp->slope && !c->slope)) {
        reel_wino_bf16_free(&c);
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "bf16 Winograd: out of memory");
    }
    for (int k = 0; k < c->out_c; k++) {
        c->bias[k] = sp->bias ? sp->bias[k] : 0.f;
        if (c->slope)
            c->slope[k] = sp->slope[sp->nslope == 1 ? 0 : k];
    }
    transform_weights(c, sp->weight);
    c->v_bytes = (size_t)c->nxi * NB * c->in_c * sizeof(uint16_t);
    c->m_bytes = (size_t)c->nxi * NB * c->out_c * sizeof(float);
    c->ring_bytes = (size_t)4 * (c->in_c / 16) * c->ty * sizeof(__m512);
    c->per_thread = c->v_bytes + c->m_bytes + c->ring_bytes; /* each a multiple of 64 */
    *out = c;
    return 0;
}

size_t reel_wino_bf16_scratch(const ReelWinoConv *c)
{
    return c->per_thread * (size_t)c->threads;
}

void reel_wino_bf16_free(ReelWinoConv **pc)
{
    ReelWinoConv *c = *pc;

    if (!c)
        return;
    free(c->u);
    free(c->bias);
    free(c->slope);
    free(c);
    *pc = NULL;
}

/* ------------------------------------------------------------------------ */
/* transforms: the matrices' rows with their common terms shared */

/* B' of F(2, 3): 4 inputs -> 4 */
static inline void bt4(const __m512 *d, __m512 *o)
{
    o[0] = _mm512_sub_ps(d[2], d[0]);
    o[1] = _mm512_add_ps(d[1], d[2]);
    o[2] = _mm512_sub_ps(d[2], d[1]);
    o[3] = _mm512_sub_ps(d[3], d[1]);
}

/* B' of F(4, 3): 6 inputs -> 6 */
static inline void bt6(const __m512 *d, __m512 *o)
{
    const __m512 two = _mm512_set1_ps(2.f), four = _mm512_set1_ps(4.f);
    const __m512 five = _mm512_set1_ps(5.f);
    __m512 s = _mm512_add_ps(d[1], d[2]), u = _mm512_add_ps(d[3], d[4]);
    __m512 dd = _mm512_sub_ps(d[1], d[2]), v = _mm512_sub_ps(d[4], d[3]);
    __m512 t1 = _mm512_sub_ps(d[4], d[2]), t2 = _mm512_sub_ps(d[3], d[1]);

    o[0] = _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4]));
    o[1] = _mm512_fnmadd_ps(four, s, u);
    o[2] = _mm512_fmadd_ps(four, dd, v);
    o[3] = _mm512_fmadd_ps(two, t2, t1);
    o[4] = _mm512_fnmadd_ps(two, t2, t1);
    o[5] = _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5]));
}

/* A' of F(2, 3): 4 products -> 2 outputs (added to o) */
static inline void at4(const __m512 *m, __m512 *o)
{
    __m512 t = _mm512_sub_ps(m[1], m[2]);

    o[0] = _mm512_add_ps(o[0], _mm512_add_ps(m[0], _mm512_add_ps(m[1], m[2])));
    o[1] = _mm512_add_ps(o[1], _mm512_add_ps(t, m[3]));
}

/* A' of F(4, 3): 6 products -> 4 outputs */
static inline void at6(const __m512 *m, __m512 *o)
{
    __m512 a = _mm512_add_ps(m[1], m[2]), b = _mm512_sub_ps(m[1], m[2]);
    __m512 c = _mm512_add_ps(m[3], m[4]), d = _mm512_sub_ps(m[3], m[4]);

    o[0] = _mm512_add_ps(m[0], _mm512_add_ps(a, c));
    o[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.f), d, b);
    o[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.f), c, a);
    o[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.f), d, b), m[5]);
}

static inline __m512 load_bf16(const uint16_t *p)
{
    __m512i x = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));

    return _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
}

static inline void store_bf16(uint16_t *p, __m512 v)
{
    _mm256_storeu_si256((__m256i *)p, (__m256i)_mm512_cvtneps_pbh(v));
}

/* ------------------------------------------------------------------------ */
/* one job: tile row `row`, tiles [tx0, tx0 + NB) */

static inline __attribute__((always_inline)) void
input_pass(const ReelWinoConv *c, const uint16_t *src, int row, int tx0, uint16_t *v,
           __m512 *ring, const int my)
{
    /* locals, not c->: the vector stores may alias anything, so fields would be reloaded */
    const int ty = my + 2, in_c = c->in_c, ng = in_c / 16, w = c->w;
    const uint16_t *rows[MAX_TY];
    int y0 = row * my - 1, x0 = tx0 * MX - 1;

    for (int i = 0; i < ty; i++)
        rows[i] = y0 + i >= 0 && y0 + i < c->h ? src + (size_t)(y0 + i) * w * in_c : NULL;
    for (int t = 0; t < NB; t++) {
        /* the columns this tile adds to the ring: four for the first, then two */
        for (int cx = t ? t * MX + TX - MX : 0; cx < t * MX + TX; cx++) {
            int ix = x0 + cx, in = ix >= 0 && ix < w;
            __m512 *col = ring + (size_t)(cx & 3) * ng * ty;

            for (int g = 0; g < ng; g++) {
                __m512 d[MAX_TY];

                for (int i = 0; i < ty; i++)
                    d[i] = in && rows[i] ? load_bf16(rows[i] + (size_t)ix * in_c + g * 16)
                                         : _mm512_setzero_ps();
                if (my == 4)
                    bt6(d, col + g * ty);
                else
                    bt4(d, col + g * ty);
            }
        }
        for (int g = 0; g < ng; g++) {
            for (int i = 0; i < ty; i++) {
                __m512 d[TX], o[TX];

                for (int x = 0; x < TX; x++)
                    d[x] = ring[((size_t)((t * MX + x) & 3) * ng + g) * ty + i];
                bt4(d, o);
                for (int j = 0; j < TX; j++)
                    store_bf16(v + ((size_t)(i * TX + j) * NB + t) * in_c + g * 16, o[j]);
            }
        }
    }
}

/*
 * M[tile jb .. jb + 6][channels k0 .. k0 + 16 * nkb][xi] = U[xi] V[xi] over
 * in_c / 2 channel pairs; mx points at M[0][0][xi] (M's layout: see output_pass)
 */
static inline __attribute__((always_inline)) void
product(const ReelWinoConv *c, const uint16_t *ux, const uint32_t *vx, float *mx, int jb, int k0,
        const int nkb)
{
    const int pairs = c->in_c / 2, oc = c->out_c, nxi = c->nxi; /* once: stores may alias c */
    __m512 acc[4][JB];

    for (int kb = 0; kb < nkb; kb++)
        for (int j = 0; j < JB; j++)
            acc[kb][j] = _mm512_setzero_ps();
    for (int p = 0; p < pairs; p++) {
        const uint16_t *wp = ux + ((size_t)p * oc + k0) * 2;
        __m512bh wv[4];

        for (int kb = 0; kb < nkb; kb++)
            wv[kb] = (__m512bh)_mm512_loadu_si512(wp + kb * 32);
        for (int j = 0; j < JB; j++) {
            __m512bh b = (__m512bh)_mm512_set1_epi32((int)vx[(size_t)(jb + j) * pairs + p]);

            for (int kb = 0; kb < nkb; kb++)
                acc[kb][j] = _mm512_dpbf16_ps(acc[kb][j], wv[kb], b);
        }
    }
    for (int j = 0; j < JB; j++)
        for (int kb = 0; kb < nkb; kb++)
            _mm512_storeu_ps(mx + ((size_t)(jb + j) * oc + k0 + kb * 16) * nxi, acc[kb][j]);
}

static void products(const ReelWinoConv *c, const uint16_t *v, float *m)
{
    const int in_c = c->in_c, out_c = c->out_c, nxi = c->nxi;
    const uint16_t *u = c->u;
    size_t uxi = (size_t)in_c * out_c;

    for (int xi = 0; xi < nxi; xi++) {
        const uint16_t *ux = u + xi * uxi;
        const uint32_t *vx = (const uint32_t *)(v + (size_t)xi * NB * in_c);
        float *mx = m + (size_t)xi * 16;

        for (int jb = 0; jb < NB; jb += JB) {
            for (int k0 = 0; k0 < out_c; k0 += 64) {
                switch ((out_c - k0) / 16) {
                case 1:
                    product(c, ux, vx, mx, jb, k0, 1);
                    break;
                case 2:
                    product(c, ux, vx, mx, jb, k0, 2);
                    break;
                case 3:
                    product(c, ux, vx, mx, jb, k0, 3);
                    break;
                default:
                    product(c, ux, vx, mx, jb, k0, 4);
                    break;
                }
            }
        }
    }
}

/*
 * M is laid out [tile][out_c / 16][xi][16]: the nxi vectors a tile's 16
 * channels need are contiguous, at offsets known at compile time.
 */
static inline __attribute__((always_inline)) void
output_pass(const ReelWinoConv *c, const float *m, int row, int tx0, void *dst, const int my)
{
    const int ty = my + 2, oc = c->out_c, h = c->h, w = c->w, out_f32 = c->out_f32;
    const float *bias_c = c->bias, *slope_c = c->slope;

    const size_t px_bytes = (size_t)oc * (out_f32 ? sizeof(float) : sizeof(uint16_t));

    for (int t = 0; t < NB; t++) {
        int ox = (tx0 + t) * MX;

        if (ox >= w)
            break;
        /* the output lines of the tile after next, for writing: stores then hit the cache */
        if (ox + 2 * MX < w) {
            for (int a = 0; a < my && row * my + a < h; a++) {
                const char *p = (const char *)dst + ((size_t)(row * my + a) * w + ox + 2 * MX) * px_bytes;

                for (size_t off = 0; off < MX * px_bytes; off += 64)
                    __builtin_prefetch(p + off, 1, 3);
            }
        }
        for (int k = 0; k < oc; k += 16) {
            const float *mk = m + ((size_t)t * oc + k) * (ty * TX);
            __m512 bias = _mm512_loadu_ps(bias_c + k), cols[TX][4];

            for (int x = 0; x < TX; x++) {
                __m512 mm[MAX_TY];

                for (int i = 0; i < ty; i++)
                    mm[i] = _mm512_loadu_ps(mk + (i * TX + x) * 16);
                if (my == 4) {
                    at6(mm, cols[x]);
                } else {
                    cols[x][0] = cols[x][1] = _mm512_setzero_ps();
                    at4(mm, cols[x]);
                }
            }
            for (int a = 0; a < my; a++) {
                int oy = row * my + a;
                __m512 r[TX] = {cols[0][a], cols[1][a], cols[2][a], cols[3][a]}, o[MX];

                if (oy >= h)
                    break;
                o[0] = o[1] = bias;
                at4(r, o);
                for (int b = 0; b < MX && ox + b < w; b++) {
                    size_t at = ((size_t)oy * w + ox + b) * oc + k;

                    if (slope_c) {
                        __mmask16 neg = _mm512_cmp_ps_mask(o[b], _mm512_setzero_ps(), _CMP_LT_OQ);

                        o[b] = _mm512_mask_mul_ps(o[b], neg, o[b], _mm512_loadu_ps(slope_c + k));
                    }
                    if (out_f32)
                        _mm512_storeu_ps((float *)dst + at, o[b]);
                    else
                        store_bf16((uint16_t *)dst + at, o[b]);
                }
            }
        }
    }
}

__attribute__((noinline)) static void in4(const ReelWinoConv *c, const uint16_t *src, int row, int tx0, uint16_t *v, __m512 *ring) { input_pass(c, src, row, tx0, v, ring, 4); }
__attribute__((noinline)) static void out4(const ReelWinoConv *c, const float *m, int row, int tx0, void *dst) { output_pass(c, m, row, tx0, dst, 4); }
static void job4(const ReelWinoConv *c, const uint16_t *src, void *dst, int row, int tx0,
                 char *scratch)
{
    uint16_t *v = (uint16_t *)scratch;
    float *m = (float *)(scratch + c->v_bytes);
    __m512 *ring = (__m512 *)(scratch + c->v_bytes + c->m_bytes);

    in4(c, src, row, tx0, v, ring);
    products(c, v, m);
    out4(c, m, row, tx0, dst);
}

static void job2(const ReelWinoConv *c, const uint16_t *src, void *dst, int row, int tx0,
                 char *scratch)
{
    uint16_t *v = (uint16_t *)scratch;
    float *m = (float *)(scratch + c->v_bytes);
    __m512 *ring = (__m512 *)(scratch + c->v_bytes + c->m_bytes);

    input_pass(c, src, row, tx0, v, ring, 2);
    products(c, v, m);
    output_pass(c, m, row, tx0, dst, 2);
}

void reel_wino_bf16_run(const ReelWinoConv *c, const uint16_t *src, void *dst, void *scratch)
{
    int njobs = c->th * c->nblk;

#pragma omp parallel num_threads(c->threads)
    {
        char *mine = (char *)scratch + c->per_thread * (size_t)omp_get_thread_num();

#pragma omp for schedule(dynamic, 1)
        for (int j = 0; j < njobs; j++) {
            if (c->my == 4)
                job4(c, src, dst, j / c->nblk, j % c->nblk * NB, mine);
            else
                job2(c, src, dst, j / c->nblk, j % c->nblk * NB, mine);
        }
    }
}
