/*
 * resize_avx2.c - the Lanczos-3 scaler's AVX2 kernels (resize.h), for CPUs
 * without AVX-512 BW. Built with AVX2 code generation: called only when
 * reel_resize_simd_supported() said at least REEL_RESIZE_AVX2. They compute
 * exactly what the C kernels in resize.c compute.
 */
#include "media/resize.h"

#include <immintrin.h>
#include <string.h>

/*
 * Horizontal: 8 outputs per step, a quad of 4 in each 128-bit lane. Each lane
 * loads the 16 input bytes from its quad's first input (AVX2 shuffles bytes
 * only within a lane); per pair of taps a vpshufb puts each output's two
 * inputs, widened to 16 bits, in its 32-bit lane, and vpmaddwd weighs and adds
 * them. The quads past a->nquads (whose 16 bytes would pass the region's end)
 * are left to the C kernel.
 */
void reel_resize_h_avx2(const ReelResizeAxis *a, const uint8_t *src, int16_t *dst)
{
    const int pairs = (a->taps + 1) / 2;
    const __m256i rnd = _mm256_set1_epi32(1 << (REEL_RESIZE_MID_SHIFT - 1));
    int q = 0;

    for (; q + 2 <= a->nquads; q += 2) {
        const uint8_t *sh = a->qshuf + (size_t)(q / 2) * (size_t)pairs * 32;
        const int16_t *cf = a->qcoef + (size_t)(q / 2) * (size_t)pairs * 16;
        __m256i px = _mm256_loadu2_m128i((const __m128i *)(src + a->qbase[q + 1]),
                                         (const __m128i *)(src + a->qbase[q]));
        __m256i acc = rnd;
        for (int p = 0; p < pairs; p++) {
            __m256i v = _mm256_shuffle_epi8(px, _mm256_loadu_si256((const __m256i *)(sh + p * 32)));
            acc = _mm256_add_epi32(
                acc, _mm256_madd_epi16(v, _mm256_loadu_si256((const __m256i *)(cf + p * 16))));
        }
        acc = _mm256_srai_epi32(acc, REEL_RESIZE_MID_SHIFT);
        /* saturate to 16 bits; the two lanes' four results side by side */
        __m256i v = _mm256_permute4x64_epi64(_mm256_packs_epi32(acc, acc), 0x08);
        _mm_storeu_si128((__m128i *)(dst + q * 4), _mm256_castsi256_si128(v));
    }
    reel_resize_h_c_from(a, src, dst, q * 4); /* the rest as the C kernel does it */
}

/* Vertical: 16 outputs per step, as the AVX-512 kernel in 256 bits. */
void reel_resize_v_avx2(const ReelResizeAxis *a, int y, const int16_t *const *rows, int width,
                        uint8_t *dst)
{
    const __m256i rnd = _mm256_set1_epi32(1 << (REEL_RESIZE_OUT_SHIFT - 1));
    const int16_t *r0[REEL_RESIZE_MAX_TAPS / 2], *r1[REEL_RESIZE_MAX_TAPS / 2];
    uint32_t cw[REEL_RESIZE_MAX_TAPS / 2];
    const int pairs = reel_resize_v_pairs(a, y, rows, r0, r1, cw);
    __m256i cp[REEL_RESIZE_MAX_TAPS / 2];

    for (int p = 0; p < pairs; p++)
        cp[p] = _mm256_set1_epi32((int)cw[p]);
    for (int x = 0; x < width; x += 16) {
        __m256i lo = rnd, hi = rnd;
        for (int p = 0; p < pairs; p++) {
            __m256i a0 = _mm256_loadu_si256((const __m256i *)(r0[p] + x));
            __m256i a1 = _mm256_loadu_si256((const __m256i *)(r1[p] + x));
            lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(a0, a1), cp[p]));
            hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(a0, a1), cp[p]));
        }
        lo = _mm256_srai_epi32(lo, REEL_RESIZE_OUT_SHIFT);
        hi = _mm256_srai_epi32(hi, REEL_RESIZE_OUT_SHIFT);
        /* to 16 bits (in order again), to 8 with unsigned saturation: the clamp to 0..255 */
        __m256i v = _mm256_packs_epi32(lo, hi);
        v = _mm256_permute4x64_epi64(_mm256_packus_epi16(v, v), 0x08);
        if (width - x >= 16) {
            _mm_storeu_si128((__m128i *)(dst + x), _mm256_castsi256_si128(v));
        } else {
            uint8_t tail[16];
            _mm_storeu_si128((__m128i *)tail, _mm256_castsi256_si128(v));
            memcpy(dst + x, tail, (size_t)(width - x));
        }
    }
}
