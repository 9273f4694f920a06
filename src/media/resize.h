/*
 * resize.h - private: clipreel's Lanczos-3 scaler for 8-bit planar YUV, the
 * no-AI path's crop-and-scale (a crop of a decoded frame to the output size).
 *
 * Same filter as swscale's SWS_LANCZOS (sinc(t) sinc(t/3), |t| < 3, widened by
 * the ratio when shrinking), same geometry (sample centres, chroma sited in the
 * middle of its luma pair, taps past the crop's edge repeat the edge sample),
 * in fixed point: 14-bit coefficients, a 16-bit intermediate with 6 fraction
 * bits. A horizontal pass per source row, then a vertical pass per output row
 * over a ring of the rows it needs, so a frame is read once.
 *
 * The AVX-512, AVX2 and C kernels compute the same integers: a frame is
 * bit-identical on every CPU, which parallel exports rely on (a part rendered
 * on one worker must match a single export on another).
 *
 * It takes ratios up to 4:3 smaller (at most 8 taps per axis); larger
 * reductions are left to swscale (reel_resize_set says so).
 */
#ifndef REEL_MEDIA_RESIZE_H
#define REEL_MEDIA_RESIZE_H

#include <stddef.h>
#include <stdint.h>

#define REEL_RESIZE_MAX_TAPS 8
#define REEL_RESIZE_HGROUP 16 /* outputs per horizontal SIMD step */

/* One axis of one plane: output i reads taps inputs from start[i]. */
typedef struct ReelResizeAxis {
    int n_in, n_out, taps;
    double off, step; /* what the tables were made for (resize.c, axis_build) */
    int32_t *start;   /* n_out: first input, so that start + taps <= n_in */
    int16_t *coef;    /* n_out x taps, each row sums to 1 << 14 */
    /* horizontal SIMD tables, per group of REEL_RESIZE_HGROUP outputs */
    int ngroups;
    int32_t *gbase; /* ngroups: first input byte the group loads (32 from there) */
    int16_t *gidx;  /* ngroups x pairs x 32: input index per 16-bit lane, from gbase */
    int16_t *gcoef; /* ngroups x pairs x 32: the coefficient per 16-bit lane */
    int simd;       /* every group's inputs fit in 32 bytes */
    /* the AVX2 horizontal tables, per pair of quads (4 outputs per 128-bit lane, each lane
     * loading 16 bytes from its quad's first input) */
    int nquads;     /* leading quads the AVX2 kernel takes; C does the outputs after */
    int32_t *qbase; /* ceil(n_out / 4): first input byte of each quad's 16 */
    uint8_t *qshuf; /* quad pairs x pairs x 32: vpshufb control, input byte per 16 bits */
    int16_t *qcoef; /* quad pairs x pairs x 16: the coefficient per 16-bit lane */
} ReelResizeAxis;

typedef struct ReelResizePlane {
    ReelResizeAxis h, v;
    int x0, y0;    /* the region's first sample in the source plane */
    int16_t *ring; /* MAX_TAPS rows of the horizontal pass (v.taps in use) */
    int rstride;   /* int16 per ring row: n_out rounded up to 32 */
    int32_t *acc;  /* rstride: the C vertical kernel's sums */
} ReelResizePlane;

/* kernel sets, best last; reel_resize_init picks the CPU's best, tests may lower it */
enum { REEL_RESIZE_C, REEL_RESIZE_AVX2, REEL_RESIZE_AVX512 };

typedef struct ReelResize {
    ReelResizePlane plane[3];
    int use_simd; /* REEL_RESIZE_C, _AVX2 or _AVX512: set before the first reel_resize_set */
} ReelResize;

/** An empty scaler on the CPU's best kernels (reel_resize_simd_supported). */
void reel_resize_init(ReelResize *rs);

/**
 * Prepares rs for a crop (x, y, w, h) of a frame of pixel format fmt (an
 * AVPixelFormat: YUV420P, YUV422P or YUV444P) scaled to out_w x out_h YUV420P
 * (even sizes). Keeps each axis's tables when they stay the same (a pan
 * rebuilds nothing but the chroma's on a change of parity). 0 on success,
 * AVERROR(ENOSYS) when this scaler does not take the case (another format, a
 * reduction past 4:3), AVERROR(ENOMEM).
 */
int reel_resize_set(ReelResize *rs, int fmt, int x, int y, int w, int h, int out_w, int out_h);

/** Scales the crop of src (planes and strides of the whole frame) into dst. */
void reel_resize_run(ReelResize *rs, const uint8_t *const src[3], const int src_stride[3],
                     uint8_t *const dst[3], const int dst_stride[3]);

/** Frees the tables (the kernel choice stays: the scaler can be set again). */
void reel_resize_free(ReelResize *rs);

/* kernels, for the tests: one row each */
void reel_resize_h_c(const ReelResizeAxis *a, const uint8_t *src, int16_t *dst);
void reel_resize_h_c_from(const ReelResizeAxis *a, const uint8_t *src, int16_t *dst, int from);
void reel_resize_v_c(const ReelResizeAxis *a, int y, const int16_t *const *rows, int width,
                     int32_t *acc, uint8_t *dst);
/** The best kernel set this CPU runs: REEL_RESIZE_AVX512 (F, BW, VL), _AVX2 or _C. */
int reel_resize_simd_supported(void);
void reel_resize_h_avx2(const ReelResizeAxis *a, const uint8_t *src, int16_t *dst);
void reel_resize_v_avx2(const ReelResizeAxis *a, int y, const int16_t *const *rows, int width,
                        uint8_t *dst);
void reel_resize_h_avx512(const ReelResizeAxis *a, const uint8_t *src, int16_t *dst);
void reel_resize_v_avx512(const ReelResizeAxis *a, int y, const int16_t *const *rows, int width,
                          uint8_t *dst);

/*
 * The vertical SIMD kernels' pairs of taps for output row y: rows r0[p] and
 * r1[p] with the coefficients packed as one 32-bit word (low half r0's), an odd
 * last tap paired with itself at weight 0. Returns the number of pairs.
 */
static inline int reel_resize_v_pairs(const ReelResizeAxis *a, int y, const int16_t *const *rows,
                                      const int16_t **r0, const int16_t **r1, uint32_t *cp)
{
    const int16_t *c = a->coef + (size_t)y * (size_t)a->taps;
    int pairs = (a->taps + 1) / 2;

    for (int p = 0; p < pairs; p++) {
        int k1 = 2 * p + 1 < a->taps ? 2 * p + 1 : 2 * p;
        uint16_t c0 = (uint16_t)c[2 * p], c1 = k1 != 2 * p ? (uint16_t)c[k1] : 0;
        cp[p] = (uint32_t)c0 | (uint32_t)c1 << 16;
        r0[p] = rows[2 * p];
        r1[p] = rows[k1];
    }
    return pairs;
}

/* the arithmetic both kernels share */
#define REEL_RESIZE_COEF_BITS 14
#define REEL_RESIZE_MID_SHIFT 8  /* 8-bit x 14-bit -> 6 fraction bits */
#define REEL_RESIZE_OUT_SHIFT 20 /* 6 + 14 */

#endif
