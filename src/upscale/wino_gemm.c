/*
 * wino_gemm.c - the products of the Winograd kernels (see wino.c's DESIGN):
 * per tile position, 6 tiles x 64 output channels of f32 accumulators (24
 * zmm) over the input channels, four weight loads and six broadcasts per 24
 * vdpbf16ps (bf16, over channel pairs) or FMAs (f32); position (1, 1) starts
 * from the bias; the next job's input lines prefetched behind (wino.c, AHEAD).
 *
 * A file of its own so that sanitizer builds can leave it uninstrumented by
 * AddressSanitizer (CMakeLists.txt): a check on each of its loads made the
 * whole upscaler ~6x slower there, too slow for the export tests' deadlines.
 * It reads only the weights, the bias and the job's scratch, at offsets
 * bounded by the sizes create() allocated (its prefetches of the caller's
 * tensors read nothing); the passes that touch the caller's tensors (wino.c)
 * stay checked, and UndefinedBehaviorSanitizer covers both.
 */
#include "upscale/wino_internal.h"

#include <immintrin.h>
#include <stdint.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/*
 * M[tile jb .. jb + 6][channels k0 .. k0 + 16 * nkb][xi] = U[xi] V[xi]; ux,
 * vx at position xi, mx at M[0][0][xi]. bf16: over in_c / 2 channel pairs.
 */
ALWAYS_INLINE void product(const ReelWinoConv *c, const void *ux, const void *vx, float *mx, int jb,
                           int k0, const float *init, const char *pf, int npf, const int nkb,
                           const int bf16)
{
    const int in_c = c->in_c, oc = c->out_c, nxi = c->nxi; /* once: stores may alias c */
    __m512 acc[4][JB];

    for (int kb = 0; kb < nkb; kb++)
        for (int j = 0; j < JB; j++)
            acc[kb][j] = init ? _mm512_loadu_ps(init + kb * 16) : _mm512_setzero_ps();
    if (bf16) {
        const int pairs = in_c / 2;
        const uint32_t *vp = vx;

        for (int p = 0; p < pairs; p++) {
            const uint16_t *wp = (const uint16_t *)ux + ((size_t)p * oc + k0) * 2;
            __m512bh wv[4];

            if (p < npf)
                __builtin_prefetch(pf + (size_t)p * 64, 0, 2);
            for (int kb = 0; kb < nkb; kb++)
                wv[kb] = (__m512bh)_mm512_loadu_si512(wp + kb * 32);
            for (int j = 0; j < JB; j++) {
                __m512bh b = (__m512bh)_mm512_set1_epi32((int)vp[(size_t)(jb + j) * pairs + p]);

                for (int kb = 0; kb < nkb; kb++)
                    acc[kb][j] = _mm512_dpbf16_ps(acc[kb][j], wv[kb], b);
            }
        }
    } else {
        const float *vp = vx;

        for (int ci = 0; ci < in_c; ci++) {
            const float *wp = (const float *)ux + (size_t)ci * oc + k0;
            __m512 wv[4];

            if (ci < npf)
                __builtin_prefetch(pf + (size_t)ci * 64, 0, 2);
            for (int kb = 0; kb < nkb; kb++)
                wv[kb] = _mm512_loadu_ps(wp + kb * 16);
            for (int j = 0; j < JB; j++) {
                __m512 b = _mm512_set1_ps(vp[(size_t)(jb + j) * in_c + ci]);

                for (int kb = 0; kb < nkb; kb++)
                    acc[kb][j] = _mm512_fmadd_ps(wv[kb], b, acc[kb][j]);
            }
        }
    }
    for (int j = 0; j < JB; j++)
        for (int kb = 0; kb < nkb; kb++)
            _mm512_storeu_ps(mx + ((size_t)(jb + j) * oc + k0 + kb * 16) * nxi, acc[kb][j]);
}

ALWAYS_INLINE void products(const ReelWinoConv *c, const void *v, float *m, int nt,
                            ReelWinoAhead *ah, const int bf16)
{
    const int in_c = c->in_c, out_c = c->out_c, nxi = c->nxi, nb = c->nb;
    size_t elem = bf16 ? sizeof(uint16_t) : sizeof(float), uxi = (size_t)in_c * out_c * elem;

    for (int xi = 0; xi < nxi; xi++) {
        const char *ux = (const char *)c->u + xi * uxi;
        const char *vx = (const char *)v + (size_t)xi * nb * in_c * elem;
        float *mx = m + (size_t)xi * 16;

        for (int jb = 0; jb < nt; jb += JB) {
            for (int k0 = 0; k0 < out_c; k0 += 64) {
                /* M at (1, 1) starts from the bias: A' of both tiles has 1s in column 1 */
                const float *init = xi == c->tx + 1 ? c->bias + k0 : NULL;
                /* this block's share of the lines to prefetch, within one range */
                const char *pf = NULL;
                int npf = 0;

                if (ah->r < ah->nr) {
                    size_t left = (ah->len[ah->r] - ah->off) / 64;

                    pf = ah->from[ah->r] + ah->off;
                    npf = left < (size_t)ah->per ? (int)left : ah->per;
                    if ((ah->off += (size_t)npf * 64) >= ah->len[ah->r])
                        ah->r++, ah->off = 0;
                }
                switch ((out_c - k0) / 16) {
                case 1:
                    product(c, ux, vx, mx, jb, k0, init, pf, npf, 1, bf16);
                    break;
                case 2:
                    product(c, ux, vx, mx, jb, k0, init, pf, npf, 2, bf16);
                    break;
                case 3:
                    product(c, ux, vx, mx, jb, k0, init, pf, npf, 3, bf16);
                    break;
                default:
                    product(c, ux, vx, mx, jb, k0, init, pf, npf, 4, bf16);
                    break;
                }
            }
        }
    }
}

void reel_wino_products_bf16(const ReelWinoConv *c, const void *v, float *m, int nt,
                             ReelWinoAhead *ah)
{
    products(c, v, m, nt, ah, 1);
}

void reel_wino_products_f32(const ReelWinoConv *c, const void *v, float *m, int nt,
                            ReelWinoAhead *ah)
{
    products(c, v, m, nt, ah, 0);
}
