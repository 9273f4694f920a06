/*
 * wino_bf16.h - private: a 3x3 convolution in bf16 Winograd for the CPU
 * backend's bf16 mode, with its bias and activation fused.
 *
 * oneDNN 2.6 has Winograd only in fp32; its bf16 convolutions are direct,
 * which on a CPU with AVX-512 BF16 but no AMX is no faster than fp32
 * Winograd. This kernel computes F(m x 2, 3x3) (m = 4 or 2 output rows by 2
 * columns per tile) with the products in bf16 (vdpbf16ps) and everything
 * else in f32: input and output transforms, accumulation, bias, activation.
 * docs/internals/upscale.md has the algorithm and its accuracy.
 *
 * Tensors are NHWC, batch 1: the input bf16, the output bf16 or f32. Stride 1,
 * padding 1, no dilation; in_c a multiple of 16, out_c a multiple of 16.
 *
 * Built with AVX-512 code generation: call nothing here unless
 * reel_wino_bf16_supported() says the CPU runs it.
 */
#ifndef REEL_UPSCALE_WINO_BF16_H
#define REEL_UPSCALE_WINO_BF16_H

#include <stddef.h>
#include <stdint.h>

typedef struct ReelWinoConv ReelWinoConv;

/** What one layer computes. */
typedef struct ReelWinoSpec {
    int in_c, out_c;
    const float *weight; /* out_c x in_c x 3 x 3 (OIHW) */
    const float *bias;   /* out_c, or NULL */
    const float *slope;  /* activation slopes (x < 0 -> x * slope), or NULL: none */
    int nslope;          /* 1 = one slope for every channel, else out_c */
    int out_f32;         /* write f32 instead of bf16 */
    int h, w;            /* the input's (and output's) size */
    int tile_rows;       /* output rows per tile: 4 (faster) or 2 (more exact) */
    int threads;         /* OpenMP threads that run it (>= 1) */
} ReelWinoSpec;

/** Non-zero when this CPU runs the kernel (AVX-512 F/BW/VL/DQ and BF16). */
int reel_wino_bf16_supported(void);

/** Non-zero when the kernel computes a convolution of in_c -> out_c channels. */
int reel_wino_bf16_fits(int in_c, int out_c);

/**
 * Transform the weights once. Returns 0, or negative with errmsg set (bad
 * spec: REEL_ERROR_INTERNAL; out of memory).
 */
int reel_wino_bf16_create(ReelWinoConv **out, const ReelWinoSpec *spec, char *errmsg);

/** Bytes of scratch run() needs (every thread's share, 64-byte aligned). */
size_t reel_wino_bf16_scratch(const ReelWinoConv *c);

/** One forward pass: src (bf16) -> dst (bf16 or f32 as the spec says). */
void reel_wino_bf16_run(const ReelWinoConv *c, const uint16_t *src, void *dst, void *scratch);

/** Free and set *c to NULL; NULL-safe. */
void reel_wino_bf16_free(ReelWinoConv **c);

#endif
