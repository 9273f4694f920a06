/*
 * wino.h - private: clipreel's Winograd 3x3 convolutions for the CPU backend,
 * with the bias and the activation (PReLU, leaky ReLU, ReLU) fused.
 *
 * Two kinds:
 *   - bf16: F(4x4, 3x3) (or F(4x2), F(2x2): more exact, slower) with the
 *     products in bf16 (vdpbf16ps) and everything else in f32. oneDNN 2.6 has
 *     no bf16 Winograd at all.
 *   - f32: F(4x4, 3x3) in f32, as oneDNN's own fp32 Winograd, with the
 *     activation fused (oneDNN's takes no PReLU) on NHWC.
 * docs/internals/upscale.md has the algorithm, its accuracy and its speed.
 *
 * Tensors are NHWC, batch 1: bf16 input (bf16 kind) or f32 input (f32 kind);
 * bf16 or f32 output (bf16 kind), f32 output (f32 kind). Stride 1, padding 1,
 * no dilation; in_c and out_c multiples of 16.
 *
 * wino.c is built with AVX-512 code generation: call nothing here but
 * reel_wino_supported() and reel_wino_fits() unless reel_wino_supported()
 * said yes for that kind.
 */
#ifndef REEL_UPSCALE_WINO_H
#define REEL_UPSCALE_WINO_H

#include <stddef.h>
#include <stdint.h>

typedef struct ReelWinoConv ReelWinoConv;

#define REEL_WINO_MAX_SRC 8 /* tensors one run reads as its input */
#define REEL_WINO_MAX_RES 2 /* residual sums fused behind the activation */

typedef enum ReelWinoKind {
    REEL_WINO_BF16, /* bf16 products, f32 transforms; bf16 input */
    REEL_WINO_F32,  /* all f32; f32 input and output */
} ReelWinoKind;

/** What one layer computes. */
typedef struct ReelWinoSpec {
    ReelWinoKind kind;
    int in_c, out_c;
    const float *weight; /* out_c x in_c x 3 x 3 (OIHW) */
    const float *bias;   /* out_c, or NULL */
    const float *slope;  /* activation slopes (x < 0 -> x * slope), or NULL: none */
    int nslope;          /* 1 = one slope for every channel, else out_c */
    int out_f32;         /* bf16 kind: write f32 instead of bf16 (the f32 kind always does) */
    int h, w;            /* the input's (and output's) size */
    int tile_rows;       /* bf16 kind: outputs per tile, rows x columns: 4 x 4 (0 x 0: the */
    int tile_cols;       /* default, fastest), 4 x 2 or 2 x 2 (more exact); f32: always 4 x 4 */
    int threads;         /* OpenMP threads that run it (>= 1) */
    int plain_stores;    /* 1: ordinary stores where streaming ones would apply (wino.c, STREAM) */
    /*
     * 1: the output goes through PixelShuffle(4) (ncnn mode 0) into a planar
     * f32 image of out_c / 16 planes, 4h x 4w each: channel c * 16 + dy * 4 + dx
     * of pixel (y, x) to plane c, pixel (4y + dy, 4x + dx). A residual (nres 1)
     * is then a planar map of out_c / 16 planes h x w, upsampled nearest: its
     * pixel (y, x) is added to the 16 outputs pixel (y, x) becomes. f32 output
     * only (the bf16 kind with out_f32); the tail of realesr-general-x4v3.
     */
    int shuffle_out;
    /*
     * residual sums after the activation, in order (an Eltwise sum that alone
     * reads the output): y = res_self[r] * y + res_coef[r] * res[r], the
     * tensors given to run_io(); nres <= REEL_WINO_MAX_RES
     */
    int nres;
    float res_self[REEL_WINO_MAX_RES], res_coef[REEL_WINO_MAX_RES];
    /*
     * the transformed weights are shared by the layers made from the same
     * weights (kind and tile alike) with the same group: 0 for all, or a lane's
     * own number where each lane keeps its own copy (wino.c, shared_get)
     */
    int share_group;
} ReelWinoSpec;

/*
 * These two are inline so that they compile with the includer's flags: wino.c
 * is built for AVX-512 and must not run on a CPU without it.
 */

/** Non-zero when this CPU runs the kind (AVX-512 F/BW/VL/DQ, and BF16 for bf16). */
static inline int reel_wino_supported(ReelWinoKind kind)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           (kind != REEL_WINO_BF16 || __builtin_cpu_supports("avx512bf16"));
}

/** Non-zero when the kernel computes a convolution of in_c -> out_c channels. */
static inline int reel_wino_fits(int in_c, int out_c)
{
    return in_c > 0 && out_c > 0 && in_c % 16 == 0 && out_c % 16 == 0;
}

/**
 * Transform the weights once: layers made from the same weights (the same
 * address), kind, tile and share group share the transformed copy, whatever
 * their size (a model's lanes hold one, unless each has its own share_group).
 * Copies for different groups are made at the same time; a layer that wants a
 * copy another thread is making waits for it. The weights must outlive the
 * layer. Returns 0, or negative with errmsg set (bad spec:
 * REEL_ERROR_INTERNAL; out of memory).
 */
int reel_wino_create(ReelWinoConv **out, const ReelWinoSpec *spec, char *errmsg);

/** Bytes of scratch run() needs (every thread's share, 64-byte aligned). */
size_t reel_wino_scratch(const ReelWinoConv *c);

/** One forward pass: src -> dst, types as the spec says. */
void reel_wino_run(const ReelWinoConv *c, const void *src, void *dst, void *scratch);

/**
 * What one run reads and writes, for layers whose input is a Concat read in
 * place or whose output takes residual sums. The input is the channel
 * concatenation of nsrc tensors: src[k] is an NHWC map of chans[k] channels
 * (a multiple of 16, its pixel stride), in the order the weights' input
 * channels take them; the counts sum to in_c. res[r] (spec.nres of them) are
 * NHWC maps of out_c channels in the output's type.
 */
typedef struct ReelWinoIo {
    int nsrc;
    const void *src[REEL_WINO_MAX_SRC];
    int chans[REEL_WINO_MAX_SRC];
    const void *res[REEL_WINO_MAX_RES];
    void *dst;
} ReelWinoIo;

/** One forward pass as io says. Computes the same bits as run() on the concatenation. */
void reel_wino_run_io(const ReelWinoConv *c, const ReelWinoIo *io, void *scratch);

/** Free and set *c to NULL; NULL-safe. */
void reel_wino_free(ReelWinoConv **c);

/** Bytes of transformed weights held now, every layer together (for the tests). */
size_t reel_wino_weights_bytes(void);

#endif
