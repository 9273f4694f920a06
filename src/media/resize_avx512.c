/*
 * resize_avx512.c - the Lanczos-3 scaler's AVX-512 kernels (resize.h). Built
 * with AVX-512 F/BW/VL code generation: called only when
 * reel_resize_simd_supported() said yes. They compute exactly what the C
 * kernels in resize.c compute (the same products, sums, shifts and clamps).
 */
#include "media/resize.h"

#include <immintrin.h>

/*
 * Horizontal: 16 outputs per step. The group's inputs (at most 32 bytes from
 * gbase) are widened to 16 bits; per pair of taps a permute puts each output's
 * two inputs side by side in its 32-bit lane and vpmaddwd multiplies them by
 * its two coefficients and adds them.
 */
void reel_resize_h_avx512(const ReelResizeAxis *a, const uint8_t *src, int16_t *dst)
{
    const int pairs = (a->taps + 1) / 2;
    const __m512i rnd = _mm512_set1_epi32(1 << (REEL_RESIZE_MID_SHIFT - 1));

    for (int g = 0; g < a->ngroups; g++) {
        int base = a->gbase[g], avail = a->n_in - base;
        __mmask32 m = avail >= 32 ? 0xffffffffu : (1u << avail) - 1;
        __m512i px = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, src + base));
        const int16_t *ix = a->gidx + (size_t)g * (size_t)pairs * 32;
        const int16_t *cf = a->gcoef + (size_t)g * (size_t)pairs * 32;
        __m512i acc = rnd;
        for (int p = 0; p < pairs; p++) {
            __m512i v = _mm512_permutexvar_epi16(_mm512_loadu_si512(ix + p * 32), px);
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(v, _mm512_loadu_si512(cf + p * 32)));
        }
        acc = _mm512_srai_epi32(acc, REEL_RESIZE_MID_SHIFT);
        _mm256_storeu_si256((__m256i *)(dst + g * REEL_RESIZE_HGROUP), _mm512_cvtsepi32_epi16(acc));
    }
}

/*
 * Vertical: 32 outputs per step. Two rows' 16-bit samples interleaved, one
 * vpmaddwd per pair of taps (an odd last tap pairs with itself at weight 0);
 * the pack back to 16 bits restores the order the interleave changed.
 */
void reel_resize_v_avx512(const ReelResizeAxis *a, int y, const int16_t *const *rows, int width,
                          uint8_t *dst)
{
    const __m512i rnd = _mm512_set1_epi32(1 << (REEL_RESIZE_OUT_SHIFT - 1));
    const int16_t *r0[REEL_RESIZE_MAX_TAPS / 2], *r1[REEL_RESIZE_MAX_TAPS / 2];
    uint32_t cw[REEL_RESIZE_MAX_TAPS / 2];
    const int pairs = reel_resize_v_pairs(a, y, rows, r0, r1, cw);
    __m512i cp[REEL_RESIZE_MAX_TAPS / 2];
    const __m512i zero = _mm512_setzero_si512();

    for (int p = 0; p < pairs; p++)
        cp[p] = _mm512_set1_epi32((int)cw[p]);
    for (int x = 0; x < width; x += 32) {
        __m512i lo = rnd, hi = rnd;
        for (int p = 0; p < pairs; p++) {
            __m512i a0 = _mm512_loadu_si512(r0[p] + x), a1 = _mm512_loadu_si512(r1[p] + x);
            lo = _mm512_add_epi32(lo, _mm512_madd_epi16(_mm512_unpacklo_epi16(a0, a1), cp[p]));
            hi = _mm512_add_epi32(hi, _mm512_madd_epi16(_mm512_unpackhi_epi16(a0, a1), cp[p]));
        }
        lo = _mm512_srai_epi32(lo, REEL_RESIZE_OUT_SHIFT);
        hi = _mm512_srai_epi32(hi, REEL_RESIZE_OUT_SHIFT);
        __m512i v = _mm512_max_epi16(_mm512_packs_epi32(lo, hi), zero);
        int left = width - x;
        __mmask32 m = left >= 32 ? 0xffffffffu : (1u << left) - 1;
        _mm256_mask_storeu_epi8(dst + x, m, _mm512_cvtusepi16_epi8(v));
    }
}
